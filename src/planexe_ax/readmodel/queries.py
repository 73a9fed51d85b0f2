"""What the read-side modules share: the projector's checkpoint, and a dump of every table (for comparisons)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import Subjects
from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import READ_MODEL_TABLES, Base, ProjectorCheckpoint


async def read_checkpoint(session: AsyncSession, consumer: str = Subjects.PROJECTOR_EVENTS) -> int:
    """The last stream sequence (or bucket revision) the projector committed for ``consumer``, in ``session``."""
    value = await session.scalar(select(ProjectorCheckpoint.stream_seq).where(ProjectorCheckpoint.consumer == consumer))
    return int(value or 0)


async def table_dump(session_factory: Sessions) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read-model table (checkpoints excepted), sorted by primary key.

    Two databases that projected the same stream give equal dumps.

    Args:
        session_factory: Sessions of the read model.

    Returns:
        Table name to rows; each row maps column name to its Python value.
    """
    dump: dict[str, list[dict[str, Any]]] = {}
    async with session_factory() as session:
        for model in READ_MODEL_TABLES:
            table = Base.metadata.tables[model.__tablename__]
            result = await session.execute(select(table).order_by(*table.primary_key.columns))
            dump[table.name] = [dict(row) for row in result.mappings()]
    return dump
