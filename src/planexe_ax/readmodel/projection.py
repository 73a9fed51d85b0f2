"""How events fold into the read model: one small function per event type (the projector runs them).

The projector applies them live, in batches, with its checkpoints; :mod:`planexe_ax.readmodel.replay` applies
them to an execution's history to show it as it was at one event.

Every function runs inside the caller's transaction and never commits. An event whose ``event_id`` is
already stored is skipped entirely, so applying a stream twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import (
    TERMINAL_EXECUTION,
    TERMINAL_TASK,
    Event,
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    InboxClosed,
    InboxOpened,
    Plan,
    SubtaskProgress,
    SubtaskState,
    TaskState,
    TaskStatus,
)
from planexe_ax.readmodel.models import (
    INBOX_CLOSED,
    INBOX_OPEN,
    Execution,
    ExecutionEvent,
    ExecutionSubtask,
    ExecutionTask,
    InboxItem,
    PlanRow,
    PlanSubtask,
    PlanTask,
)

log = logging.getLogger(__name__)

PLANS_CHECKPOINT = "plans-kv"
"""The checkpoint row that says how far the plan catalog (KV ax-plans) is mirrored into the plan tables."""

HELD = frozenset({TaskStatus.RUNNING.value, TaskStatus.BLOCKED.value})
"""Subtask states in which the row's agent is the agent holding the attempt."""

Handler = Callable[[AsyncSession, Any], Awaitable[None]]


async def apply_event(session: AsyncSession, event: Event, stream_seq: int) -> bool:
    """Store ``event`` and apply it to the read model, unless its ``event_id`` is already stored.

    Args:
        session: An open session; the caller owns the transaction.
        event: A decoded event.
        stream_seq: Its sequence in AX_EVENTS.

    Returns:
        False when the event was already stored (nothing changed), else True.
    """
    if await session.scalar(select(exists().where(ExecutionEvent.event_id == event.event_id))):
        log.debug("event already projected", extra={"event_id": event.event_id, "stream_seq": stream_seq})
        return False
    session.add(
        ExecutionEvent(
            stream_seq=stream_seq,
            event_id=event.event_id,
            execution_id=event.execution_id,
            type=event.type,
            task_id=event.task_id,
            subtask_id=event.subtask_id,
            agent_id=event.agent_id,
            attempt=event.attempt,
            ts=event.ts,
            data=event.model_dump(mode="json", by_alias=True),
        )
    )
    handler = HANDLERS.get(event.type)
    if handler is None:
        return True
    if event.type != "execution_created" and await session.get(Execution, event.execution_id) is None:
        log.warning(
            "event for an unknown execution stored, not applied",
            extra={"event_id": event.event_id, "execution_id": event.execution_id, "type": event.type},
        )
        return True
    await handler(session, event)
    return True


async def on_execution_created(session: AsyncSession, event: ExecutionCreated) -> None:
    """Record the plan (once per plan id) and a new execution with every task and subtask pending."""
    if await session.get(Execution, event.execution_id) is not None:
        log.warning("execution already created", extra={"execution_id": event.execution_id})
        return
    plan = event.plan
    await upsert_plan(session, plan, event.ts)
    session.add(
        Execution(
            execution_id=event.execution_id,
            plan_id=plan.plan_id,
            status=ExecutionStatus.CREATED.value,
            reason="",
            created_at=event.ts,
            started_at=None,
            finished_at=None,
            updated_at=event.ts,
        )
    )
    await session.flush()
    for task in plan.tasks():
        session.add(
            ExecutionTask(
                execution_id=event.execution_id,
                task_id=task.task_id,
                status=TaskStatus.PENDING.value,
                attempts=0,
                reason="",
                started_at=None,
                finished_at=None,
            )
        )
    await session.flush()
    session.add_all(
        ExecutionSubtask(
            execution_id=event.execution_id,
            task_id=task.task_id,
            subtask_id=sub.subtask_id,
            action=sub.action,
            status=TaskStatus.PENDING.value,
            attempt=0,
            agent_id=None,
            progress=0.0,
            output=None,
            confidence=None,
            error=None,
            reason="",
            not_before=None,
            deadline=None,
            started_at=None,
            finished_at=None,
            updated_at=event.ts,
        )
        for task in plan.tasks()
        for sub in task.subtasks
    )


