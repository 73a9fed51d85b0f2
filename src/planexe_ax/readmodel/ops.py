"""What health checks, metrics and read-your-writes ask the read model."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import Subjects
from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import AgentRow, Execution, ExecutionSubtask, ExecutionTask
from planexe_ax.readmodel.queries import read_checkpoint
from planexe_ax.readmodel.schemas import ReadFigures


async def checkpoint(sessions: Sessions, consumer: str = Subjects.PROJECTOR_EVENTS) -> int:
    """The last stream sequence (or bucket revision) the projector committed for ``consumer``."""
    async with sessions() as session:
        return await read_checkpoint(session, consumer)


async def ping(sessions: Sessions) -> None:
    """Reach the database and read the projector's checkpoint table.

    Raises:
        ReadModelError: when the database or the table is not there.
    """
    async with sessions() as session:
        await session.execute(text("SELECT 1"))
        await read_checkpoint(session)


async def read_figures(sessions: Sessions) -> ReadFigures:
    """Counts for /metrics: executions, tasks and subtasks by status, attempts, the projector checkpoint."""
    async with sessions() as session:
        dispatched = await session.scalar(select(func.coalesce(func.sum(ExecutionSubtask.attempt), 0)))
        return ReadFigures(
            executions=await _by_status(session, Execution.status),
            tasks=await _by_status(session, ExecutionTask.status),
            subtasks=await _by_status(session, ExecutionSubtask.status),
            subtask_attempts_dispatched=int(dispatched or 0),
            agents=await _by_status(session, AgentRow.status),
            projector_checkpoint=await read_checkpoint(session),
        )


async def _by_status(session: AsyncSession, column: Any) -> dict[str, int]:
    rows = await session.execute(select(column, func.count()).group_by(column))
    return {str(status): int(count) for status, count in rows}
