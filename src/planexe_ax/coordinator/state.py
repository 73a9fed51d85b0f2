"""What the coordinator knows of an execution, and how one event changes it. Pure: no I/O, no clock.

``apply`` folds one event into an :class:`ExecutionRun`; replaying the stream is a fold of ``apply``.
Decisions (``decide.py``) are events too, applied the moment they are taken. Their ids say what they
decide — entity, attempt, new state, and how many times that entity entered that state before — so
a decision taken again after a restart has the id of the same decision, is de-duplicated by the
stream and ignored here; and two different decisions never share an id, whatever order the reports
arrive in after a restart.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from planexe_ax.bus.messages import (
    TERMINAL_EXECUTION,
    TERMINAL_TASK,
    Event,
    ExecutionState,
    ExecutionStatus,
    InboxClosed,
    InboxOpened,
    SubtaskBlocked,
    SubtaskProgress,
    SubtaskRejected,
    SubtaskResult,
    SubtaskStarted,
    SubtaskState,
    TaskOffer,
    TaskPaused,
    TaskReassigned,
    TaskState,
    TaskStatus,
)
from planexe_ax.bus.plan import Plan
from planexe_ax.plans.dag import PlanGraph

DECISIONS = (ExecutionState, TaskState, SubtaskState, TaskPaused, TaskReassigned, InboxOpened, InboxClosed)
LIVE = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.BLOCKED})
"""Subtask states in which an agent holds the current attempt and its reports count."""


@dataclass(frozen=True)
class CoreConfig:
    """Policy of the core (times in seconds; ``lag_scale_s`` is wall-clock seconds per plan hour of lag)."""

    lag_scale_s: float = 3600.0
    default_max_attempts: int = 3
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    schedule_to_start_s: float = 600.0
    start_to_close_s: float = 3600.0
    no_agent_grace_s: float = 30.0
    agent_ttl_s: float = 15.0
    duplicate_window_s: float = 600.0
    blocked_max_wait_s: float = 86400.0
    review_threshold: float = 0.7
    approval_actions: frozenset[str] = frozenset()
    dispatch_slice: int | None = None
    """Most subtasks one decision round dispatches (None: no limit). A round that reaches it leaves the rest of
    the ready work to the rounds after it (:class:`GoOn`), so a large start is decided, and its offers are sent,
    in slices rather than in one stretch that keeps the coordinator from everything else."""


@dataclass(frozen=True)
class Emit:
    """Publish this decision event."""

    event: Event


@dataclass(frozen=True)
class Offer:
    """Publish this task offer (to one agent when ``agent_id`` is set)."""

    offer: TaskOffer
    agent_id: str | None = None


@dataclass(frozen=True)
class WakeAt:
    """Call ``tick`` for this execution at ``at`` (a lag, a backoff or a timeout runs out then)."""

    execution_id: str
    at: datetime


@dataclass(frozen=True)
class GoOn:
    """Decide on this execution again once the effects before this one are out.

    A round stopped at its dispatch slice with ready work left (``ExecutionRun.backlog``).
    """

    execution_id: str


Effect = Emit | Offer | WakeAt | GoOn
Report = SubtaskStarted | SubtaskProgress | SubtaskResult | SubtaskRejected | SubtaskBlocked
EARLY_MAX = 16
"""Reports on not yet dispatched attempts kept per subtask (more can only come from a confused agent)."""
Agents = Mapping[str, frozenset[str]]
"""Online agents and their capabilities, as the coordinator last saw them in KV ``ax-agents``."""


@dataclass
class SubtaskRun:
    """What the coordinator knows of one subtask: status, current attempt, agent, timers, last report."""

    subtask_id: str
    task_id: str
    action: str
    human: bool = False
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    agent_id: str | None = None
    failures: int = 0
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    not_before: datetime | None = None
    deadline: datetime | None = None
    inbox: str | None = None
    params: dict[str, Any] | None = None
    """Params a person gave with a retry; they replace the plan's from then on."""
    rejected_by: set[str] = field(default_factory=set)
    seen: dict[tuple[int, TaskStatus], int] = field(default_factory=dict)
    """How many times each attempt entered each state (a plain dict: a run makes one per subtask)."""
    opened: int = 0
    reported_running: bool = False
    result: SubtaskResult | None = None
    rejection: SubtaskRejected | None = None
    blocked: SubtaskBlocked | None = None
    early: list[Report] = field(default_factory=list)
    """Reports on a later attempt than the one known: its DISPATCHED comes after them in the stream."""


@dataclass
class TaskRun:
    """What the coordinator knows of one task: status, times, pause, pin, open inbox item."""

    task_id: str
    status: TaskStatus = TaskStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    paused: bool = False
    pin: str | None = None
    inbox: str | None = None
    approved: bool = False
    seen: dict[TaskStatus, int] = field(default_factory=dict)
    """How many times the task entered each state."""
    opened: int = 0


