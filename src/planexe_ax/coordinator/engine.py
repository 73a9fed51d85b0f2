"""Every execution the coordinator knows, and how events and commands reach them. Pure, like state.py."""

from __future__ import annotations

from datetime import datetime

from planexe_ax.bus.messages import (
    TERMINAL_EXECUTION,
    CancelExecution,
    Command,
    CommandRejected,
    Event,
    ExecutionCreated,
    ExecutionStatus,
    PauseExecution,
    ResumeExecution,
    StartExecution,
)
from planexe_ax.coordinator.state import (
    CoreConfig,
    Effect,
    Emit,
    ExecutionRun,
    apply,
    decide,
    end_execution,
    set_status,
)
from planexe_ax.coordinator.validation import validate_plan
from planexe_ax.errors import PlanValidationError

PAUSABLE = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.BLOCKED})


class Engine:
    """Routes events and commands to executions and returns the effects to carry out.

    Args:
        config: Retry and lag policy.
    """

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self.runs: dict[str, ExecutionRun] = {}

    def fold(self, event: Event) -> None:
        """Apply an event without deciding anything (rebuilding from the stream)."""
        if isinstance(event, ExecutionCreated):
            if event.execution_id not in self.runs:
                self.runs[event.execution_id] = ExecutionRun.create(event.execution_id, event.plan, event.pins)
            return
        run = self.runs.get(event.execution_id)
        if run is not None:
            apply(run, event)

    def on_event(self, event: Event, now: datetime) -> list[Effect]:
        """Apply ``event`` and decide what follows for its execution."""
        self.fold(event)
        run = self.runs.get(event.execution_id)
        return decide(run, now, self.config) if run is not None else []

    def tick(self, execution_id: str, now: datetime) -> list[Effect]:
        """Re-decide an execution (a lag ran out, or the coordinator just rebuilt its state)."""
        run = self.runs.get(execution_id)
        return decide(run, now, self.config) if run is not None else []

    def tick_all(self, now: datetime) -> list[Effect]:
        """Re-decide every open execution."""
        effects: list[Effect] = []
        for execution_id, run in self.runs.items():
            if run.status not in TERMINAL_EXECUTION:
                effects += self.tick(execution_id, now)
        return effects

    def on_command(self, command: Command, now: datetime) -> list[Effect]:
        """Carry out a control command; an impossible one yields a ``command_rejected`` event."""
        if isinstance(command, StartExecution):
            return self._start(command, now)
        run = self.runs.get(command.execution_id)
        if run is None:
            return [self._reject(command, now, f"unknown execution {command.execution_id}")]
        if isinstance(command, PauseExecution):
            if run.status not in PAUSABLE:
                return [self._reject(command, now, f"cannot pause a {run.status.value} execution")]
            return set_status(run, ExecutionStatus.PAUSED, command.reason, now)
        if isinstance(command, ResumeExecution):
            if run.status != ExecutionStatus.PAUSED:
                return [self._reject(command, now, f"cannot resume a {run.status.value} execution")]
            return set_status(run, ExecutionStatus.RUNNING, command.reason, now) + decide(run, now, self.config)
        if isinstance(command, CancelExecution):
            if run.status in TERMINAL_EXECUTION:
                return [self._reject(command, now, f"cannot cancel a {run.status.value} execution")]
            return end_execution(run, ExecutionStatus.CANCELLED, command.reason or "cancelled", now)
        raise AssertionError(f"unhandled command {command!r}")  # the Command union is exhaustive

    def _start(self, command: StartExecution, now: datetime) -> list[Effect]:
        if command.execution_id in self.runs:
            return []  # the same start delivered again
        try:
            validate_plan(command.plan)
        except PlanValidationError as exc:
            return [self._reject(command, now, str(exc))]
        created = ExecutionCreated(
            event_id=f"{command.execution_id}:created",
            execution_id=command.execution_id,
            ts=now,
            plan=command.plan,
            pins=command.pins,
            causation_id=command.command_id,
        )
        self.fold(created)
        return [Emit(created), *decide(self.runs[command.execution_id], now, self.config)]

    @staticmethod
    def _reject(command: Command, now: datetime, reason: str) -> Emit:
        return Emit(
            CommandRejected(
                event_id=f"{command.execution_id}:rejected:{command.command_id}",
                execution_id=command.execution_id,
                ts=now,
                command=command.type,
                reason=reason,
                causation_id=command.command_id,
            )
        )
