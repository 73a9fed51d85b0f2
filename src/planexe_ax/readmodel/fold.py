"""How each event folds into read-model rows, in memory: one small pure function per event type.

:mod:`planexe_ax.readmodel.projection` loads the rows a batch of events touches into a :class:`Rows`, applies
every event here in stream order, then writes the changed rows in bulk. Nothing here does I/O: a row is a
dict of column name to value, as the tables have them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
from planexe_ax.errors import PlanUnavailable
from planexe_ax.readmodel.models import INBOX_CLOSED, INBOX_OPEN, JsonText

log = logging.getLogger(__name__)

HELD = frozenset({TaskStatus.RUNNING.value, TaskStatus.BLOCKED.value})
"""Subtask states in which the row's agent is the agent holding the attempt."""

Row = dict[str, Any]
TaskKey = tuple[str, str]
SubtaskKey = tuple[str, str, str]


@dataclass
class Rows:
    """The rows a batch of events reads and writes, by primary key, and which of them changed.

    ``None`` under a key means "looked up, not there". Changed keys are written at the end of the batch.
    """

    executions: dict[str, Row | None] = field(default_factory=dict)
    tasks: dict[TaskKey, Row] = field(default_factory=dict)
    subtasks: dict[SubtaskKey, Row] = field(default_factory=dict)
    subtask_by_id: dict[TaskKey, SubtaskKey] = field(default_factory=dict)  # (execution, subtask) -> first key
    inbox: dict[str, Row | None] = field(default_factory=dict)
    plans: dict[str, Row | None] = field(default_factory=dict)
    plans_with_tasks: set[str] = field(default_factory=set)
    plans_replaced: set[str] = field(default_factory=set)  # their stored tasks and subtasks go first
    plan_children: dict[str, tuple[list[Row], list[Row]]] = field(default_factory=dict)  # tasks, subtasks to add
    changed: dict[str, set[Any]] = field(default_factory=dict)  # table -> changed keys
    events: list[Row] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # event ids stored (before or in this batch)

    def touch(self, table: str, key: Any) -> None:
        """Mark the row ``key`` of ``table`` to be written."""
        self.changed.setdefault(table, set()).add(key)

    def add_subtask(self, row: Row) -> None:
        """Hold a subtask row (loaded or new) under its key and its (execution, subtask) pair."""
        key = (row["execution_id"], row["task_id"], row["subtask_id"])
        self.subtasks[key] = row
        self.subtask_by_id.setdefault((row["execution_id"], row["subtask_id"]), key)

    def subtask(self, execution_id: str, task_id: str | None, subtask_id: str | None) -> Row | None:
        """A subtask's row; without a task id, the first subtask of that id in the execution."""
        if subtask_id is None:
            return None
        if task_id is not None:
            return self.subtasks.get((execution_id, task_id, subtask_id))
        key = self.subtask_by_id.get((execution_id, subtask_id))
        return None if key is None else self.subtasks[key]


Handler = Callable[[Rows, Any], None]


def apply(rows: Rows, event: Event, stream_seq: int, data: str | None = None) -> bool:
    """Store ``event`` and apply it to ``rows``, unless its ``event_id`` is already stored.

    ``data``: the event's JSON to store, when the caller has it as the bus writes it (default: dumped from ``event``).

    Returns:
        False when the event was already stored (nothing changed), else True.
    """
    if event.event_id in rows.seen:
        log.debug("event already projected", extra={"event_id": event.event_id, "stream_seq": stream_seq})
        return False
    rows.seen.add(event.event_id)
    rows.events.append(event_row(event, stream_seq, data))
    handler = HANDLERS.get(event.type)
    if handler is None:
        return True
    if event.type != "execution_created" and rows.executions.get(event.execution_id) is None:
        log.warning(
            "event for an unknown execution stored, not applied",
            extra={"event_id": event.event_id, "execution_id": event.execution_id, "type": event.type},
        )
        return True
    handler(rows, event)
    return True


def event_row(event: Event, stream_seq: int, data: str | None = None) -> Row:
    """The ``execution_events`` row of ``event``, its ``data`` as JSON text (``data`` when given)."""
    return {
        "stream_seq": stream_seq,
        "event_id": event.event_id,
        "execution_id": event.execution_id,
        "type": event.type,
        "task_id": event.task_id,
        "subtask_id": event.subtask_id,
        "agent_id": event.agent_id,
        "attempt": event.attempt,
        "ts": event.ts,
        "data": event.model_dump_json(by_alias=True) if data is None else data,  # JSON text: see bulk.insert_events
    }


