"""One round of decisions and the moves that many rules share: dispatch, retry or escalate, end. Pure.

A :class:`Decider` applies every decision to the run as it takes it and collects the effects; the rules
that take rounds (``decide.py``) and a person's answers (``inbox.py``) both decide through it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from planexe_ax.bus import event_ids
from planexe_ax.bus.messages import (
    TERMINAL_TASK,
    ExecutionState,
    ExecutionStatus,
    InboxAction,
    InboxClosed,
    InboxKind,
    InboxOpened,
    SubtaskState,
    TaskOffer,
    TaskState,
    TaskStatus,
)
from planexe_ax.coordinator.state import Agents, CoreConfig, Effect, Emit, ExecutionRun, Offer, SubtaskRun, TaskRun
from planexe_ax.coordinator.state import apply as apply_event
from planexe_ax.plans.dag import Edge

DISPATCHING = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.BLOCKED})
DONE = frozenset({TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.SKIPPED})
"""Task states that count as finished for dependencies and for completing the execution."""
WAITING = frozenset({TaskStatus.BLOCKED, TaskStatus.AWAITING_HUMAN, TaskStatus.AWAITING_APPROVAL})
ACTIONS: dict[str, list[InboxAction]] = {
    "human_task": ["complete", "reject"],
    "approval": ["approve", "reject"],
    "review": ["accept", "edit", "reject"],
    "escalation": ["retry", "complete", "skip", "fail"],
    "acknowledge": ["acknowledge"],
}
NOTICES = frozenset({"acknowledge"})
"""Inbox kinds that only tell a person something: they hold nothing up and outlive the execution's end."""


