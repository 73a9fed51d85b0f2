"""The plan catalog and the agents, read from the read model and shaped as the JSON of the REST API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_

from planexe_ax.bus import TERMINAL_EXECUTION, ExecutionStatus
from planexe_ax.readmodel.models import AgentRow, Execution, PlanRow
from planexe_ax.readmodel.queries import Sessions, iso
from planexe_ax.ws_gateway.paging import decode_cursor, encode_cursor, parse_time

OPEN_EXECUTION = tuple(s.value for s in ExecutionStatus if s not in TERMINAL_EXECUTION)


def plan_summary(row: PlanRow) -> dict[str, Any]:
    """The catalog entry of a plan."""
    document = row.plan
    phases = document.get("phases", [])
    return {
        "plan_id": row.plan_id,
        "title": row.title,
        "goal": row.goal,
        "created_at": iso(row.created_at),
        "phases": len(phases),
        "tasks": sum(len(phase.get("tasks", [])) for phase in phases),
        "subtasks": sum(len(task.get("subtasks", [])) for phase in phases for task in phase.get("tasks", [])),
        "risks": len(document.get("risks", [])),
    }


async def list_plans(sessions: Sessions, limit: int, cursor: str | None) -> dict[str, Any]:
    """Plans in the catalog, newest first."""
    query = select(PlanRow).where(PlanRow.deleted_at.is_(None))
    if cursor:
        created, plan_id = decode_cursor(cursor, 2)
        query = query.where(tuple_(PlanRow.created_at, PlanRow.plan_id) < tuple_(parse_time(created), str(plan_id)))
    query = query.order_by(PlanRow.created_at.desc(), PlanRow.plan_id.desc()).limit(limit + 1)
    async with sessions() as session:
        rows = list(await session.scalars(query))
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    return {
        "items": [plan_summary(row) for row in page],
        "next_cursor": encode_cursor(iso(last.created_at), last.plan_id) if more and last else None,
    }


async def plan_row(sessions: Sessions, plan_id: str) -> PlanRow | None:
    """A plan of the catalog (None when unknown or deleted)."""
    async with sessions() as session:
        row = await session.get(PlanRow, plan_id)
    return None if row is None or row.deleted_at is not None else row


def plan_detail(row: PlanRow) -> dict[str, Any]:
    """A catalog entry with the whole plan document."""
    return {**plan_summary(row), "plan": row.plan}


def plan_tasks(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every task of a plan document, in plan order, with its phase and subtasks."""
    return [
        {"phase_id": phase["phase_id"], "phase_name": phase.get("name", ""), **task}
        for phase in document.get("phases", [])
        for task in phase.get("tasks", [])
    ]


async def open_executions_of(sessions: Sessions, plan_id: str) -> list[str]:
    """Ids of the executions of ``plan_id`` that have not ended."""
    query = select(Execution.execution_id).where(Execution.plan_id == plan_id, Execution.status.in_(OPEN_EXECUTION))
    async with sessions() as session:
        return list(await session.scalars(query))


def agent_json(row: AgentRow) -> dict[str, Any]:
    """An agent with its liveness."""
    return {
        "agent_id": row.agent_id,
        "name": row.name,
        "role": row.role,
        "status": row.status,
        "online": row.status == "online",
        "capabilities": row.capabilities,
        "current": row.current or [],
        "started_at": iso(row.started_at),
        "last_heartbeat": iso(row.last_heartbeat),
    }


async def list_agents(sessions: Sessions) -> list[dict[str, Any]]:
    """Every agent the read model knows, online ones first."""
    async with sessions() as session:
        rows = list(await session.scalars(select(AgentRow).order_by(AgentRow.status.desc(), AgentRow.agent_id)))
    return [agent_json(row) for row in rows]


async def get_agent(sessions: Sessions, agent_id: str) -> dict[str, Any] | None:
    """One agent (None when unknown)."""
    async with sessions() as session:
        row = await session.get(AgentRow, agent_id)
    return None if row is None else agent_json(row)
