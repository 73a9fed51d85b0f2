"""Agents as the read model mirrors them from KV ``ax-agents``, and what the HTTP agent bridge asks about work."""

from __future__ import annotations

from sqlalchemy import select

from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import AgentRow, Execution, ExecutionSubtask
from planexe_ax.readmodel.schemas import AgentView, Statuses, SubtaskAttempt

ONLINE = "online"


def _view(row: AgentRow) -> AgentView:
    return AgentView.model_validate(
        {
            "agent_id": row.agent_id,
            "name": row.name,
            "role": row.role,
            "status": row.status,
            "online": row.status == ONLINE,
            "capabilities": row.capabilities,
            "current": row.current or [],
            "started_at": row.started_at,
            "last_heartbeat": row.last_heartbeat,
        }
    )


async def list_agents(sessions: Sessions) -> list[AgentView]:
    """Every agent the read model knows, online ones first."""
    async with sessions() as session:
        rows = list(await session.scalars(select(AgentRow).order_by(AgentRow.status.desc(), AgentRow.agent_id)))
    return [_view(row) for row in rows]


async def agent(sessions: Sessions, agent_id: str) -> AgentView | None:
    """One agent (None when unknown)."""
    async with sessions() as session:
        row = await session.get(AgentRow, agent_id)
    return None if row is None else _view(row)


async def subtask_attempt(sessions: Sessions, execution_id: str, subtask_id: str) -> SubtaskAttempt | None:
    """The status and attempt of a subtask of an execution (None when the read model has no row for it)."""
    query = select(ExecutionSubtask.status, ExecutionSubtask.attempt).where(
        ExecutionSubtask.execution_id == execution_id, ExecutionSubtask.subtask_id == subtask_id
    )
    async with sessions() as session:
        row = (await session.execute(query)).first()
    return None if row is None else SubtaskAttempt(status=row.status, attempt=row.attempt)


async def statuses(sessions: Sessions, execution_id: str, subtask_id: str | None) -> Statuses:
    """The status of an execution and, when ``subtask_id`` is given, of that subtask of it."""
    async with sessions() as session:
        execution_status = await session.scalar(select(Execution.status).where(Execution.execution_id == execution_id))
        subtask_status = None
        if subtask_id is not None:
            where = (ExecutionSubtask.execution_id == execution_id, ExecutionSubtask.subtask_id == subtask_id)
            subtask_status = await session.scalar(select(ExecutionSubtask.status).where(*where))
    return Statuses(execution_status=execution_status, subtask_status=subtask_status)
