"""Every execution the coordinator knows, and how events, commands and agent changes reach them. Pure."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from planexe_ax.bus import event_ids
from planexe_ax.bus.messages import (
    TERMINAL_EXECUTION,
    TERMINAL_TASK,
    CancelExecution,
    CancelTask,
    Command,
    CommandRejected,
    Event,
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    InboxClosed,
    InboxOpened,
    PauseExecution,
    PauseTask,
    Reassign,
    ResolveInbox,
    ResumeExecution,
    ResumeTask,
    StartExecution,
    SubtaskState,
    TaskPaused,
    TaskReassigned,
    TaskState,
    TaskStatus,
    WebhookDisabled,
)
from planexe_ax.bus.subjects import check_id
from planexe_ax.coordinator.decide import decide
from planexe_ax.coordinator.decider import NOTICES, Decider, dispatch, end, offer_of
from planexe_ax.coordinator.state import Agents, CoreConfig, Effect, Emit, ExecutionRun, Offer, apply
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.validation import validate_plan

DecisionEvents = ExecutionState | TaskState | SubtaskState | TaskPaused | TaskReassigned | InboxOpened | InboxClosed
"""Decisions read from the stream that were not ours (another coordinator's, or from before a restart)."""
PAUSABLE = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.BLOCKED})
REOPENABLE = frozenset(
    {TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.RETRY_WAIT, TaskStatus.BLOCKED, TaskStatus.AWAITING_HUMAN}
)


class Rejected(Exception):
    """A command that cannot be carried out; its message is the reason given back."""


