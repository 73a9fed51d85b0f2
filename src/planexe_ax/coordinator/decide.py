"""What must happen next in an execution, given its state, the online agents and ``now``. Pure.

Every decision is an event applied to the state as it is taken, so one call sees its own decisions.
The order of one call: take the agents' reports, time out what ran out of time, then move tasks and
subtasks forward until nothing more can move (or until the round made ``CoreConfig.dispatch_slice`` offers:
the tasks not looked at wait in ``ExecutionRun.backlog`` for the next round, asked for with a ``GoOn``), then
settle the execution's own status.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from planexe_ax.bus.messages import TERMINAL_EXECUTION, TERMINAL_TASK, ExecutionStatus, TaskStatus
from planexe_ax.coordinator.decider import (
    DISPATCHING,
    DONE,
    WAITING,
    Decider,
    dispatch,
    escalate,
    fail_attempt,
)
from planexe_ax.coordinator.state import (
    Agents,
    CoreConfig,
    Effect,
    ExecutionRun,
    GoOn,
    SubtaskRun,
    TaskRun,
    WakeAt,
)


# ------------------------------------------------------------------------------------------------ rounds
def decide(
    run: ExecutionRun, now: datetime, config: CoreConfig, agents: Agents | None = None, full: bool = True
) -> list[Effect]:
    """Everything that must happen now; each decision is already applied to ``run``.

    Args:
        run: The execution.
        now: The time of the decision.
        config: Policy.
        agents: Online agents, None while unknown.
        full: Look at every task and timer. False after an agent report: only what the reports touch
            (and what their decisions touch) is looked at, so a report costs little however wide the plan.
    """
    d = Decider(run, now, config, agents)
    if run.status in TERMINAL_EXECUTION:
        run.reported.clear()
        run.backlog.clear()
        return d.effects
    if run.status == ExecutionStatus.CREATED:
        d.set_execution(ExecutionStatus.QUEUED)
    if not _take_all_reports(d):
        return d.effects
    if full:
        for sub in run.subtasks.values():
            if sub.status not in TERMINAL_TASK and run.status not in TERMINAL_EXECUTION:
                _check_time(d, sub)
        run.backlog.clear()  # every open task is looked at, in plan order
        d.dirty.update(t for t, task in run.tasks.items() if task.status not in TERMINAL_TASK)
    if run.status in TERMINAL_EXECUTION:
        return d.effects
    _advance(d)
    # A dispatch applies the reports the stream held before it (state.py, _take_early): take them now.
    while run.reported:
        if not _take_all_reports(d):
            return d.effects
        _advance(d)
    for sid in sorted(d.changed, key=run.graph.position.__getitem__):  # arm the timers of what just moved
        if run.subtasks[sid].status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.BLOCKED):
            _check_time(d, run.subtasks[sid])
    _settle(d)
    if run.backlog and run.status not in TERMINAL_EXECUTION:
        d.effects.append(GoOn(run.execution_id))  # once, however many times the round stopped at its slice
    return d.effects


def _take_all_reports(d: Decider) -> bool:
    """Take every report not decided on yet, in plan order; False once the execution has ended."""
    run = d.run
    reported = sorted(run.reported, key=run.graph.position.__getitem__)
    run.reported.clear()
    for sid in reported:
        _take_reports(d, run.subtasks[sid])
        if run.status in TERMINAL_EXECUTION:
            return False
    return True


def _take_reports(d: Decider, sub: SubtaskRun) -> None:
    if sub.reported_running and sub.status in (TaskStatus.DISPATCHED, TaskStatus.BLOCKED):
        d.set_subtask(sub, TaskStatus.RUNNING, agent_id=sub.agent_id)
    if sub.rejection is not None:
        rejection, by = sub.rejection, sub.rejection.agent_id or "an agent"
        why = f"rejected by {by} ({rejection.reason_code}{': ' + rejection.reason if rejection.reason else ''})"
        others = [a for a in d.capable(sub.action) or [] if a not in sub.rejected_by]
        if others:
            dispatch(d, sub, others[0], reason=f"{why}; re-routed to {others[0]}")
        else:
            escalate(d, sub, f"{why}; no other agent offers {sub.action}")
    elif sub.blocked is not None:
        wait = sub.blocked.max_wait_s or d.config.blocked_max_wait_s
        deadline = d.now + timedelta(seconds=wait)
        d.set_subtask(sub, TaskStatus.BLOCKED, agent_id=sub.agent_id, reason=sub.blocked.reason, deadline=deadline)
    if sub.result is None or sub.status in TERMINAL_TASK:
        return
    result = sub.result
    if not result.ok:
        fail_attempt(d, sub, result.error or "failed", result.retryable)
        return
    # An attempt that ended before its start was announced was never RUNNING: its result says when it began.
    started_at = result.started_at if sub.status == TaskStatus.DISPATCHED else None
    threshold = d.run.plan.review_threshold
    threshold = d.config.review_threshold if threshold is None else threshold
    if result.confidence is not None and result.confidence < threshold:
        reason = f"confidence {result.confidence:.2f} is below {threshold:.2f}"
        d.set_subtask(sub, TaskStatus.AWAITING_HUMAN, agent_id=result.agent_id, reason=reason,
                      output=result.output, confidence=result.confidence, started_at=started_at)  # fmt: skip
        d.open_inbox(sub, "review", reason, output=result.output, confidence=result.confidence)
        return
    d.set_subtask(sub, TaskStatus.COMPLETED, agent_id=result.agent_id, output=result.output,
                  confidence=result.confidence, started_at=started_at)  # fmt: skip


def _check_time(d: Decider, sub: SubtaskRun) -> None:
    """Timeouts: nobody able to take it, nobody took it, an agent gone quiet, a run too long, a wait too long."""
    config, now = d.config, d.now
    if sub.status == TaskStatus.DISPATCHED and sub.dispatched_at is not None:
        capable = d.capable(sub.action)
        if capable is not None and not capable and not sub.agent_id:
            due = sub.dispatched_at + timedelta(seconds=config.no_agent_grace_s)
            if now >= due:
                escalate(d, sub, f"no agent has capability {sub.action}")
                return
            d.wake_at(due)
        due = sub.dispatched_at + timedelta(seconds=config.schedule_to_start_s)
        if now >= due:
            fail_attempt(
                d, sub, f"schedule-to-start timeout: no agent started it within {config.schedule_to_start_s:g} s"
            )
            return
        d.wake_at(due)
    if sub.status == TaskStatus.RUNNING and d.offline(sub.agent_id):
        # Starting the attempt showed the agent alive then: it is gone once silent for a TTL after that (a
        # bus electing the agents bucket's leader keeps every heartbeat out for a while; its reports get in).
        due = (sub.started_at or now) + timedelta(seconds=config.agent_ttl_s)
        if now >= due:
            fail_attempt(d, sub, f"heartbeat timeout: agent {sub.agent_id} went offline")
            return
        d.wake_at(due)
    if sub.status == TaskStatus.RUNNING and sub.started_at is not None:
        hours = d.run.graph.subtasks[sub.subtask_id].timeout_hours
        limit = hours * 3600 if hours else config.start_to_close_s
        due = sub.started_at + timedelta(seconds=limit)
        if now >= due:
            fail_attempt(d, sub, f"start-to-close timeout: still running after {limit:g} s")
            return
        d.wake_at(due)
    if sub.status == TaskStatus.BLOCKED and sub.deadline is not None:
        if now >= sub.deadline:
            escalate(d, sub, "blocked longer than allowed")
        else:
            d.wake_at(sub.deadline)


def _advance(d: Decider) -> None:
    """Move the backlog's tasks, then the dirty ones in plan order, until no decision makes another task dirty.

    A round that reaches its dispatch slice stops there: what it did not look at joins the backlog (and
    :func:`decide` asks for the next round with a :class:`GoOn`).
    """
    run = d.run
    dispatching = run.status in DISPATCHING
    queue = run.backlog
    while True:
        if d.sliced and (queue or d.dirty):
            queue.extend(sorted(d.dirty, key=run.graph.position.__getitem__))  # one looked at twice moves once
            d.dirty = set()
            return
        if not queue:
            if not d.dirty:
                return
            queue.extend(sorted(d.dirty, key=run.graph.position.__getitem__))
            d.dirty = set()
        _move(d, run.tasks[queue.popleft()], dispatching)


def _move(d: Decider, task: TaskRun, dispatching: bool) -> None:
    """Start, run or finish one task, as far as its dependencies and subtasks allow now."""
    if task.status in TERMINAL_TASK:
        return
    starts = dispatching and not task.paused
    ready = task.status == TaskStatus.READY
    if task.status == TaskStatus.PENDING and d.allows(task.task_id, gates_start=True):
        ready = True
        if not starts or _needs_approval(d, task):
            d.set_task(task, TaskStatus.READY)  # it waits; one that starts now goes straight to RUNNING
    if ready and starts:
        _start_task(d, task)
    if task.status == TaskStatus.RUNNING:
        _run_task(d, task, starts)


def _needs_approval(d: Decider, task: TaskRun) -> bool:
    """Whether a person must approve the task before it starts (and nobody has yet)."""
    spec = d.run.graph.tasks[task.task_id]
    gated = spec.approval_required or any(s.action in d.config.approval_actions for s in spec.subtasks)
    return gated and not task.approved


def _start_task(d: Decider, task: TaskRun) -> None:
    if _needs_approval(d, task):
        spec = d.run.graph.tasks[task.task_id]
        reason = "approval required" if spec.approval_required else "high-impact action needs approval"
        d.set_task(task, TaskStatus.AWAITING_APPROVAL, reason)
        d.open_inbox(task, "approval", reason)
        return
    if d.run.status == ExecutionStatus.QUEUED:
        d.set_execution(ExecutionStatus.RUNNING)
    d.set_task(task, TaskStatus.RUNNING)


def _run_task(d: Decider, task: TaskRun, dispatching: bool) -> None:
    run = d.run
    done = True
    for sub_spec in run.graph.tasks[task.task_id].subtasks:
        sub = run.subtasks[sub_spec.subtask_id]
        if sub.status not in DONE:
            done = False
        if not dispatching or sub.status not in (TaskStatus.PENDING, TaskStatus.RETRY_WAIT):
            continue
        if not all(run.subtasks[p].status in DONE for p in run.graph.subtask_preds[sub.subtask_id]):
            continue
        if sub.status == TaskStatus.RETRY_WAIT and sub.not_before and sub.not_before > d.now:
            d.wake_at(sub.not_before)
        elif sub.human:
            d.set_subtask(sub, TaskStatus.AWAITING_HUMAN, reason="a person does this")
            d.open_inbox(sub, "human_task", "a person does this")
        else:
            dispatch(d, sub)
    if done and d.allows(task.task_id, gates_start=False):
        _finish_task(d, task)


def _finish_task(d: Decider, task: TaskRun) -> None:
    """All its subtasks are done: SKIPPED when a person skipped every one, else COMPLETED (naming any skipped)."""
    subs = [d.run.subtasks[s.subtask_id] for s in d.run.graph.tasks[task.task_id].subtasks]
    skipped = [s.subtask_id for s in subs if s.status == TaskStatus.SKIPPED]
    if skipped and len(skipped) == len(subs):
        d.set_task(task, TaskStatus.SKIPPED, "every subtask was skipped")
    else:
        d.set_task(task, TaskStatus.COMPLETED, f"skipped: {', '.join(skipped)}" if skipped else "")


def _settle(d: Decider) -> None:
    """Complete the execution, or move it between RUNNING and BLOCKED; ask to be woken when time matters."""
    run = d.run
    tasks, subtasks = run.task_counts, run.subtask_counts
    if sum(tasks[s] for s in DONE) == len(run.tasks):
        skipped = subtasks[TaskStatus.SKIPPED]
        d.set_execution(ExecutionStatus.COMPLETED, f"{skipped} subtask(s) skipped by a person" if skipped else "")
        return
    moving = any(subtasks[s] for s in (TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.RETRY_WAIT))
    waiting = sum(subtasks[s] for s in WAITING) + tasks[TaskStatus.AWAITING_APPROVAL]
    if run.status == ExecutionStatus.RUNNING and waiting and not moving:
        d.set_execution(ExecutionStatus.BLOCKED, f"waiting on {waiting} item(s) outside the agents")
    elif run.status == ExecutionStatus.BLOCKED and moving:
        d.set_execution(ExecutionStatus.RUNNING)
    if d.wake is not None:
        d.effects.append(WakeAt(run.execution_id, d.wake))