@dataclass
class ExecutionRun:
    """Everything the coordinator knows of one execution."""

    execution_id: str
    plan: Plan
    graph: PlanGraph
    pins: dict[str, str] = field(default_factory=dict)
    status: ExecutionStatus = ExecutionStatus.CREATED
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    subtasks: dict[str, SubtaskRun] = field(default_factory=dict)
    inbox: dict[str, InboxOpened] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    seen: Counter[ExecutionStatus] = field(default_factory=Counter)
    reported: set[str] = field(default_factory=set)
    """Subtasks with an agent report not yet decided on."""
    task_counts: Counter[TaskStatus] = field(default_factory=Counter)
    """How many tasks are in each status, kept by ``apply`` so settling never scans the plan."""
    subtask_counts: Counter[TaskStatus] = field(default_factory=Counter)
    """How many subtasks are in each status, kept by ``apply``."""
    backlog: deque[str] = field(default_factory=deque)
    """Tasks a round left unlooked at when it reached its dispatch slice, in plan order: the next round starts
    with them."""

    @classmethod
    def create(cls, execution_id: str, plan: Plan, pins: dict[str, str] | None = None) -> ExecutionRun:
        """A fresh run of ``plan``: every task and subtask PENDING."""
        graph = PlanGraph.from_plan(plan)
        run = cls(execution_id=execution_id, plan=plan, graph=graph, pins=dict(pins or {}))
        run.tasks = {task_id: TaskRun(task_id) for task_id in graph.tasks}
        for sid, sub in graph.subtasks.items():
            task = graph.tasks[graph.subtask_task[sid]]
            human = sub.human_required or task.human_required
            run.subtasks[sid] = SubtaskRun(sid, task.task_id, sub.action, human=human)
        run.task_counts[TaskStatus.PENDING] = len(run.tasks)
        run.subtask_counts[TaskStatus.PENDING] = len(run.subtasks)
        return run

    def snapshot(self) -> dict[str, Any]:
        """A plain-data view for comparisons (replay tests)."""
        return {
            "status": self.status.value,
            "tasks": {k: (v.status.value, v.started_at, v.finished_at, v.paused, v.pin) for k, v in self.tasks.items()},
            "subtasks": {
                k: (v.status.value, v.attempt, v.agent_id, v.failures, v.params, v.started_at)
                for k, v in self.subtasks.items()
            },
            "inbox": sorted(self.inbox),
        }


def apply(run: ExecutionRun, event: Event) -> bool:
    """Fold ``event`` into ``run``; return False when it changed nothing (duplicate, stale or unknown)."""
    if isinstance(event, DECISIONS):
        if event.event_id in run.applied:
            return False
        run.applied.add(event.event_id)
    if isinstance(event, ExecutionState):
        if run.status in TERMINAL_EXECUTION:
            return False
        run.status = event.status
        run.seen[event.status] += 1
        return True
    if isinstance(event, TaskState):
        return _apply_task_state(run, event)
    if isinstance(event, SubtaskState):
        changed = _apply_subtask_state(run, event)
        if event.task_state is not None:  # its task's move, decided with it (an event of its own)
            changed = apply(run, event.task_state) or changed
        return changed
    if isinstance(event, TaskPaused | TaskReassigned):
        return _apply_task_control(run, event)
    if isinstance(event, InboxOpened | InboxClosed):
        return _apply_inbox(run, event)
    if isinstance(event, SubtaskStarted | SubtaskProgress | SubtaskResult | SubtaskRejected | SubtaskBlocked):
        return _apply_report(run, event)
    return False


def _apply_task_state(run: ExecutionRun, event: TaskState) -> bool:
    task = run.tasks.get(event.task_id or "")
    if task is None or task.status in TERMINAL_TASK:
        return False
    run.task_counts[task.status] -= 1
    run.task_counts[event.status] += 1
    task.status = event.status
    task.seen[event.status] = task.seen.get(event.status, 0) + 1
    if event.status == TaskStatus.RUNNING and task.started_at is None:
        task.started_at = event.ts
    if event.status in TERMINAL_TASK:
        task.finished_at = event.ts
    return True


def _apply_subtask_state(run: ExecutionRun, event: SubtaskState) -> bool:
    sub = run.subtasks.get(event.subtask_id or "")
    if sub is None or sub.status in TERMINAL_TASK:
        return False
    run.subtask_counts[sub.status] -= 1
    run.subtask_counts[event.status] += 1
    sub.status = event.status
    sub.attempt = event.attempt or sub.attempt
    sub.seen[(sub.attempt, event.status)] = sub.seen.get((sub.attempt, event.status), 0) + 1
    if event.status == TaskStatus.DISPATCHED:
        sub.agent_id = event.agent_id
        sub.dispatched_at, sub.started_at, sub.deadline = event.ts, None, None
        sub.result = sub.rejection = sub.blocked = None
        sub.reported_running = False
        _take_early(run, sub)
    elif event.status == TaskStatus.RUNNING:
        sub.agent_id = event.agent_id or sub.agent_id
        sub.started_at = sub.started_at or event.ts
        sub.reported_running = False
    elif event.status == TaskStatus.RETRY_WAIT:
        sub.failures += 1
        sub.not_before = event.not_before
        sub.result = sub.rejection = sub.blocked = None
    elif event.status == TaskStatus.BLOCKED:
        sub.deadline, sub.blocked = event.deadline, None
    elif event.status == TaskStatus.AWAITING_HUMAN:
        sub.result = sub.rejection = sub.blocked = None
    if event.status != TaskStatus.DISPATCHED:
        sub.agent_id = event.agent_id or sub.agent_id
        sub.started_at = event.started_at or sub.started_at
    return True


