"""The projector: consumes AX_EVENTS and keeps the SQL read model (:mod:`planexe_ax.readmodel`), idempotently."""

from planexe_ax.projector.service import Projector

__all__ = ["Projector"]
