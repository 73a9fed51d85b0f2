"""The read model: SQLAlchemy 2 tables, Alembic migrations and the queries that read them.

The projector writes it; the gateway and the CLI read it only through the query modules (executions, events,
catalog, agents, inbox, ops), which answer with the frozen pydantic models of :mod:`.schemas`.
"""

from planexe_ax.readmodel.db import ReadModelError, Sessions, make_engine, make_session_factory, read_model
from planexe_ax.readmodel.executions import execution_report, execution_status
from planexe_ax.readmodel.inbox import inbox_item, inbox_items
from planexe_ax.readmodel.migrate import downgrade, upgrade
from planexe_ax.readmodel.paging import BadCursor
from planexe_ax.readmodel.queries import table_dump

__all__ = [
    "BadCursor",
    "ReadModelError",
    "Sessions",
    "downgrade",
    "execution_report",
    "execution_status",
    "inbox_item",
    "inbox_items",
    "make_engine",
    "make_session_factory",
    "read_model",
    "table_dump",
    "upgrade",
]
