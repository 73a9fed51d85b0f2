"""The execution state machine. Pure: no I/O, no clock, no randomness.

``apply`` folds one event into an :class:`ExecutionRun` (replaying the stream is a fold of ``apply``);
``decide`` returns what must happen next given the state and ``now`` — decision events (applied to
the state at once), task offers and wake-up times. ``transition`` is both. Decision event ids are
deterministic (execution, entity, version), so a decision taken again after a restart is
de-duplicated by the stream and ignored by ``apply``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from planexe_ax.bus.messages import (
    TERMINAL_EXECUTION,
    TERMINAL_TASK,
    Event,
    ExecutionState,
    ExecutionStatus,
    SubtaskResult,
    SubtaskStarted,
    SubtaskState,
    TaskOffer,
    TaskState,
    TaskStatus,
)
from planexe_ax.bus.plan import Plan
from planexe_ax.coordinator.dag import Edge, PlanGraph

DISPATCHING = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING})


@dataclass(frozen=True)
class CoreConfig:
    """Policy of the core. ``lag_scale_s``: wall-clock seconds per plan hour of dependency lag."""

    lag_scale_s: float = 3600.0
    default_max_attempts: int = 3


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
    """Call ``tick`` for this execution at ``at`` (a dependency lag runs out then)."""

    execution_id: str
    at: datetime


Effect = Emit | Offer | WakeAt


@dataclass
class SubtaskRun:
    subtask_id: str
    task_id: str
    action: str
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    agent_id: str | None = None
    version: int = 0
    reported_running: bool = False
    result: SubtaskResult | None = None


@dataclass
class TaskRun:
    task_id: str
    status: TaskStatus = TaskStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    version: int = 0


@dataclass
class ExecutionRun:
    """Everything the coordinator knows of one execution."""

    execution_id: str
    plan: Plan
    graph: PlanGraph
    pins: dict[str, str] = field(default_factory=dict)
    status: ExecutionStatus = ExecutionStatus.CREATED
    version: int = 0
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    subtasks: dict[str, SubtaskRun] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, execution_id: str, plan: Plan, pins: dict[str, str] | None = None) -> ExecutionRun:
        graph = PlanGraph.from_plan(plan)
        run = cls(execution_id=execution_id, plan=plan, graph=graph, pins=dict(pins or {}))
        run.tasks = {task_id: TaskRun(task_id) for task_id in graph.tasks}
        run.subtasks = {
            sid: SubtaskRun(sid, graph.subtask_task[sid], sub.action) for sid, sub in graph.subtasks.items()
        }
        return run

    def snapshot(self) -> dict[str, Any]:
        """A plain-data view for comparisons (replay tests)."""
        return {
            "status": self.status.value,
            "tasks": {k: (v.status.value, v.started_at, v.finished_at) for k, v in self.tasks.items()},
            "subtasks": {k: (v.status.value, v.attempt, v.agent_id) for k, v in self.subtasks.items()},
        }


# ------------------------------------------------------------------------------------------------ apply
def apply(run: ExecutionRun, event: Event) -> bool:
    """Fold ``event`` into ``run``; return False when it changed nothing (duplicate, stale or unknown)."""
    if isinstance(event, ExecutionState | TaskState | SubtaskState):
        if event.event_id in run.applied:
            return False
        run.applied.add(event.event_id)
    if isinstance(event, ExecutionState):
        if run.status in TERMINAL_EXECUTION:
            return False
        run.status, run.version = event.status, run.version + 1
        return True
    if isinstance(event, TaskState):
        return _apply_task_state(run, event)
    if isinstance(event, SubtaskState):
        return _apply_subtask_state(run, event)
    if isinstance(event, SubtaskStarted | SubtaskResult):
        return _apply_report(run, event)
    return False


def _apply_task_state(run: ExecutionRun, event: TaskState) -> bool:
    task = run.tasks.get(event.task_id or "")
    if task is None or task.status in TERMINAL_TASK:
        return False
    task.status, task.version = event.status, task.version + 1
    if event.status == TaskStatus.RUNNING and task.started_at is None:
        task.started_at = event.ts
    if event.status in TERMINAL_TASK:
        task.finished_at = event.ts
    return True


def _apply_subtask_state(run: ExecutionRun, event: SubtaskState) -> bool:
    sub = run.subtasks.get(event.subtask_id or "")
    if sub is None or sub.status in TERMINAL_TASK:
        return False
    sub.status, sub.version = event.status, sub.version + 1
    sub.attempt = event.attempt or sub.attempt
    sub.agent_id = event.agent_id or sub.agent_id
    if event.status == TaskStatus.DISPATCHED:
        sub.result, sub.reported_running = None, False
    return True


def _apply_report(run: ExecutionRun, event: SubtaskStarted | SubtaskResult) -> bool:
    sub = run.subtasks.get(event.subtask_id or "")
    if sub is None or event.attempt != sub.attempt or sub.status not in (TaskStatus.DISPATCHED, TaskStatus.RUNNING):
        return False  # unknown, or a late report of an earlier attempt (a zombie): recorded, never applied
    if isinstance(event, SubtaskStarted):
        if sub.reported_running:
            return False
        sub.reported_running, sub.agent_id = True, event.agent_id or sub.agent_id
        return True
    if sub.result is not None:
        return False
    sub.result = event
    return True


# ------------------------------------------------------------------------------------------------ decide
class _Decider:
    """One call of :func:`decide`: collects effects, applying each decision as it is taken."""

    def __init__(self, run: ExecutionRun, now: datetime, config: CoreConfig) -> None:
        self.run, self.now, self.config = run, now, config
        self.effects: list[Effect] = []
        self.wake: datetime | None = None

    def emit(self, event: ExecutionState | TaskState | SubtaskState) -> None:
        apply(self.run, event)
        self.effects.append(Emit(event))

    def set_execution(self, status: ExecutionStatus, reason: str = "") -> None:
        run = self.run
        event_id = f"{run.execution_id}:x:{run.version}"
        self.emit(ExecutionState(event_id=event_id, execution_id=run.execution_id, ts=self.now, status=status,
                                 reason=reason))  # fmt: skip

    def set_task(self, task: TaskRun, status: TaskStatus, reason: str = "") -> None:
        event_id = f"{self.run.execution_id}:t:{task.task_id}:{task.version}"
        self.emit(TaskState(event_id=event_id, execution_id=self.run.execution_id, ts=self.now,
                            task_id=task.task_id, status=status, reason=reason))  # fmt: skip

    def set_subtask(self, sub: SubtaskRun, status: TaskStatus, attempt: int, **extra: Any) -> None:
        event_id = f"{self.run.execution_id}:s:{sub.subtask_id}:{sub.version}"
        self.emit(SubtaskState(event_id=event_id, execution_id=self.run.execution_id, ts=self.now,
                               task_id=sub.task_id, subtask_id=sub.subtask_id, attempt=attempt,
                               action=sub.action, status=status, **extra))  # fmt: skip

    # -- dependency checks -------------------------------------------------------------------------
    def _moment(self, edge: Edge) -> datetime | None:
        pred = self.run.tasks[edge.pred]
        if edge.pred_event == "finish":
            return pred.finished_at if pred.status == TaskStatus.COMPLETED else None
        return pred.started_at

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
                self.wake = due if self.wake is None else min(self.wake, due)
        return ok


def decide(run: ExecutionRun, now: datetime, config: CoreConfig) -> list[Effect]:
    """Everything that must happen now; each decision is already applied to ``run``."""
    d = _Decider(run, now, config)
    if run.status in TERMINAL_EXECUTION:
        return d.effects
    if run.status == ExecutionStatus.CREATED:
        d.set_execution(ExecutionStatus.QUEUED)
    _take_reports(d)
    if run.status in TERMINAL_EXECUTION:
        return d.effects
    while _advance(d):
        pass
    if all(task.status == TaskStatus.COMPLETED for task in run.tasks.values()):
        d.set_execution(ExecutionStatus.COMPLETED)
    elif d.wake is not None:
        d.effects.append(WakeAt(run.execution_id, d.wake))
    return d.effects


def _take_reports(d: _Decider) -> None:
    for sub in d.run.subtasks.values():
        if sub.reported_running and sub.status == TaskStatus.DISPATCHED:
            d.set_subtask(sub, TaskStatus.RUNNING, sub.attempt, agent_id=sub.agent_id)
        result = sub.result
        if result is None or sub.status in TERMINAL_TASK:
            continue
        if result.ok:
            d.set_subtask(sub, TaskStatus.COMPLETED, sub.attempt, agent_id=result.agent_id, output=result.output)
            continue
        spec = d.run.graph.subtasks[sub.subtask_id].retry_policy
        limit = (spec.max_attempts if spec else None) or d.config.default_max_attempts
        reason = result.error or "failed"
        if result.retryable and sub.attempt < limit:
            d.set_subtask(sub, TaskStatus.RETRY_WAIT, sub.attempt, agent_id=result.agent_id, reason=reason)
            continue
        d.set_subtask(sub, TaskStatus.FAILED, sub.attempt, agent_id=result.agent_id, reason=reason)
        _end(d, ExecutionStatus.FAILED, f"subtask {sub.subtask_id} failed after {sub.attempt} attempt(s): {reason}")
        return


def _advance(d: _Decider) -> bool:
    """One pass over the open tasks; True when anything changed (so another pass may do more)."""
    run, changed = d.run, False
    dispatching = run.status in DISPATCHING
    for task_id, task in run.tasks.items():
        if task.status in TERMINAL_TASK:
            continue
        if task.status == TaskStatus.PENDING and d.allows(task_id, gates_start=True):
            d.set_task(task, TaskStatus.READY)
            changed = True
        if task.status == TaskStatus.READY and dispatching:
            if run.status == ExecutionStatus.QUEUED:
                d.set_execution(ExecutionStatus.RUNNING)
            d.set_task(task, TaskStatus.RUNNING)
            changed = True
        if task.status == TaskStatus.RUNNING:
            changed |= _run_task(d, task_id, dispatching)
    return changed


def _run_task(d: _Decider, task_id: str, dispatching: bool) -> bool:
    run = d.run
    spec = run.graph.tasks[task_id]
    done = True
    for sub_spec in spec.subtasks:
        sub = run.subtasks[sub_spec.subtask_id]
        if sub.status != TaskStatus.COMPLETED:
            done = False
        if dispatching and sub.status in (TaskStatus.PENDING, TaskStatus.RETRY_WAIT):
            preds = run.graph.subtask_preds[sub.subtask_id]
            if all(run.subtasks[p].status == TaskStatus.COMPLETED for p in preds):
                _dispatch(d, sub)
    if done and d.allows(task_id, gates_start=False):
        d.set_task(run.tasks[task_id], TaskStatus.COMPLETED)
        return True
    return False


def _dispatch(d: _Decider, sub: SubtaskRun) -> None:
    run = d.run
    spec = run.graph.subtasks[sub.subtask_id]
    task = run.graph.tasks[sub.task_id]
    attempt = sub.attempt + 1
    offer = TaskOffer(
        execution_id=run.execution_id,
        plan_id=run.plan.plan_id,
        task_id=sub.task_id,
        subtask_id=sub.subtask_id,
        attempt=attempt,
        action=sub.action,
        params=spec.params,
        task_title=task.title,
        description=spec.description,
        issued_at=d.now,
    )
    pinned = run.pins.get(sub.task_id) or run.pins.get(sub.action)
    d.effects.append(Offer(offer, pinned))
    d.set_subtask(sub, TaskStatus.DISPATCHED, attempt, agent_id=pinned)


def _end(d: _Decider, status: ExecutionStatus, reason: str) -> None:
    """Close every open subtask and task, then the execution (so readers see the execution last)."""
    for sub in d.run.subtasks.values():
        if sub.status not in TERMINAL_TASK:
            d.set_subtask(sub, TaskStatus.CANCELLED, sub.attempt, reason=reason)
    for task in d.run.tasks.values():
        if task.status not in TERMINAL_TASK:
            failed = status == ExecutionStatus.FAILED and any(
                s.status == TaskStatus.FAILED for s in d.run.subtasks.values() if s.task_id == task.task_id
            )
            d.set_task(task, TaskStatus.FAILED if failed else TaskStatus.CANCELLED, reason)
    d.set_execution(status, reason)


def end_execution(run: ExecutionRun, status: ExecutionStatus, reason: str, now: datetime) -> list[Effect]:
    """Cancel or fail ``run`` at once (the cancel command)."""
    d = _Decider(run, now, CoreConfig())
    _end(d, status, reason)
    return d.effects


def set_status(run: ExecutionRun, status: ExecutionStatus, reason: str, now: datetime) -> list[Effect]:
    """Pause or resume ``run`` (the decision only; call :func:`decide` after a resume)."""
    d = _Decider(run, now, CoreConfig())
    d.set_execution(status, reason)
    return d.effects


def transition(run: ExecutionRun, event: Event, now: datetime, config: CoreConfig) -> tuple[ExecutionRun, list[Effect]]:
    """Apply ``event`` and decide what follows: ``(state, effects)``."""
    apply(run, event)
    return run, decide(run, now, config)
