"""Executions: the list, one execution's detail and tree, the WebSocket snapshot, the CLI's report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import ExecutionStatus, TaskStatus
from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import (
    INBOX_OPEN,
    Execution,
    ExecutionSubtask,
    ExecutionTask,
    InboxItem,
    PlanRow,
    PlanSubtask,
    PlanTask,
)
from planexe_ax.readmodel.paging import decode_cursor, encode_cursor, parse_time, split_page
from planexe_ax.readmodel.queries import read_checkpoint
from planexe_ax.readmodel.schemas import (
    Blocker,
    CurrentTask,
    ExecutionCounts,
    ExecutionDetail,
    ExecutionListItem,
    ExecutionPage,
    ExecutionReport,
    ExecutionSummary,
    ExecutionTree,
    ReportSubtask,
    ReportTask,
    Snapshot,
    iso,
)
from planexe_ax.readmodel.tree import execution_tree as tree_of
from planexe_ax.readmodel.tree import task_titles

MOVING = (TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value)
WAITING_ON_PEOPLE = (TaskStatus.AWAITING_APPROVAL.value, TaskStatus.AWAITING_HUMAN.value)
BLOCKING = (TaskStatus.BLOCKED.value, TaskStatus.FAILED.value, TaskStatus.RETRY_WAIT.value, *WAITING_ON_PEOPLE)
SUMMARY_FIELDS = tuple(ExecutionSummary.model_fields)


async def execution_status(sessions: Sessions, execution_id: str) -> str | None:
    """The status of one execution (``RUNNING``, ...), or None when the read model does not know it."""
    async with sessions() as session:
        return await session.scalar(select(Execution.status).where(Execution.execution_id == execution_id))


def _summary(row: Execution, title: str) -> dict[str, Any]:
    return {**{name: getattr(row, name) for name in SUMMARY_FIELDS if name != "title"}, "title": title}


def progress(status: str, subtasks: Counter[str]) -> float:
    """Percent of subtasks done (completed or skipped; 100 once the execution completed), one decimal."""
    if status == ExecutionStatus.COMPLETED.value:
        return 100.0
    total = sum(subtasks.values())
    if not total:
        return 0.0
    done = subtasks[TaskStatus.COMPLETED.value] + subtasks[TaskStatus.SKIPPED.value]
    return round(100.0 * done / total, 1)


async def list_executions(
    sessions: Sessions, *, plan_id: str | None, status: str | None, limit: int, cursor: str | None
) -> ExecutionPage:
    """Executions, newest first, with their progress.

    Raises:
        BadCursor: when ``cursor`` is not one a page handed out.
    """
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
        page, more = split_page(list((await session.execute(query)).all()), limit)
        done = await _subtask_counts(session, [row.execution_id for row, _ in page])
    items = [
        ExecutionListItem.model_validate(
            {**_summary(row, title), "progress": progress(row.status, done.get(row.execution_id, Counter()))}
        )
        for row, title in page
    ]
    last = page[-1][0] if page else None
    return ExecutionPage(
        items=items, next_cursor=encode_cursor(iso(last.created_at), last.execution_id) if more and last else None
    )


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
        select(func.count()).where(InboxItem.execution_id == execution_id, InboxItem.status == INBOX_OPEN)
    )
    return _Execution(row, await session.get(PlanRow, row.plan_id), list(tasks), list(subtasks), int(open_items or 0))


async def execution_detail(sessions: Sessions, execution_id: str) -> ExecutionDetail | None:
    """Status, progress, counts, current tasks and blockers of one execution (None when unknown)."""
    async with sessions() as session:
        loaded = await _load(session, execution_id)
    return None if loaded is None else _detail(loaded)


def _detail(x: _Execution) -> ExecutionDetail:
    titles = task_titles(x.document)
    sub_counts = Counter(sub.status for sub in x.subtasks)
    counts = ExecutionCounts(
        tasks=dict(Counter(task.status for task in x.tasks)),
        subtasks=dict(sub_counts),
        tasks_total=len(x.tasks),
        subtasks_total=len(x.subtasks),
        inbox_open=x.open_items,
    )
    return ExecutionDetail.model_validate(
        {
            **_summary(x.row, x.plan.title if x.plan else ""),
            "goal": x.plan.goal if x.plan else "",
            "progress": progress(x.row.status, sub_counts),
            "counts": counts,
            "current_tasks": _current(x, titles),
            "blockers": _blockers(x, titles),
        }
    )


def _current(x: _Execution, titles: dict[str, str]) -> list[CurrentTask]:
    agents_of: dict[str, set[str]] = {}
    for sub in x.subtasks:
        if sub.agent_id and sub.status in MOVING:
            agents_of.setdefault(sub.task_id, set()).add(sub.agent_id)
    return [
        CurrentTask(
            task_id=task.task_id,
            title=titles.get(task.task_id, ""),
            status=task.status,
            agent_ids=sorted(agents_of.get(task.task_id, ())),
            started_at=task.started_at,
        )
        for task in x.tasks
        if task.status in MOVING
    ]


def _blockers(x: _Execution, titles: dict[str, str]) -> list[Blocker]:
    blockers = [
        Blocker(
            task_id=sub.task_id,
            subtask_id=sub.subtask_id,
            title=titles.get(sub.task_id, ""),
            status=sub.status,
            reason=sub.error or sub.reason,
            agent_id=sub.agent_id,
            since=sub.updated_at,
            deadline=sub.deadline,
            not_before=sub.not_before,
        )
        for sub in x.subtasks
        if sub.status in BLOCKING
    ]
    held = {b.task_id for b in blockers}
    return blockers + [  # a task waiting for approval before any of its subtasks runs
        Blocker(
            task_id=task.task_id,
            subtask_id=None,
            title=titles.get(task.task_id, ""),
            status=task.status,
            reason=task.reason,
            agent_id=None,
            since=task.started_at,
            deadline=None,
            not_before=None,
        )
        for task in x.tasks
        if task.status in BLOCKING and task.task_id not in held
    ]


async def execution_tree(sessions: Sessions, execution_id: str) -> ExecutionTree | None:
    """The plan overview and phases → tasks → subtasks with live states (None when the execution is unknown)."""
    async with sessions() as session:
        loaded = await _load(session, execution_id)
    return None if loaded is None else tree_of(loaded.row.plan_id, loaded.document, loaded.tasks, loaded.subtasks)


async def snapshot(sessions: Sessions, execution_id: str) -> Snapshot | None:
    """What a WebSocket client starts from: the execution, its task tree and the last event sequence in it.

    The checkpoint is read before the rows, so the rows are at least as new as ``last_seq``: events after
    it may already show in the rows, and applying them again sets the same states.
    """
    async with sessions() as session:
        last_seq = await read_checkpoint(session)
        x = await _load(session, execution_id)
    if x is None:
        return None
    tree = tree_of(x.row.plan_id, x.document, x.tasks, x.subtasks)
    return Snapshot(last_seq=last_seq, execution=_detail(x), tree=tree)


UNSETTLED = frozenset({"FAILED", "RETRY_WAIT", "AWAITING_HUMAN", "BLOCKED", "SKIPPED", "CANCELLED", "REJECTED"})
"""Subtask statuses whose reason says why the work did not (yet) go well."""


def last_error(sub: ExecutionSubtask) -> str | None:
    """Why the subtask failed, waits or was left (its error, else its reason in such a status); else None."""
    if sub.error:
        return sub.error
    return (sub.reason or None) if sub.status in UNSETTLED else None


async def execution_report(sessions: Sessions, execution_id: str) -> ExecutionReport | None:
    """One execution with its tasks and subtasks, in plan order (None when the execution is unknown)."""
    async with sessions() as session:
        execution = await session.get(Execution, execution_id)
        if execution is None:
            return None
        tasks = await _tasks_in_order(session, execution)
        subtasks = await _subtasks_in_order(session, execution)
    by_task: dict[str, list[ReportSubtask]] = {}
    for sub in subtasks:
        by_task.setdefault(sub.task_id, []).append(
            ReportSubtask(
                subtask_id=sub.subtask_id,
                action=sub.action,
                status=sub.status,
                agent_id=sub.agent_id,
                output=sub.output,
                attempts=sub.attempt,
                error=last_error(sub),
            )
        )
    return ExecutionReport(
        execution_id=execution.execution_id,
        plan_id=execution.plan_id,
        status=execution.status,
        reason=execution.reason,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        tasks=[
            ReportTask(
                task_id=task.task_id,
                title=title or task.task_id,
                status=task.status,
                started_at=task.started_at,
                finished_at=task.finished_at,
                attempts=task.attempts,
                subtasks=by_task.get(task.task_id, []),
            )
            for task, title in tasks
        ],
    )


async def _tasks_in_order(session: AsyncSession, execution: Execution) -> list[tuple[ExecutionTask, str | None]]:
    """The execution's tasks in plan order, each with its title (None when the plan's row is gone)."""
    query = (
        select(ExecutionTask, PlanTask.title)
        .outerjoin(PlanTask, (PlanTask.plan_id == execution.plan_id) & (PlanTask.task_id == ExecutionTask.task_id))
        .where(ExecutionTask.execution_id == execution.execution_id)
        .order_by(PlanTask.position, ExecutionTask.task_id)
    )
    return [(task, title) for task, title in (await session.execute(query)).all()]


async def _subtasks_in_order(session: AsyncSession, execution: Execution) -> list[ExecutionSubtask]:
    query = (
        select(ExecutionSubtask)
        .outerjoin(
            PlanSubtask,
            (PlanSubtask.plan_id == execution.plan_id)
            & (PlanSubtask.task_id == ExecutionSubtask.task_id)
            & (PlanSubtask.subtask_id == ExecutionSubtask.subtask_id),
        )
        .where(ExecutionSubtask.execution_id == execution.execution_id)
        .order_by(ExecutionSubtask.task_id, PlanSubtask.position, ExecutionSubtask.subtask_id)
    )
    return list(await session.scalars(query))