async def upsert_plan(session: AsyncSession, plan: Plan, ts: datetime) -> None:
    """Record ``plan`` (first seen at ``ts``) with its tasks and subtasks; a changed plan replaces its rows.

    A plan that was deleted from the catalog is listed again: it was uploaded or run anew.
    """
    row = await session.get(PlanRow, plan.plan_id)
    document = plan.model_dump(mode="json", by_alias=True)
    if row is None:
        row = PlanRow(plan_id=plan.plan_id, created_at=ts, title="", goal="", plan={})
        session.add(row)
    elif row.plan != document:
        await session.execute(delete(PlanSubtask).where(PlanSubtask.plan_id == plan.plan_id))
        await session.execute(delete(PlanTask).where(PlanTask.plan_id == plan.plan_id))
    row.title, row.goal, row.plan, row.deleted_at = plan.title, plan.goal, document, None
    await session.flush()
    if await session.scalar(select(exists().where(PlanTask.plan_id == plan.plan_id))):
        return
    position = 0
    for phase in plan.phases:
        for task in phase.tasks:
            session.add(
                PlanTask(
                    plan_id=plan.plan_id,
                    task_id=task.task_id,
                    phase_id=phase.phase_id,
                    phase_name=phase.name,
                    title=task.title,
                    description=task.description,
                    assignee_role=task.assignee_role,
                    estimated_hours=task.estimated_hours,
                    position=position,
                )
            )
            position += 1
    await session.flush()
    session.add_all(
        PlanSubtask(
            plan_id=plan.plan_id,
            task_id=task.task_id,
            subtask_id=sub.subtask_id,
            action=sub.action,
            description=sub.description,
            params=sub.params,
            position=index,
        )
        for task in plan.tasks()
        for index, sub in enumerate(task.subtasks)
    )


async def on_execution_state(session: AsyncSession, event: ExecutionState) -> None:
    """Set the execution's status and reason; RUNNING marks the start, a terminal status the end."""
    row = await session.get(Execution, event.execution_id)
    if row is None:
        return
    row.status, row.reason, row.updated_at = event.status.value, event.reason, event.ts
    if event.status == ExecutionStatus.RUNNING and row.started_at is None:
        row.started_at = event.ts
    if event.status in TERMINAL_EXECUTION:
        row.finished_at = event.ts


async def on_task_state(session: AsyncSession, event: TaskState) -> None:
    """Set a task's status and reason; RUNNING marks the start, a terminal status the end."""
    row = await session.get(ExecutionTask, (event.execution_id, event.task_id))
    if row is None:
        _log_unknown(event)
        return
    row.status, row.reason = event.status.value, event.reason
    if event.status == TaskStatus.RUNNING and row.started_at is None:
        row.started_at = event.ts
    if event.status in TERMINAL_TASK:
        row.finished_at = event.ts


async def on_subtask_state(session: AsyncSession, event: SubtaskState) -> None:
    """Set a subtask's status, reason, attempt, agent, output and error, and raise its task's attempt count.

    ``not_before`` (RETRY_WAIT) and ``deadline`` (BLOCKED) describe the state they come with, so every state
    sets them, to None when absent. The agent is stored as given: ``person-...`` when a person did the work.
    """
    row = await _subtask(session, event.execution_id, event.task_id, event.subtask_id)
    if row is None:
        _log_unknown(event)
        return
    row.status, row.reason, row.updated_at = event.status.value, event.reason, event.ts
    row.not_before, row.deadline = event.not_before, event.deadline
    if event.attempt is not None:
        row.attempt = event.attempt
    if event.agent_id is not None:
        row.agent_id = event.agent_id
    if event.output is not None:
        row.output = event.output
    if event.confidence is not None:
        row.confidence = event.confidence
    if event.status == TaskStatus.RUNNING:
        # A new attempt: what the previous attempt ended with no longer describes the subtask.
        row.started_at, row.finished_at, row.error = event.ts, None, None
    if event.status == TaskStatus.FAILED:
        row.error = event.reason
    if event.status in TERMINAL_TASK:
        row.finished_at = event.ts
    if event.status == TaskStatus.COMPLETED:
        row.progress = 100.0
    task = await session.get(ExecutionTask, (row.execution_id, row.task_id))
    if task is not None and event.attempt is not None:
        task.attempts = max(task.attempts, event.attempt)


