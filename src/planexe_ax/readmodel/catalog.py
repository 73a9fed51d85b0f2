"""The plan catalog: plans uploaded, imported or run, newest first; a plan with its document and tasks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_

from planexe_ax.bus import TERMINAL_EXECUTION, ExecutionStatus
from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import Execution, PlanRow
from planexe_ax.readmodel.paging import decode_cursor, encode_cursor, parse_time, split_page
from planexe_ax.readmodel.schemas import PlanDetail, PlanPage, PlanSummary, PlanTasks, iso
from planexe_ax.readmodel.tree import tasks_of

OPEN_EXECUTION = tuple(s.value for s in ExecutionStatus if s not in TERMINAL_EXECUTION)


def _summary(row: PlanRow) -> dict[str, Any]:
    phases = row.plan.get("phases", [])
    return {
        "plan_id": row.plan_id,
        "title": row.title,
        "goal": row.goal,
        "created_at": row.created_at,
        "phases": len(phases),
        "tasks": sum(len(phase.get("tasks", [])) for phase in phases),
        "subtasks": sum(len(task.get("subtasks", [])) for phase in phases for task in phase.get("tasks", [])),
        "risks": len(row.plan.get("risks", [])),
    }


async def list_plans(sessions: Sessions, limit: int, cursor: str | None) -> PlanPage:
    """Plans in the catalog, newest first.

    Raises:
        BadCursor: when ``cursor`` is not one a page handed out.
    """
    query = select(PlanRow).where(PlanRow.deleted_at.is_(None))
    if cursor:
        created, plan_id = decode_cursor(cursor, 2)
        query = query.where(tuple_(PlanRow.created_at, PlanRow.plan_id) < tuple_(parse_time(created), str(plan_id)))
    query = query.order_by(PlanRow.created_at.desc(), PlanRow.plan_id.desc()).limit(limit + 1)
    async with sessions() as session:
        page, more = split_page(list(await session.scalars(query)), limit)
    last = page[-1] if page else None
    return PlanPage(
        items=[PlanSummary.model_validate(_summary(row)) for row in page],
        next_cursor=encode_cursor(iso(last.created_at), last.plan_id) if more and last else None,
    )


async def _row(sessions: Sessions, plan_id: str) -> PlanRow | None:
    async with sessions() as session:
        row = await session.get(PlanRow, plan_id)
    return None if row is None or row.deleted_at is not None else row


async def plan(sessions: Sessions, plan_id: str) -> PlanDetail | None:
    """A plan of the catalog with its whole document (None when unknown or deleted)."""
    row = await _row(sessions, plan_id)
    return None if row is None else PlanDetail.model_validate({**_summary(row), "plan": row.plan})


async def plan_tasks(sessions: Sessions, plan_id: str) -> PlanTasks | None:
    """Every task of a catalog plan, in plan order, with its phase and subtasks (None when unknown or deleted)."""
    row = await _row(sessions, plan_id)
    return None if row is None else PlanTasks(plan_id=plan_id, items=tasks_of(row.plan))


async def open_executions_of(sessions: Sessions, plan_id: str) -> list[str]:
    """Ids of the executions of ``plan_id`` that have not ended."""
    query = select(Execution.execution_id).where(Execution.plan_id == plan_id, Execution.status.in_(OPEN_EXECUTION))
    async with sessions() as session:
        return list(await session.scalars(query))
