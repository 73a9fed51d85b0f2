"""Executions and their events, read from the read model, shaped as JSON.

The shapes are those of the REST API and the WebSocket snapshot. Lists are keyset-paginated
(:mod:`planexe_ax.ws_gateway.paging`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import ExecutionStatus, Plan, Subjects, TaskStatus
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.schedule import baseline
from planexe_ax.readmodel.models import (
    Execution,
    ExecutionEvent,
    ExecutionSubtask,
    ExecutionTask,
    InboxItem,
    PlanRow,
    ProjectorCheckpoint,
)
from planexe_ax.readmodel.queries import Sessions, iso
from planexe_ax.ws_gateway.catalog import plan_tasks
from planexe_ax.ws_gateway.paging import BadCursor, decode_cursor, encode_cursor, parse_time

MOVING = (TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value)
WAITING_ON_PEOPLE = (TaskStatus.AWAITING_APPROVAL.value, TaskStatus.AWAITING_HUMAN.value)
BLOCKING = (TaskStatus.BLOCKED.value, TaskStatus.FAILED.value, TaskStatus.RETRY_WAIT.value, *WAITING_ON_PEOPLE)


# -- checkpoints -------------------------------------------------------------------------------------------
async def checkpoint(session: AsyncSession, consumer: str = Subjects.PROJECTOR_EVENTS) -> int:
    """The last stream sequence (or bucket revision) the projector committed for ``consumer``."""
    value = await session.scalar(select(ProjectorCheckpoint.stream_seq).where(ProjectorCheckpoint.consumer == consumer))
    return int(value or 0)


# -- executions --------------------------------------------------------------------------------------------
def execution_summary(row: Execution, title: str = "") -> dict[str, Any]:
    """The list entry of an execution."""
    return {
        "execution_id": row.execution_id,
        "plan_id": row.plan_id,
        "title": title,
        "status": row.status,
        "reason": row.reason,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "updated_at": iso(row.updated_at),
    }


async def list_executions(
    sessions: Sessions, *, plan_id: str | None, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Executions, newest first, with their progress."""
    query = select(Execution, PlanRow.title).join(PlanRow, PlanRow.plan_id == Execution.plan_id)
    if plan_id:
        query = query.where(Execution.plan_id == plan_id)
    if status:
        query = query.where(Execution.status == status)
    if cursor:
        created, execution_id = decode_cursor(cursor, 2)
        query = query.where(
            tuple_(Execution.created_at, Execution.execution_id) < tuple_(parse_time(created), str(execution_id))
        )
    query = query.order_by(Execution.created_at.desc(), Execution.execution_id.desc()).limit(limit + 1)
    async with sessions() as session:
        rows = list((await session.execute(query)).all())
        page, more = rows[:limit], len(rows) > limit
        ids = [row.execution_id for row, _ in page]
        done = await _subtask_counts(session, ids)
    items = []
    for row, title in page:
        counts = done.get(row.execution_id, Counter())
        items.append({**execution_summary(row, title), "progress": progress(row.status, counts)})
    last = page[-1][0] if page else None
    return {
        "items": items,
        "next_cursor": encode_cursor(iso(last.created_at), last.execution_id) if more and last else None,
    }


async def _subtask_counts(session: AsyncSession, execution_ids: list[str]) -> dict[str, Counter[str]]:
    if not execution_ids:
        return {}
    query = (
        select(ExecutionSubtask.execution_id, ExecutionSubtask.status, func.count())
        .where(ExecutionSubtask.execution_id.in_(execution_ids))
        .group_by(ExecutionSubtask.execution_id, ExecutionSubtask.status)
    )
    counts: dict[str, Counter[str]] = {}
    for execution_id, status, n in await session.execute(query):
        counts.setdefault(execution_id, Counter())[status] = n
    return counts


def progress(status: str, subtasks: Counter[str]) -> float:
    """Percent of subtasks done (completed or skipped; 100 once the execution completed), one decimal."""
    if status == ExecutionStatus.COMPLETED.value:
        return 100.0
    total = sum(subtasks.values())
    if not total:
        return 0.0
    done = subtasks[TaskStatus.COMPLETED.value] + subtasks[TaskStatus.SKIPPED.value]
    return round(100.0 * done / total, 1)


@dataclass(frozen=True)
class _Execution:
    """One execution's rows, read once for the detail, the tree or both (a snapshot)."""

    row: Execution
    plan: PlanRow | None
    tasks: list[ExecutionTask]
    subtasks: list[ExecutionSubtask]
    open_items: int

    @property
    def document(self) -> dict[str, Any]:
        return self.plan.plan if self.plan else {"plan_id": self.row.plan_id, "goal": "", "phases": []}


