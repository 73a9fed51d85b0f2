"""Pydantic models of every message on the bus: the wire contract.

Events are immutable facts on ``ax.evt.<execution_id>.<type>``: a discriminated union on ``type``.
Agents publish reports (``subtask_started``, ``subtask_progress``, ``subtask_result``); the coordinator,
the only writer of state, publishes decisions (``execution_created``, ``execution_state``,
``task_state``, ``subtask_state``, ``command_rejected``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from planexe_ax.bus.plan import Plan


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random id that is also a safe subject token."""
    return uuid4().hex


class ExecutionStatus(StrEnum):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    BLOCKED = "BLOCKED"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class TaskStatus(StrEnum):
    """States of tasks and of subtasks."""

    PENDING = "PENDING"
    READY = "READY"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    BLOCKED = "BLOCKED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    AWAITING_HUMAN = "AWAITING_HUMAN"
    RETRY_WAIT = "RETRY_WAIT"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_EXECUTION = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
TERMINAL_TASK = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class WireModel(BaseModel):
    """Base of every bus message: frozen, and tolerant of fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# ---------------------------------------------------------------------------------------------- events
class EventBase(WireModel):
    event_id: str = Field(default_factory=new_id)
    version: int = 1
    execution_id: str
    ts: AwareDatetime = Field(default_factory=utcnow)
    task_id: str | None = None
    subtask_id: str | None = None
    attempt: int | None = None
    agent_id: str | None = None
    causation_id: str | None = Field(default=None, description="event_id or command_id that led to this event")


class ExecutionCreated(EventBase):
    type: Literal["execution_created"] = "execution_created"
    plan: Plan
    pins: dict[str, str] = Field(default_factory=dict, description="task_id or action -> agent_id")


class ExecutionState(EventBase):
    type: Literal["execution_state"] = "execution_state"
    status: ExecutionStatus
    reason: str = ""


class TaskState(EventBase):
    type: Literal["task_state"] = "task_state"
    status: TaskStatus
    reason: str = ""


class SubtaskState(EventBase):
    type: Literal["subtask_state"] = "subtask_state"
    status: TaskStatus
    action: str = ""
    reason: str = ""
    output: dict[str, Any] | None = None


class CommandRejected(EventBase):
    type: Literal["command_rejected"] = "command_rejected"
    command: str
    reason: str


class SubtaskStarted(EventBase):
    type: Literal["subtask_started"] = "subtask_started"


class SubtaskProgress(EventBase):
    type: Literal["subtask_progress"] = "subtask_progress"
    percent: float = Field(ge=0, le=100)
    message: str = ""


class SubtaskResult(EventBase):
    type: Literal["subtask_result"] = "subtask_result"
    ok: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    retryable: bool = True
    confidence: float | None = Field(default=None, ge=0, le=1)


Event = Annotated[
    ExecutionCreated
    | ExecutionState
    | TaskState
    | SubtaskState
    | CommandRejected
    | SubtaskStarted
    | SubtaskProgress
    | SubtaskResult,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
AGENT_REPORTS = frozenset({"subtask_started", "subtask_progress", "subtask_result"})


# ---------------------------------------------------------------------------------------------- offers
class TaskOffer(WireModel):
    """Work for one attempt of one subtask, on ``ax.task.<action>`` or ``ax.direct.<agent_id>``."""

    execution_id: str
    plan_id: str
    task_id: str
    subtask_id: str
    attempt: int = Field(ge=1)
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    task_title: str = ""
    description: str = ""
    issued_at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def msg_id(self) -> str:
        """De-duplication id: one offer per attempt."""
        return f"{self.execution_id}:{self.subtask_id}:{self.attempt}"


# ---------------------------------------------------------------------------------------------- commands
class CommandBase(WireModel):
    command_id: str = Field(default_factory=new_id)
    version: int = 1
    execution_id: str
    ts: AwareDatetime = Field(default_factory=utcnow)
    issued_by: str = "cli"
    reason: str = ""


class StartExecution(CommandBase):
    type: Literal["start"] = "start"
    plan: Plan
    pins: dict[str, str] = Field(default_factory=dict)


class PauseExecution(CommandBase):
    type: Literal["pause"] = "pause"


class ResumeExecution(CommandBase):
    type: Literal["resume"] = "resume"


class CancelExecution(CommandBase):
    type: Literal["cancel"] = "cancel"


Command = Annotated[StartExecution | PauseExecution | ResumeExecution | CancelExecution, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


# ---------------------------------------------------------------------------------------------- agents
class CapabilityCard(WireModel):
    action: str
    description: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict)


class AgentCard(WireModel):
    """What an agent offers, kept in KV ``ax-agents`` under its id and refreshed by its heartbeat."""

    agent_id: str
    name: str
    role: str = ""
    capabilities: list[CapabilityCard]
    started_at: AwareDatetime
    heartbeat_at: AwareDatetime
    current: list[str] = Field(default_factory=list, description="subtask ids in progress")
    host: str = ""
    pid: int = 0


# ---------------------------------------------------------------------------------------------- DLQ
class DeadLetter(WireModel):
    """A message a consumer could not take, kept with the reason and its original bytes (base64)."""

    source: str
    subject: str
    reason: str
    data_b64: str
    headers: dict[str, str] = Field(default_factory=dict)
    stream_seq: int | None = None
    ts: AwareDatetime = Field(default_factory=utcnow)