async def on_subtask_progress(session: AsyncSession, event: SubtaskProgress) -> None:
    """Set a subtask's progress, unless it has finished, or the report is not from the attempt's holder.

    As the coordinator does: a report on another attempt, or from another agent than the one running the
    attempt, is kept in the events and changes nothing.
    """
    row = await _subtask(session, event.execution_id, event.task_id, event.subtask_id)
    if row is None:
        _log_unknown(event)
        return
    if row.status in TERMINAL_TASK or event.attempt != row.attempt:
        return
    if row.status in HELD and event.agent_id != row.agent_id:
        return
    row.progress, row.updated_at = event.percent, event.ts


async def _subtask(
    session: AsyncSession, execution_id: str, task_id: str | None, subtask_id: str | None
) -> ExecutionSubtask | None:
    if subtask_id is None:
        return None
    if task_id is not None:
        return await session.get(ExecutionSubtask, (execution_id, task_id, subtask_id))
    query = select(ExecutionSubtask).where(
        ExecutionSubtask.execution_id == execution_id, ExecutionSubtask.subtask_id == subtask_id
    )
    return (await session.scalars(query.limit(1))).first()


async def on_inbox_opened(session: AsyncSession, event: InboxOpened) -> None:
    """Add an open inbox item; an item id already known keeps its first opening."""
    if await session.get(InboxItem, event.item_id) is not None:
        log.warning("inbox item already opened", extra={"event_id": event.event_id, "item_id": event.item_id})
        return
    session.add(
        InboxItem(
            item_id=event.item_id,
            execution_id=event.execution_id,
            task_id=event.task_id,
            subtask_id=event.subtask_id,
            attempt=event.attempt,
            kind=event.kind,
            title=event.title,
            reason=event.reason,
            action=event.action,
            params=event.params,
            output=event.output,
            confidence=event.confidence,
            actions=list(event.actions),
            status=INBOX_OPEN,
            resolution=None,
            resolved_by=None,
            comment=None,
            resolution_output=None,
            resolution_params=None,
            opened_at=event.ts,
            closed_at=None,
        )
    )


async def on_inbox_closed(session: AsyncSession, event: InboxClosed) -> None:
    """Close an open inbox item with its resolution, who answered, the comment and any output."""
    row = await session.get(InboxItem, event.item_id)
    if row is None or row.execution_id != event.execution_id:
        log.warning(
            "event for an unknown inbox item stored, not applied",
            extra={"event_id": event.event_id, "execution_id": event.execution_id, "item_id": event.item_id},
        )
        return
    if row.status == INBOX_CLOSED:
        log.warning("inbox item already closed", extra={"event_id": event.event_id, "item_id": event.item_id})
        return
    row.status, row.resolution, row.resolved_by = INBOX_CLOSED, event.resolution, event.by
    row.comment, row.resolution_output, row.closed_at = event.comment, event.output, event.ts
    row.resolution_params = event.params


def _log_unknown(event: Event) -> None:
    log.warning(
        "event for an unknown task or subtask stored, not applied",
        extra={
            "event_id": event.event_id,
            "execution_id": event.execution_id,
            "task_id": event.task_id,
            "subtask_id": event.subtask_id,
            "type": event.type,
        },
    )


HANDLERS: dict[str, Handler] = {
    "execution_created": on_execution_created,
    "execution_state": on_execution_state,
    "task_state": on_task_state,
    "subtask_state": on_subtask_state,
    "subtask_progress": on_subtask_progress,
    "inbox_opened": on_inbox_opened,
    "inbox_closed": on_inbox_closed,
}
EVENT_ONLY = frozenset(
    {
        "command_rejected",
        "task_paused",
        "task_reassigned",
        "subtask_started",
        "subtask_rejected",
        "subtask_blocked",
        "subtask_result",
    }
)
"""Event types kept in ``execution_events`` only: their effect on the read model comes as decision events."""
