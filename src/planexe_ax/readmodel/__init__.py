"""The read model: SQLAlchemy 2 tables, Alembic migrations and the queries that read them.

The projector writes it; the gateway and the CLI read it.
"""

from planexe_ax.readmodel.db import make_engine, make_session_factory
from planexe_ax.readmodel.migrate import downgrade, upgrade
from planexe_ax.readmodel.queries import execution_report, execution_status, inbox_item, inbox_items, table_dump

__all__ = [
    "downgrade",
    "execution_report",
    "execution_status",
    "inbox_item",
    "inbox_items",
    "make_engine",
    "make_session_factory",
    "table_dump",
    "upgrade",
]