async def _load(session: AsyncSession, execution_id: str) -> _Execution | None:
    row = await session.get(Execution, execution_id)
    if row is None:
        return None
    tasks = await session.scalars(select(ExecutionTask).where(ExecutionTask.execution_id == execution_id))
    subtasks = await session.scalars(select(ExecutionSubtask).where(ExecutionSubtask.execution_id == execution_id))
    open_items = await session.scalar(
        select(func.count()).where(InboxItem.execution_id == execution_id, InboxItem.status == "open")
    )
    return _Execution(row, await session.get(PlanRow, row.plan_id), list(tasks), list(subtasks), int(open_items or 0))


async def execution_detail(sessions: Sessions, execution_id: str) -> dict[str, Any] | None:
    """Status, progress, counts, current tasks and blockers of one execution (None when unknown)."""
    async with sessions() as session:
        loaded = await _load(session, execution_id)
    return None if loaded is None else _detail(loaded)


def _detail(x: _Execution) -> dict[str, Any]:
    row, plan, tasks, subtasks = x.row, x.plan, x.tasks, x.subtasks
    titles = {t["task_id"]: t.get("title", "") for t in plan_tasks(x.document)}
    sub_counts = Counter(sub.status for sub in subtasks)
    agents_of: dict[str, set[str]] = {}
    for sub in subtasks:
        if sub.agent_id and sub.status in MOVING:
            agents_of.setdefault(sub.task_id, set()).add(sub.agent_id)
    current = [
        {
            "task_id": task.task_id,
            "title": titles.get(task.task_id, ""),
            "status": task.status,
            "agent_ids": sorted(agents_of.get(task.task_id, ())),
            "started_at": iso(task.started_at),
        }
        for task in tasks
        if task.status in MOVING
    ]
    blockers = [
        {
            "task_id": sub.task_id,
            "subtask_id": sub.subtask_id,
            "title": titles.get(sub.task_id, ""),
            "status": sub.status,
            "reason": sub.error or sub.reason,
            "agent_id": sub.agent_id,
            "since": iso(sub.updated_at),
            "deadline": iso(sub.deadline),
            "not_before": iso(sub.not_before),
        }
        for sub in subtasks
        if sub.status in BLOCKING
    ]
    held = {b["task_id"] for b in blockers}
    blockers += [  # a task waiting for approval before any of its subtasks runs
        {
            "task_id": task.task_id,
            "subtask_id": None,
            "title": titles.get(task.task_id, ""),
            "status": task.status,
            "reason": task.reason,
            "agent_id": None,
            "since": iso(task.started_at),
            "deadline": None,
            "not_before": None,
        }
        for task in tasks
        if task.status in BLOCKING and task.task_id not in held
    ]
    return {
        **execution_summary(row, plan.title if plan else ""),
        "goal": plan.goal if plan else "",
        "progress": progress(row.status, sub_counts),
        "counts": {
            "tasks": dict(Counter(task.status for task in tasks)),
            "subtasks": dict(sub_counts),
            "tasks_total": len(tasks),
            "subtasks_total": len(subtasks),
            "inbox_open": x.open_items,
        },
        "current_tasks": current,
        "blockers": blockers,
    }


async def execution_tree(sessions: Sessions, execution_id: str) -> dict[str, Any] | None:
    """The plan overview and phases → tasks → subtasks with live states (None when the execution is unknown)."""
    async with sessions() as session:
        loaded = await _load(session, execution_id)
    return None if loaded is None else _tree(loaded)


def _tree(x: _Execution) -> dict[str, Any]:
    row, document = x.row, x.document
    tasks = {t.task_id: t for t in x.tasks}
    subtasks = {(s.task_id, s.subtask_id): s for s in x.subtasks}
    planned = planned_schedule(document)
    phases = []
    for phase in document.get("phases", []):
        phase_tasks = []
        for task in phase.get("tasks", []):
            live = tasks.get(task["task_id"])
            phase_tasks.append(
                {
                    "task_id": task["task_id"],
                    "title": task.get("title", ""),
                    "description": task.get("description", ""),
                    "assignee_role": task.get("assignee_role"),
                    "prerequisites": task.get("prerequisites", []),
                    "human_required": task.get("human_required", False),
                    "approval_required": task.get("approval_required", False),
                    "estimated_hours": task.get("estimated_hours"),
                    "planned": planned.get(task["task_id"]),
                    "status": live.status if live else TaskStatus.PENDING.value,
                    "attempts": live.attempts if live else 0,
                    "reason": live.reason if live else "",
                    "started_at": iso(live.started_at) if live else None,
                    "finished_at": iso(live.finished_at) if live else None,
                    "subtasks": [
                        _subtask_json(sub, subtasks.get((task["task_id"], sub["subtask_id"])))
                        for sub in task.get("subtasks", [])
                    ],
                }
            )
        phases.append(
            {
                "phase_id": phase["phase_id"],
                "name": phase.get("name", ""),
                "description": phase.get("description", ""),
                "tasks": phase_tasks,
            }
        )
    return {
        "plan": {
            "plan_id": document.get("plan_id", row.plan_id),
            "title": document.get("title", ""),
            "goal": document.get("goal", ""),
            "risks": document.get("risks", []),
            "dependencies": document.get("dependencies", []),
            "start_time": document.get("start_time"),
        },
        "phases": phases,
    }