def _apply_task_control(run: ExecutionRun, event: TaskPaused | TaskReassigned) -> bool:
    task = run.tasks.get(event.task_id or "")
    if task is None:
        return False
    if isinstance(event, TaskPaused):
        task.paused = event.paused
    else:
        task.pin = event.agent_id
    return True


def _apply_inbox(run: ExecutionRun, event: InboxOpened | InboxClosed) -> bool:
    if isinstance(event, InboxOpened):
        run.inbox[event.item_id] = event
        holder: SubtaskRun | TaskRun | None = run.subtasks.get(event.subtask_id or "") or run.tasks.get(
            event.task_id or ""
        )
        if holder is not None:
            holder.inbox = event.item_id
            holder.opened += 1
        return True
    opened = run.inbox.pop(event.item_id, None)
    if opened is None:
        return False
    holder = run.subtasks.get(opened.subtask_id or "") or run.tasks.get(opened.task_id or "")
    if holder is not None:
        holder.inbox = None
        if isinstance(holder, TaskRun) and opened.kind == "approval" and event.resolution == "approved":
            holder.approved = True
        if isinstance(holder, SubtaskRun) and event.resolution in ("retried", "reassigned"):
            holder.failures = 0  # a person's retry, or moving the work to another agent, starts a fresh round
            holder.params = holder.params if event.params is None else dict(event.params)
    return True


def _apply_report(run: ExecutionRun, event: Report) -> bool:
    if _record_report(run, event):
        run.reported.add(event.subtask_id or "")
        return True
    return False


def _take_early(run: ExecutionRun, sub: SubtaskRun) -> None:
    """Apply the reports on the attempt just dispatched that the stream holds before its DISPATCHED.

    The offer is published before its DISPATCHED event, and decision events are published one at a time
    (fenced), so a quick agent's reports on it can reach the stream first. The live coordinator has applied
    the DISPATCHED already; a coordinator rebuilding or resuming from the stream meets the reports first.
    """
    if not sub.early:
        return
    now = [r for r in sub.early if r.attempt == sub.attempt]
    sub.early = [r for r in sub.early if (r.attempt or 0) > sub.attempt]
    for report in now:
        _apply_report(run, report)


def _record_report(run: ExecutionRun, event: Report) -> bool:
    sub = run.subtasks.get(event.subtask_id or "")
    if sub is None:
        return False
    if event.attempt is not None and event.attempt > sub.attempt and sub.status not in TERMINAL_TASK:
        if len(sub.early) < EARLY_MAX:
            sub.early.append(event)  # its attempt's DISPATCHED follows in the stream: applied then
        return False
    if event.attempt != sub.attempt or sub.status not in LIVE:
        return False  # a late report of an earlier attempt (a zombie): recorded, never applied
    if not from_holder(sub, event):
        return False  # another agent's report on this attempt: recorded, never applied
    if isinstance(event, SubtaskStarted | SubtaskProgress):
        wakes = sub.status == TaskStatus.DISPATCHED or (
            sub.status == TaskStatus.BLOCKED and isinstance(event, SubtaskProgress)
        )
        if not wakes or sub.reported_running:
            return False
        sub.reported_running, sub.agent_id = True, event.agent_id or sub.agent_id
        return True
    if sub.result or sub.rejection:
        return False
    sub.agent_id = event.agent_id  # the first report of an unpinned attempt makes its sender the holder
    if isinstance(event, SubtaskResult):
        sub.result = event
    elif isinstance(event, SubtaskRejected):
        sub.rejection = event
        if event.agent_id:
            sub.rejected_by.add(event.agent_id)
    else:
        sub.blocked = event
    return True


def from_holder(
    sub: SubtaskRun, event: SubtaskStarted | SubtaskProgress | SubtaskResult | SubtaskRejected | SubtaskBlocked
) -> bool:
    """Whether ``event`` comes from the agent that holds the current attempt of ``sub``.

    The holder is the agent the attempt was pinned to, else the sender of its first report that counted
    (normally its ``subtask_started``). A report without an agent id holds nothing.
    """
    return event.agent_id is not None and sub.agent_id in (None, event.agent_id)