class Decider:
    """One round of decisions: collects effects, applying each decision as it is taken."""

    def __init__(self, run: ExecutionRun, now: datetime, config: CoreConfig, agents: Agents | None) -> None:
        self.run, self.now, self.config, self.agents = run, now, config, agents
        self.effects: list[Effect] = []
        self.wake: datetime | None = None
        self.dirty: set[str] = set()
        """Tasks whose state may move: their subtasks or predecessors changed in this round."""
        self.changed: set[str] = set()
        """Subtasks changed in this round (their timers need arming)."""
        self.dispatched = 0
        """Offers made in this round."""

    @property
    def sliced(self) -> bool:
        """Whether this round made as many offers as one round may (``CoreConfig.dispatch_slice``)."""
        limit = self.config.dispatch_slice
        return limit is not None and self.dispatched >= limit

    # -- emitting decisions --------------------------------------------------------------------------
    def emit(self, event: Any) -> None:
        """Apply ``event`` to the run now and keep it to publish."""
        apply_event(self.run, event)
        self.effects.append(Emit(event))

    def wake_at(self, when: datetime) -> None:
        """Ask to be called again at ``when`` (the earliest asked time wins)."""
        self.wake = when if self.wake is None else min(self.wake, when)

    def set_execution(self, status: ExecutionStatus, reason: str = "", causation_id: str | None = None) -> None:
        """Move the execution to ``status``, with a deterministic event id."""
        run = self.run
        seen = run.seen[status]
        event_id = event_ids.execution_state(run.execution_id, status.value, seen)
        self.emit(ExecutionState(event_id=event_id, execution_id=run.execution_id,
                                 ts=self.now, status=status, reason=reason, causation_id=causation_id))  # fmt: skip

    def set_task(self, task: TaskRun, status: TaskStatus, reason: str = "") -> None:
        """Move a task to ``status`` and mark it and its successors to be looked at again."""
        self.dirty.add(task.task_id)
        self.dirty.update(self.run.graph.outgoing[task.task_id])
        seen = task.seen.get(status, 0)
        self.emit(TaskState(event_id=event_ids.task_state(self.run.execution_id, task.task_id, status.value, seen),
                            execution_id=self.run.execution_id, ts=self.now, task_id=task.task_id,
                            status=status, reason=reason))  # fmt: skip

    def set_subtask(self, sub: SubtaskRun, status: TaskStatus, **extra: Any) -> None:
        """Move a subtask's current attempt to ``status``; ``extra`` fills the event's fields."""
        self.dirty.add(sub.task_id)
        self.changed.add(sub.subtask_id)
        extra.setdefault("attempt", sub.attempt)
        attempt = extra["attempt"]
        seen = sub.seen.get((attempt, status), 0)
        event_id = event_ids.subtask_state(self.run.execution_id, sub.subtask_id, attempt, status.value, seen)
        self.emit(SubtaskState(event_id=event_id,
                               execution_id=self.run.execution_id, ts=self.now, task_id=sub.task_id,
                               subtask_id=sub.subtask_id, action=sub.action, status=status, **extra))  # fmt: skip

    def open_inbox(self, holder: SubtaskRun | TaskRun, kind: InboxKind, reason: str, **extra: Any) -> None:
        """Ask a person about a subtask or a task: an inbox item of ``kind``."""
        sub = holder if isinstance(holder, SubtaskRun) else None
        entity = sub.subtask_id if sub else holder.task_id
        spec = self.run.graph.subtasks[sub.subtask_id] if sub else None
        task_spec = self.run.graph.tasks[holder.task_id]
        params = params_of(self.run, sub) if sub else {}
        item_id = event_ids.inbox_item(self.run.execution_id, entity, kind, holder.opened)
        self.emit(InboxOpened(event_id=event_ids.inbox_opened(item_id), item_id=item_id,
                              execution_id=self.run.execution_id, ts=self.now, task_id=holder.task_id,
                              subtask_id=sub.subtask_id if sub else None, attempt=sub.attempt if sub else None,
                              kind=kind, title=spec.description or task_spec.title if spec else task_spec.title,
                              reason=reason, action=sub.action if sub else "", params=params,
                              actions=ACTIONS[kind], **extra))  # fmt: skip

    def close_inbox(self, item_id: str, resolution: str, by: str = "", comment: str = "", **extra: Any) -> None:
        """Record how an inbox item was answered, or that it needs no answer any more."""
        self.emit(InboxClosed(event_id=event_ids.inbox_closed(item_id), item_id=item_id,
                              execution_id=self.run.execution_id, ts=self.now, resolution=resolution, by=by,
                              comment=comment, **extra))  # fmt: skip

    # -- agents ------------------------------------------------------------------------------------
    def capable(self, action: str) -> list[str] | None:
        """Online agents offering ``action`` (sorted), or None while the agents are not known yet."""
        if self.agents is None:
            return None
        return sorted(agent for agent, caps in self.agents.items() if action in caps)

    def offline(self, agent_id: str | None) -> bool:
        """Whether ``agent_id`` is known to have gone (False while the agents are not known)."""
        return self.agents is not None and agent_id is not None and agent_id not in self.agents

    # -- dependency checks -------------------------------------------------------------------------
    def _moment(self, edge: Edge) -> datetime | None:
        pred = self.run.tasks[edge.pred]
        if edge.pred_event == "finish":
            return pred.finished_at if pred.status in DONE else None
        return pred.started_at or (pred.finished_at if pred.status in DONE else None)

    def allows(self, task_id: str, gates_start: bool) -> bool:
        """Whether every edge into ``task_id`` of the given kind lets it start (or finish) now."""
        ok = True
        for edge in self.run.graph.incoming[task_id]:
            if edge.gates_start != gates_start:
                continue
            moment = self._moment(edge)
            if moment is None:
                ok = False
                continue
            due = moment + timedelta(seconds=edge.lag_hours * self.config.lag_scale_s)
            if due > self.now:
                ok = False
                self.wake_at(due)
        return ok


# ------------------------------------------------------------------------------------------------ failures
def backoff_s(run: ExecutionRun, sub: SubtaskRun, failures: int, config: CoreConfig) -> float:
    """Exponential backoff with deterministic jitter (50-100 % of the step), capped at ``backoff_max_s``."""
    policy = run.graph.subtasks[sub.subtask_id].retry_policy
    initial = policy.initial_delay_s if policy else config.backoff_initial_s
    kind = policy.backoff if policy else "exponential"
    if kind == "none":
        return 0.0
    step = initial if kind == "fixed" else initial * 2 ** (failures - 1)
    digest = hashlib.sha256(f"{run.execution_id}:{sub.subtask_id}:{failures}".encode()).digest()
    jitter = 0.5 + 0.5 * int.from_bytes(digest[:4], "big") / 2**32
    return float(min(config.backoff_max_s, step) * jitter)