def _subtask_json(spec: dict[str, Any], live: ExecutionSubtask | None) -> dict[str, Any]:
    return {
        "subtask_id": spec["subtask_id"],
        "action": spec.get("action", ""),
        "description": spec.get("description", ""),
        "human_required": spec.get("human_required", False),
        "status": live.status if live else TaskStatus.PENDING.value,
        "attempt": live.attempt if live else 0,
        "agent_id": live.agent_id if live else None,
        "progress": live.progress if live else 0.0,
        "output": live.output if live else None,
        "confidence": live.confidence if live else None,
        "error": live.error if live else None,
        "reason": live.reason if live else "",
        "started_at": iso(live.started_at) if live else None,
        "finished_at": iso(live.finished_at) if live else None,
        "updated_at": iso(live.updated_at) if live else None,
    }


def planned_schedule(document: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per task, its planned start and finish in working days from the project start.

    Durations come from the plan's realistic days, else its estimated hours (8 per day), else an hour.
    A plan the scheduler cannot read gives no planned bars rather than an error.
    """
    try:
        plan = Plan.model_validate(document)
        days = {t.task_id: t.days_realistic or (t.estimated_hours or 1.0) / 8.0 for t in plan.tasks()}
        schedule = baseline(plan, days)
    except (ValueError, PlanValidationError):
        return {}
    return {
        task_id: {"start_days": round(t.earliest_start, 4), "finish_days": round(t.earliest_finish, 4)}
        for task_id, t in schedule.times.items()
    }


async def snapshot(sessions: Sessions, execution_id: str) -> dict[str, Any] | None:
    """What a WebSocket client starts from: the execution, its task tree and the last event sequence in it.

    The checkpoint is read before the rows, so the rows are at least as new as ``last_seq``: events after
    it may already show in the rows, and applying them again sets the same states.
    """
    async with sessions() as session:
        last_seq = await checkpoint(session)
        loaded = await _load(session, execution_id)
    if loaded is None:
        return None
    return {"last_seq": last_seq, "execution": _detail(loaded), "tree": _tree(loaded)}


# -- events ------------------------------------------------------------------------------------------------
def event_item(seq: int, event: dict[str, Any]) -> dict[str, Any]:
    """One event as the API and the WebSocket show it: its stream sequence, the indexed fields and the whole event."""
    return {
        "seq": seq,
        "event_id": event.get("event_id"),
        "type": event.get("type"),
        "task_id": event.get("task_id"),
        "subtask_id": event.get("subtask_id"),
        "agent_id": event.get("agent_id"),
        "attempt": event.get("attempt"),
        "ts": event.get("ts"),
        "data": event,
    }


async def events_page(
    sessions: Sessions,
    execution_id: str,
    *,
    type_: str | None,
    task_id: str | None,
    agent_id: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """An execution's events, newest first, keyset-paginated by stream sequence."""
    query = select(ExecutionEvent).where(ExecutionEvent.execution_id == execution_id)
    if type_:
        query = query.where(ExecutionEvent.type == type_)
    if task_id:
        query = query.where(ExecutionEvent.task_id == task_id)
    if agent_id:
        query = query.where(ExecutionEvent.agent_id == agent_id)
    if cursor:
        (before,) = decode_cursor(cursor, 1)
        if type(before) is not int or not 0 < before < 2**63:
            raise BadCursor(f"cursor {cursor!r} is not one this API handed out")
        query = query.where(ExecutionEvent.stream_seq < before)
    query = query.order_by(ExecutionEvent.stream_seq.desc()).limit(limit + 1)
    async with sessions() as session:
        rows = list(await session.scalars(query))
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": [event_item(row.stream_seq, row.data) for row in page],
        "next_cursor": encode_cursor(page[-1].stream_seq) if more and page else None,
    }