class CoordinatorCore:
    """Routes events, commands and agent changes to executions and returns the effects to carry out.

    Args:
        config: Retry, timeout, lag and approval policy.
    """

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self.runs: dict[str, ExecutionRun] = {}
        self.agents: Agents | None = None
        self._full: set[str] = set()
        """Executions folded in this batch by events that call for a full look (a start, a foreign decision)."""

    def fold(self, event: Event) -> bool:
        """Apply an event without deciding anything (rebuilding from the stream); False when it changed nothing.

        Raises:
            PlanValidationError: an ``execution_created`` whose plan does not pass the checks a start does.
        """
        if isinstance(event, ExecutionCreated):
            if event.execution_id in self.runs:
                return False
            if event.plan is None:
                raise PlanValidationError(f"execution {event.execution_id}: its plan was not read from the store")
            validate_plan(event.plan)
            self.runs[event.execution_id] = ExecutionRun.create(event.execution_id, event.plan, event.pins)
            return True
        run = self.runs.get(event.execution_id)
        return run is not None and apply(run, event)

    def knows(self, event: Event) -> bool:
        """Whether ``event`` names an execution (and task and subtask) this engine has."""
        if isinstance(event, ExecutionCreated):
            return True
        run = self.runs.get(event.execution_id)
        if run is None:
            return False
        return (event.task_id is None or event.task_id in run.tasks) and (
            event.subtask_id is None or event.subtask_id in run.subtasks
        )

    def on_event(self, event: Event, now: datetime) -> list[Effect]:
        """Apply ``event`` and decide what follows for its execution.

        An event that changes nothing (the coordinator's own decision read back from the stream, a
        duplicate, a zombie report) decides nothing either: time-driven decisions come from ``tick``.
        """
        if not self.fold(event):
            return []
        run = self.runs.get(event.execution_id)
        if run is None:
            return []
        return decide(run, now, self.config, self.agents, full=isinstance(event, ExecutionCreated | DecisionEvents))

    def fold_reported(self, event: Event) -> str | None:
        """Apply one event of a batch; the execution to decide on afterwards (None: nothing changed).

        Raises:
            PlanValidationError: an ``execution_created`` whose plan does not pass the checks a start does.
        """
        if not self.fold(event):
            return None
        if isinstance(event, ExecutionCreated | DecisionEvents):
            self._full.add(event.execution_id)
        return event.execution_id

    def decide_folded(self, execution_id: str, now: datetime) -> list[Effect]:
        """Decide once on an execution after a batch of events folded by ``fold_reported``."""
        full = execution_id in self._full
        self._full.discard(execution_id)
        run = self.runs.get(execution_id)
        return decide(run, now, self.config, self.agents, full=full) if run is not None else []

    def tick(self, execution_id: str, now: datetime) -> list[Effect]:
        """Re-decide an execution (a timer ran out, the agents changed, or the coordinator just rebuilt)."""
        run = self.runs.get(execution_id)
        return decide(run, now, self.config, self.agents) if run is not None else []

    def go_on(self, execution_id: str, now: datetime) -> list[Effect]:
        """Decide on the ready work a round left in the execution's backlog (it asked with a ``GoOn``)."""
        run = self.runs.get(execution_id)
        if run is None or not run.backlog:
            return []
        return decide(run, now, self.config, self.agents, full=False)

    def tick_all(self, now: datetime, only: Collection[str] | None = None) -> list[Effect]:
        """Re-decide every open execution (or those of ``only``)."""
        runs = self.runs.items() if only is None else ((x, self.runs[x]) for x in only if x in self.runs)
        return [e for xid, run in runs if run.status not in TERMINAL_EXECUTION for e in self.tick(xid, now)]

    def forget(self, execution_id: str) -> None:
        """Drop an execution (its partition moved to another coordinator, which rebuilds it)."""
        self.runs.pop(execution_id, None)
        self._full.discard(execution_id)

    def reoffers(self, now: datetime, only: Collection[str] | None = None) -> list[Effect]:
        """The offers of the open executions' DISPATCHED subtasks, as they were first sent.

        Only those dispatched within ``duplicate_window_s``, which the stream's de-duplication still knows:
        sending them again stores only those that never were (a coordinator that stopped between a
        DISPATCHED and its offer). With ``only``, those of these executions.
        """
        since = now - timedelta(seconds=self.config.duplicate_window_s)
        runs = self.runs.values() if only is None else [self.runs[x] for x in only if x in self.runs]
        return [
            Offer(offer_of(run, sub, sub.attempt, sub.dispatched_at), sub.agent_id)
            for run in runs
            if run.status not in TERMINAL_EXECUTION
            for sub in run.subtasks.values()
            if sub.status == TaskStatus.DISPATCHED and sub.dispatched_at is not None and sub.dispatched_at > since
        ]

    def set_agents(self, agents: Agents, now: datetime) -> list[Effect]:
        """The online agents changed: re-route, time out or escalate where that matters."""
        self.agents = dict(agents)
        return self.tick_all(now)

    def on_command(self, command: Command, now: datetime) -> list[Effect]:
        """Carry out a control command; an impossible one yields a ``command_rejected`` event."""
        try:
            if isinstance(command, StartExecution):
                return self._start(command, now)
            run = self.runs.get(command.execution_id)
            if run is None:
                raise Rejected(f"unknown execution {command.execution_id}")
            if isinstance(command, PauseExecution | ResumeExecution | CancelExecution):
                effects = self._control_execution(run, command, now)
            elif isinstance(command, WebhookDisabled) or (
                isinstance(command, ResolveInbox) and _answers_a_notice(run, command)
            ):
                effects = self._notice(run, command, now)  # taken on an ended execution too
            else:
                if run.status in TERMINAL_EXECUTION:
                    raise Rejected(f"the execution is {run.status.value}")
                effects = self._control_task(run, command, now)
            return effects + decide(run, now, self.config, self.agents)
        except Rejected as exc:
            return [self._reject(command, now, str(exc))]

    def _control_execution(
        self, run: ExecutionRun, command: PauseExecution | ResumeExecution | CancelExecution, now: datetime
    ) -> list[Effect]:
        d = Decider(run, now, self.config, self.agents)
        if isinstance(command, PauseExecution):
            if run.status not in PAUSABLE:
                raise Rejected(f"cannot pause a {run.status.value} execution")
            d.set_execution(ExecutionStatus.PAUSED, command.reason, command.command_id)
        elif isinstance(command, ResumeExecution):
            if run.status != ExecutionStatus.PAUSED:
                raise Rejected(f"cannot resume a {run.status.value} execution")
            d.set_execution(ExecutionStatus.RUNNING, command.reason, command.command_id)
        else:
            if run.status in TERMINAL_EXECUTION:
                raise Rejected(f"cannot cancel a {run.status.value} execution")
            end(d, ExecutionStatus.CANCELLED, command.reason or f"cancelled by {command.issued_by}", command.command_id)
        return d.effects

    def _notice(self, run: ExecutionRun, command: WebhookDisabled | ResolveInbox, now: datetime) -> list[Effect]:
        """Open a notice (``acknowledge`` item) or take its answer; neither changes the execution otherwise."""
        from planexe_ax.coordinator.inbox import resolve, webhook_disabled

        d = Decider(run, now, self.config, self.agents)
        return webhook_disabled(d, command) if isinstance(command, WebhookDisabled) else resolve(d, command)

    def _control_task(
        self, run: ExecutionRun, command: PauseTask | ResumeTask | CancelTask | Reassign | ResolveInbox, now: datetime
    ) -> list[Effect]:
        if isinstance(command, ResolveInbox):
            from planexe_ax.coordinator.inbox import resolve

            return resolve(Decider(run, now, self.config, self.agents), command)
        task = run.tasks.get(command.task_id)
        if task is None:
            raise Rejected(f"unknown task {command.task_id}")
        if task.status in TERMINAL_TASK:
            raise Rejected(f"task {command.task_id} is {task.status.value}")
        d = Decider(run, now, self.config, self.agents)
        ids = {"execution_id": run.execution_id, "task_id": task.task_id, "ts": now, "causation_id": command.command_id}
        if isinstance(command, PauseTask | ResumeTask):
            paused = isinstance(command, PauseTask)
            if task.paused == paused:
                raise Rejected(f"task {task.task_id} is already {'paused' if paused else 'running'}")
            d.emit(TaskPaused(event_id=event_ids.task_paused(run.execution_id, command.command_id), paused=paused,
                              by=command.issued_by, **ids))  # fmt: skip
        elif isinstance(command, Reassign):
            reassigned_id = event_ids.task_reassigned(run.execution_id, command.command_id)
            d.emit(TaskReassigned(event_id=reassigned_id, agent_id=command.agent_id, by=command.issued_by,
                                  **ids))  # fmt: skip
            for sub in (s for s in run.subtasks.values() if s.task_id == task.task_id and s.status in REOPENABLE):
                if sub.inbox:
                    d.close_inbox(sub.inbox, "reassigned", by=command.issued_by)
                dispatch(d, sub, command.agent_id, reason=f"reassigned to {command.agent_id} by {command.issued_by}")
        else:
            _cancel_task(d, task.task_id, command)
        return d.effects

    def _start(self, command: StartExecution, now: datetime) -> list[Effect]:
        if command.execution_id in self.runs:
            return []  # the same start delivered again
        if command.plan is None:  # the shell reads a plan sent by reference before the core sees the start
            raise Rejected(f"the plan of start {command.command_id} was not read from the plan object store")
        try:
            validate_plan(command.plan)
            for agent_id in command.pins.values():
                check_id(agent_id, "pinned agent id")  # a pin becomes a subject token: refuse it here, not at publish
        except (PlanValidationError, ValueError) as exc:
            raise Rejected(str(exc)) from exc
        event_id = event_ids.execution_created(command.execution_id)
        created = ExecutionCreated(event_id=event_id, execution_id=command.execution_id, ts=now, plan=command.plan,
                                   plan_ref=command.plan_ref, pins=command.pins,
                                   causation_id=command.command_id)  # fmt: skip
        self.runs[command.execution_id] = ExecutionRun.create(command.execution_id, command.plan, command.pins)
        # A plan that came by reference goes on by reference: the event carries what the start carried.
        wire = created.model_copy(update={"plan": None}) if command.plan_ref else created
        return [Emit(wire), *decide(self.runs[command.execution_id], now, self.config, self.agents)]

    def refuse(self, command: Command, now: datetime, reason: str) -> list[Effect]:
        """A ``command_rejected`` for a command the shell could not hand over (its plan could not be read)."""
        return [self._reject(command, now, reason)]

    @staticmethod
    def _reject(command: Command, now: datetime, reason: str) -> Emit:
        return Emit(CommandRejected(event_id=event_ids.command_rejected(command.execution_id, command.command_id),
                                    execution_id=command.execution_id, ts=now, command=command.type, reason=reason,
                                    causation_id=command.command_id))  # fmt: skip


def _answers_a_notice(run: ExecutionRun, command: ResolveInbox) -> bool:
    """Whether ``command`` answers an open ``acknowledge`` item of ``run`` (allowed after the execution ended)."""
    item = run.inbox.get(command.item_id)
    return item is not None and item.kind in NOTICES


def _cancel_task(d: Decider, task_id: str, command: CancelTask) -> None:
    reason = command.reason or f"task cancelled by {command.issued_by}"
    run = d.run
    for sub in (s for s in run.subtasks.values() if s.task_id == task_id and s.status not in TERMINAL_TASK):
        if sub.inbox:
            d.close_inbox(sub.inbox, "cancelled", by=command.issued_by)
        d.set_subtask(sub, TaskStatus.CANCELLED, reason=reason)
    task = run.tasks[task_id]
    if task.inbox:
        d.close_inbox(task.inbox, "cancelled", by=command.issued_by)
    d.set_task(task, TaskStatus.CANCELLED, reason)


__all__ = ["CoordinatorCore", "Rejected"]