def on_execution_created(rows: Rows, event: ExecutionCreated) -> None:
    """Record the plan (once per plan id) and a new execution with every task and subtask pending."""
    e = event.execution_id
    if rows.executions.get(e) is not None:
        log.warning("execution already created", extra={"execution_id": e})
        return
    plan = event.plan
    if plan is None:  # the projector reads a plan sent by reference before it folds the event
        raise PlanUnavailable(f"execution {e}: its plan was not read from the plan object store")
    _check_keys(plan)
    fold_plan(rows, plan, event.ts)
    rows.executions[e] = {
        "execution_id": e, "plan_id": plan.plan_id, "status": ExecutionStatus.CREATED.value, "reason": "",
        "created_at": event.ts, "started_at": None, "finished_at": None, "updated_at": event.ts,
    }  # fmt: skip
    rows.touch("executions", e)
    for task in plan.tasks():
        rows.tasks[(e, task.task_id)] = {
            "execution_id": e, "task_id": task.task_id, "status": TaskStatus.PENDING.value, "attempts": 0,
            "reason": "", "started_at": None, "finished_at": None,
        }  # fmt: skip
        rows.touch("execution_tasks", (e, task.task_id))
    for task in plan.tasks():
        for sub in task.subtasks:
            rows.add_subtask(
                {
                    "execution_id": e,
                    "task_id": task.task_id,
                    "subtask_id": sub.subtask_id,
                    "action": sub.action,
                    "status": TaskStatus.PENDING.value,
                    "attempt": 0,
                    "agent_id": None,
                    "progress": 0.0,
                    "output": None,
                    "confidence": None,
                    "error": None,
                    "reason": "",
                    "not_before": None,
                    "deadline": None,
                    "started_at": None,
                    "finished_at": None,
                    "updated_at": event.ts,
                }
            )
            rows.touch("execution_subtasks", (e, task.task_id, sub.subtask_id))


def _check_keys(plan: Plan) -> None:
    tasks = [task.task_id for task in plan.tasks()]
    subtasks = [(task.task_id, sub.subtask_id) for task in plan.tasks() for sub in task.subtasks]
    if len(set(tasks)) < len(tasks) or len(set(subtasks)) < len(subtasks):
        raise ValueError(f"plan {plan.plan_id} repeats a task id or a subtask id within a task")


def fold_plan(rows: Rows, plan: Plan, ts: datetime) -> None:
    """Record ``plan`` (first seen at ``ts``) with its tasks and subtasks; a changed plan replaces its rows.

    A plan that was deleted from the catalog is listed again: it was uploaded or run anew.
    """
    plan_id = plan.plan_id
    row = rows.plans.get(plan_id)
    document = JsonText(plan.model_dump_json(by_alias=True))
    if row is None:
        row = {"plan_id": plan_id, "created_at": ts, "title": "", "goal": "", "plan": {}, "deleted_at": None}
        rows.plans[plan_id] = row
    elif not _same_document(row["plan"], document):
        rows.plans_replaced.add(plan_id)
        rows.plans_with_tasks.discard(plan_id)
    elif (row["title"], row["goal"], row["deleted_at"]) == (plan.title, plan.goal, None):
        return  # nothing changes: the plan is stored as it is
    row.update(title=plan.title, goal=plan.goal, plan=document, deleted_at=None)
    rows.touch("plans", plan_id)
    if plan_id in rows.plans_with_tasks:
        return
    rows.plans_with_tasks.add(plan_id)
    rows.plan_children[plan_id] = (_plan_tasks(plan), _plan_subtasks(plan))


def _same_document(stored: Any, document: JsonText) -> bool:
    """Whether a plan row's document (as read: a dict; as folded in this batch: text) is ``document``."""
    return stored == document if isinstance(stored, JsonText) else stored == json.loads(document)


def _plan_tasks(plan: Plan) -> list[Row]:
    found, position = [], 0
    for phase in plan.phases:
        for task in phase.tasks:
            found.append(
                {
                    "plan_id": plan.plan_id,
                    "task_id": task.task_id,
                    "phase_id": phase.phase_id,
                    "phase_name": phase.name,
                    "title": task.title,
                    "description": task.description,
                    "assignee_role": task.assignee_role,
                    "estimated_hours": task.estimated_hours,
                    "position": position,
                }
            )
            position += 1
    return found


def _plan_subtasks(plan: Plan) -> list[Row]:
    return [
        {
            "plan_id": plan.plan_id,
            "task_id": task.task_id,
            "subtask_id": sub.subtask_id,
            "action": sub.action,
            "description": sub.description,
            "params": sub.params,
            "position": index,
        }
        for task in plan.tasks()
        for index, sub in enumerate(task.subtasks)
    ]


def on_execution_state(rows: Rows, event: ExecutionState) -> None:
    """Set the execution's status and reason; RUNNING marks the start, a terminal status the end."""
    row = rows.executions.get(event.execution_id)
    if row is None:
        return
    row.update(status=event.status.value, reason=event.reason, updated_at=event.ts)
    if event.status == ExecutionStatus.RUNNING and row["started_at"] is None:
        row["started_at"] = event.ts
    if event.status in TERMINAL_EXECUTION:
        row["finished_at"] = event.ts
    rows.touch("executions", event.execution_id)