def max_attempts(run: ExecutionRun, sub: SubtaskRun, config: CoreConfig) -> int:
    """Attempts allowed for a subtask: its retry policy's, else the configured default."""
    policy = run.graph.subtasks[sub.subtask_id].retry_policy
    return (policy.max_attempts if policy else None) or config.default_max_attempts


def params_of(run: ExecutionRun, sub: SubtaskRun) -> dict[str, Any]:
    """The params the next attempt gets: a person's from a retry, else the plan's."""
    return sub.params if sub.params is not None else run.graph.subtasks[sub.subtask_id].params


def fail_attempt(d: Decider, sub: SubtaskRun, reason: str, retryable: bool = True) -> None:
    """An attempt failed or timed out: wait and try again, or, after the last one, ask a person.

    A permanent error asks at once. With ``on_failure: fail`` (the task's, else the plan's) the subtask, its
    task and the execution fail instead.
    """
    failures = sub.failures + 1
    if retryable and failures < max_attempts(d.run, sub, d.config):
        due = d.now + timedelta(seconds=backoff_s(d.run, sub, failures, d.config))
        d.set_subtask(sub, TaskStatus.RETRY_WAIT, agent_id=sub.agent_id, reason=reason, not_before=due)
        return
    why = f"failed after {failures} attempt(s): {reason}" if retryable else f"failed permanently: {reason}"
    task = d.run.graph.tasks[sub.task_id]
    if (task.on_failure or d.run.plan.on_failure) == "escalate":
        escalate(d, sub, why)
        return
    d.set_subtask(sub, TaskStatus.FAILED, agent_id=sub.agent_id, reason=reason)
    end(d, ExecutionStatus.FAILED, f"subtask {sub.subtask_id} {why}")


def escalate(d: Decider, sub: SubtaskRun, reason: str) -> None:
    """Hand the subtask to a person."""
    d.set_subtask(sub, TaskStatus.AWAITING_HUMAN, reason=reason)
    d.open_inbox(sub, "escalation", reason)


def end(d: Decider, status: ExecutionStatus, reason: str, causation_id: str | None = None) -> None:
    """Close every open item, subtask and task, then the execution (so readers see the execution last).

    A notice (an ``acknowledge`` item) stays open: a person still has to see it.
    """
    for item_id, item in list(d.run.inbox.items()):
        if item.kind not in NOTICES:
            d.close_inbox(item_id, "cancelled", comment=reason)
    failed_tasks = {s.task_id for s in d.run.subtasks.values() if s.status == TaskStatus.FAILED}
    for sub in d.run.subtasks.values():
        if sub.status not in TERMINAL_TASK:
            d.set_subtask(sub, TaskStatus.CANCELLED, reason=reason)
    for task in d.run.tasks.values():
        if task.status not in TERMINAL_TASK:
            failed = status == ExecutionStatus.FAILED and task.task_id in failed_tasks
            d.set_task(task, TaskStatus.FAILED if failed else TaskStatus.CANCELLED, reason)
    d.set_execution(status, reason, causation_id)


# ------------------------------------------------------------------------------------------------ dispatch
def offer_of(run: ExecutionRun, sub: SubtaskRun, attempt: int, issued_at: datetime) -> TaskOffer:
    """The offer of ``attempt`` of ``sub`` (the same for the same arguments: its id is its attempt's)."""
    spec = run.graph.subtasks[sub.subtask_id]
    return TaskOffer(execution_id=run.execution_id, plan_id=run.plan.plan_id, task_id=sub.task_id,
                     subtask_id=sub.subtask_id, attempt=attempt, action=sub.action, params=params_of(run, sub),
                     task_title=run.graph.tasks[sub.task_id].title, description=spec.description,
                     issued_at=issued_at)  # fmt: skip


def dispatch(d: Decider, sub: SubtaskRun, agent_id: str | None = None, reason: str = "") -> None:
    """Offer the next attempt of ``sub``; the offer is published before its DISPATCHED event."""
    run = d.run
    pinned = agent_id or run.tasks[sub.task_id].pin or run.pins.get(sub.task_id) or run.pins.get(sub.action)
    offer = offer_of(run, sub, sub.attempt + 1, d.now)
    d.effects.append(Offer(offer, pinned))
    d.dispatched += 1
    d.set_subtask(sub, TaskStatus.DISPATCHED, attempt=offer.attempt, agent_id=pinned, reason=reason)
