"""The projector: consumes AX_EVENTS and keeps the SQL read model, idempotently."""

from planexe_ax.projector.db import make_engine, make_session_factory
from planexe_ax.projector.migrate import downgrade, upgrade
from planexe_ax.projector.queries import execution_report, execution_status, inbox_item, inbox_items, table_dump
from planexe_ax.projector.service import Projector

__all__ = [
    "Projector",
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