def on_task_state(rows: Rows, event: TaskState) -> None:
    """Set a task's status and reason; RUNNING marks the start, a terminal status the end."""
    key = (event.execution_id, event.task_id or "")
    row = rows.tasks.get(key)
    if row is None:
        _log_unknown(event)
        return
    row.update(status=event.status.value, reason=event.reason)
    if event.status == TaskStatus.RUNNING and row["started_at"] is None:
        row["started_at"] = event.ts
    if event.status in TERMINAL_TASK:
        row["finished_at"] = event.ts
    rows.touch("execution_tasks", key)


def on_subtask_state(rows: Rows, event: SubtaskState) -> None:
    """Set a subtask's status, reason, attempt, agent, output and error, and raise its task's attempt count.

    Then the ``task_state`` it carries (its task's move, decided with it), as that event would be.

    ``not_before`` (RETRY_WAIT) and ``deadline`` (BLOCKED) describe the state they come with, so every state
    sets them, to None when absent. The agent is stored as given: ``person-...`` when a person did the work.
    """
    _on_subtask(rows, event)
    if event.task_state is not None:
        on_task_state(rows, event.task_state)


def _on_subtask(rows: Rows, event: SubtaskState) -> None:
    row = rows.subtask(event.execution_id, event.task_id, event.subtask_id)
    if row is None:
        _log_unknown(event)
        return
    row.update(status=event.status.value, reason=event.reason, updated_at=event.ts)
    row.update(not_before=event.not_before, deadline=event.deadline)
    for name in ("attempt", "agent_id", "output", "confidence"):
        value = getattr(event, name)
        if value is not None:
            row[name] = value
    # An attempt began: RUNNING, or an end that says when (it ended before its start was announced). What the
    # previous attempt ended with no longer describes the subtask.
    began = event.ts if event.status == TaskStatus.RUNNING else event.started_at
    if began is not None:
        row.update(started_at=began, finished_at=None, error=None)
    if event.status == TaskStatus.FAILED:
        row["error"] = event.reason
    if event.status in TERMINAL_TASK:
        row["finished_at"] = event.ts
    if event.status == TaskStatus.COMPLETED:
        row["progress"] = 100.0
    rows.touch("execution_subtasks", (row["execution_id"], row["task_id"], row["subtask_id"]))
    task_key = (row["execution_id"], row["task_id"])
    task = rows.tasks.get(task_key)
    if task is not None and event.attempt is not None and event.attempt > task["attempts"]:
        task["attempts"] = event.attempt
        rows.touch("execution_tasks", task_key)


def on_subtask_progress(rows: Rows, event: SubtaskProgress) -> None:
    """Set a subtask's progress, unless it has finished, or the report is not from the attempt's holder.

    As the coordinator does: a report on another attempt, or from another agent than the one running the
    attempt, is kept in the events and changes nothing.
    """
    row = rows.subtask(event.execution_id, event.task_id, event.subtask_id)
    if row is None:
        _log_unknown(event)
        return
    if row["status"] in TERMINAL_TASK or event.attempt != row["attempt"]:
        return
    if row["status"] in HELD and event.agent_id != row["agent_id"]:
        return
    row.update(progress=event.percent, updated_at=event.ts)
    rows.touch("execution_subtasks", (row["execution_id"], row["task_id"], row["subtask_id"]))


def on_inbox_opened(rows: Rows, event: InboxOpened) -> None:
    """Add an open inbox item; an item id already known keeps its first opening."""
    if rows.inbox.get(event.item_id) is not None:
        log.warning("inbox item already opened", extra={"event_id": event.event_id, "item_id": event.item_id})
        return
    rows.inbox[event.item_id] = {
        "item_id": event.item_id, "execution_id": event.execution_id, "task_id": event.task_id,
        "subtask_id": event.subtask_id, "attempt": event.attempt, "kind": event.kind, "title": event.title,
        "reason": event.reason, "action": event.action, "params": event.params, "output": event.output,
        "confidence": event.confidence, "actions": list(event.actions), "status": INBOX_OPEN, "resolution": None,
        "resolved_by": None, "comment": None, "resolution_output": None, "resolution_params": None,
        "opened_at": event.ts, "closed_at": None,
    }  # fmt: skip
    rows.touch("inbox_items", event.item_id)


def on_inbox_closed(rows: Rows, event: InboxClosed) -> None:
    """Close an open inbox item with its resolution, who answered, the comment and any output."""
    row = rows.inbox.get(event.item_id)
    if row is None or row["execution_id"] != event.execution_id:
        log.warning(
            "event for an unknown inbox item stored, not applied",
            extra={"event_id": event.event_id, "execution_id": event.execution_id, "item_id": event.item_id},
        )
        return
    if row["status"] == INBOX_CLOSED:
        log.warning("inbox item already closed", extra={"event_id": event.event_id, "item_id": event.item_id})
        return
    row.update(status=INBOX_CLOSED, resolution=event.resolution, resolved_by=event.by, comment=event.comment)
    row.update(resolution_output=event.output, closed_at=event.ts, resolution_params=event.params)
    rows.touch("inbox_items", event.item_id)


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
        "audit_checkpoint",
    }
)
"""Event types kept in ``execution_events`` only: their effect on the read model comes as decision events."""
