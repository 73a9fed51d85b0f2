"""Pydantic models of every message on the bus: the wire contract.

Events are immutable facts on ``ax.evt.<execution_id>.<type>``: a discriminated union on ``type``.
Agents publish reports (``subtask_started``, ``subtask_progress``, ``subtask_result``); the coordinator,
the only writer of state, publishes decisions (``execution_created``, ``execution_state``,
``task_state``, ``subtask_state``, ``command_rejected``). A task's move decided with one of its subtask's rides in
that ``subtask_state`` (its ``task_state``): one message instead of two; :func:`facts` gives both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from planexe_ax.bus import event_ids
from planexe_ax.bus.plan import Plan
from planexe_ax.bus.subjects import ID_RULE, SAFE_ID, check_token


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random id that is also a safe subject token."""
    return uuid4().hex


class ExecutionStatus(StrEnum):
    """States of an execution; COMPLETED, FAILED and CANCELLED are final."""

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
    SKIPPED = "SKIPPED"
    """A person skipped it: it counts as done for what depends on it, but its work was not done."""


TERMINAL_EXECUTION = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
TERMINAL_TASK = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED})


class WireModel(BaseModel):
    """Base of every bus message: frozen, and tolerant of fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")


Id = Annotated[
    str,
    GetPydanticSchema(
        lambda _type, _handler: core_schema.custom_error_schema(
            core_schema.str_schema(pattern=SAFE_ID.pattern),
            custom_error_type="subject_token",
            custom_error_message=ID_RULE,
        )
    ),
]
"""An id that becomes a subject token (or names what a subject names), checked where a message is built or decoded.

A message naming ``a.b.c``, ``x.>`` or 300 characters is refused where it enters, not when a later publish
cannot build its subject. The pattern is :data:`~planexe_ax.bus.subjects.SAFE_ID`'s, matched by pydantic-core
(no Python call per id: every event has up to four); the error names the field and says :data:`ID_RULE`.
"""


class PlanRef(WireModel):
    """A plan kept in the plan object store (too large to travel in a message), named by its SHA-256."""

    plan_id: Id
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the plan's JSON, hex; its object's name.")
    size: int = Field(ge=0, description="Bytes of the plan's JSON.")


def _plan_or_ref(message: Any) -> Any:
    if message.plan is None and message.plan_ref is None:
        raise ValueError("a plan or a plan_ref is required")
    return message


PLAN_DOC = "The plan; None when it travels by ``plan_ref`` (read it with ``planexe_ax.bus.plan_store``)."
PLAN_REF_DOC = "Where the plan is kept when it is too large for a message (``PLANEXE_PLAN_INLINE_BYTES``)."


# ---------------------------------------------------------------------------------------------- events
class EventBase(WireModel):
    """Fields every event carries; ``event_id`` is the de-duplication id on the bus."""

    event_id: str = Field(default_factory=new_id)
    version: int = 1
    execution_id: Id
    ts: AwareDatetime = Field(default_factory=utcnow)
    task_id: Id | None = None
    subtask_id: Id | None = None
    attempt: int | None = None
    agent_id: Id | None = None
    causation_id: str | None = Field(default=None, description="event_id or command_id that led to this event")
    prev_hash: str | None = Field(
        default=None,
        description="On the coordinator's events: the head of the execution's hash chain (bus/audit_chain.py) over "
        "its events in stream order as the coordinator had read them when it published this one",
    )


class ExecutionCreated(EventBase):
    """The coordinator accepted a plan: the execution exists with this plan and these pins."""

    type: Literal["execution_created"] = "execution_created"
    version: int = 2
    plan: Plan | None = Field(default=None, description=PLAN_DOC)
    plan_ref: PlanRef | None = Field(default=None, description=PLAN_REF_DOC)
    pins: dict[str, Id] = Field(default_factory=dict, description="task_id or action -> agent_id")

    _check_plan = model_validator(mode="after")(_plan_or_ref)


class ExecutionState(EventBase):
    """The execution moved to ``status``, for ``reason``."""

    type: Literal["execution_state"] = "execution_state"
    status: ExecutionStatus
    reason: str = ""


class TaskState(EventBase):
    """A task moved to ``status``, for ``reason``."""

    type: Literal["task_state"] = "task_state"
    status: TaskStatus
    reason: str = ""


class SubtaskState(EventBase):
    """A subtask (one attempt of it) moved to ``status``; the fields that status needs are set."""

    type: Literal["subtask_state"] = "subtask_state"
    status: TaskStatus
    action: str = ""
    reason: str = ""
    output: dict[str, Any] | None = None
    not_before: AwareDatetime | None = Field(default=None, description="RETRY_WAIT: the next attempt is due then")
    deadline: AwareDatetime | None = Field(default=None, description="BLOCKED: escalate to a person after this")
    confidence: float | None = Field(default=None, ge=0, le=1)
    started_at: AwareDatetime | None = Field(
        default=None,
        description="An attempt that ends without having been RUNNING (its result said when the agent began): then",
    )
    task_state: TaskState | None = Field(
        default=None,
        description="The move of this subtask's task decided with this one (a task starts as its first subtask is "
        "dispatched, and ends with its last one): a task_state event of its own, with its own event_id, stored in "
        "this message and taking effect with it",
    )


class TaskPaused(EventBase):
    """An operator paused (``paused``) or resumed one task: nothing of it is dispatched while paused."""

    type: Literal["task_paused"] = "task_paused"
    paused: bool
    by: str = ""


class TaskReassigned(EventBase):
    """From now on the task's work goes to ``agent_id`` only (``ax.direct.<agent_id>``)."""

    type: Literal["task_reassigned"] = "task_reassigned"
    by: str = ""


InboxKind = Literal["human_task", "approval", "review", "escalation", "acknowledge"]
InboxAction = Literal["approve", "reject", "complete", "accept", "edit", "retry", "skip", "fail", "acknowledge"]


class InboxOpened(EventBase):
    """Work for a person: do a task, approve one, review a low-confidence result, or take an escalation.

    An ``acknowledge`` item only tells a person something (a webhook disabled): it belongs to the execution (no
    task or subtask), may open after the execution ended, and its one answer, ``acknowledge``, changes nothing else.
    """

    type: Literal["inbox_opened"] = "inbox_opened"
    item_id: str
    kind: InboxKind
    title: str = ""
    reason: str = ""
    action: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] | None = Field(default=None, description="review: the result awaiting review")
    confidence: float | None = None
    actions: list[InboxAction] = Field(default_factory=list, description="what a person may answer")


class InboxClosed(EventBase):
    """How an inbox item was answered (or that it no longer needs an answer), by whom and when (``ts``)."""

    type: Literal["inbox_closed"] = "inbox_closed"
    item_id: str
    resolution: str
    by: str = ""
    comment: str = ""
    output: dict[str, Any] | None = None
    params: dict[str, Any] | None = Field(default=None, description="retried: the params later attempts use")


class AuditCheckpoint(EventBase):
    """The coordinator signs the head of the execution's hash chain: ``count`` events up to ``up_to_seq``.

    ``signature`` is the Ed25519 signature (base64url) of :func:`~planexe_ax.bus.audit_chain.checkpoint_payload`
    by the key whose public nkey is ``key_id``; ``prev_checkpoint`` is the event id of the execution's previous
    checkpoint ("" for the first), so a removed checkpoint shows.
    """

    type: Literal["audit_checkpoint"] = "audit_checkpoint"
    up_to_seq: int = Field(ge=0)
    count: int = Field(ge=0)
    head_hash: str
    prev_checkpoint: str = ""
    signature: str = ""
    key_id: str = ""


class CommandRejected(EventBase):
    """The coordinator refused a command; ``reason`` says why."""

    type: Literal["command_rejected"] = "command_rejected"
    command: str
    reason: str


class SubtaskStarted(EventBase):
    """An agent began working on its leased attempt."""

    type: Literal["subtask_started"] = "subtask_started"


class SubtaskProgress(EventBase):
    """How far along an agent is with its attempt, as a percentage and a message."""

    type: Literal["subtask_progress"] = "subtask_progress"
    percent: float = Field(ge=0, le=100)
    message: str = ""


RejectReason = Literal["missing_tool", "missing_data", "over_budget", "not_allowed", "other"]


class SubtaskRejected(EventBase):
    """The agent will not do this offer; the coordinator re-routes it to another capable agent or a person."""

    type: Literal["subtask_rejected"] = "subtask_rejected"
    reason_code: RejectReason
    reason: str = ""


class SubtaskBlocked(EventBase):
    """The agent waits on something outside (an email reply); past ``max_wait_s`` a person is asked."""

    type: Literal["subtask_blocked"] = "subtask_blocked"
    reason: str
    max_wait_s: float | None = Field(default=None, gt=0)


class SubtaskResult(EventBase):
    """How an attempt ended: ``output`` when ``ok``, else ``error`` (retried when ``retryable``)."""

    type: Literal["subtask_result"] = "subtask_result"
    ok: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    retryable: bool = True
    confidence: float | None = Field(default=None, ge=0, le=1)
    started_at: AwareDatetime | None = Field(
        default=None,
        description="When the agent began, on an attempt it sent no subtask_started for (it ended quickly)",
    )


Event = Annotated[
    ExecutionCreated
    | ExecutionState
    | TaskState
    | SubtaskState
    | CommandRejected
    | TaskPaused
    | TaskReassigned
    | InboxOpened
    | InboxClosed
    | SubtaskStarted
    | SubtaskProgress
    | SubtaskRejected
    | SubtaskBlocked
    | SubtaskResult
    | AuditCheckpoint,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def facts(event: Event) -> tuple[Event, ...]:
    """The events one stored event stands for: itself, then the ``task_state`` a ``subtask_state`` carries."""
    carried = event.task_state if isinstance(event, SubtaskState) else None
    return (event,) if carried is None else (event, carried)


AGENT_REPORTS = frozenset(
    {"subtask_started", "subtask_progress", "subtask_rejected", "subtask_blocked", "subtask_result"}
)


# ---------------------------------------------------------------------------------------------- offers
class TaskOffer(WireModel):
    """Work for one attempt of one subtask, on ``ax.task.<action>`` or ``ax.direct.<agent_id>``."""

    execution_id: Id
    plan_id: str
    task_id: Id
    subtask_id: Id
    attempt: int = Field(ge=1)
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    task_title: str = ""
    description: str = ""
    issued_at: AwareDatetime = Field(default_factory=utcnow)

    _check_action = field_validator("action")(lambda value: check_token(value, "action"))

    @property
    def msg_id(self) -> str:
        """De-duplication id: one offer per attempt."""
        return event_ids.offer(self.execution_id, self.subtask_id, self.attempt)


# ---------------------------------------------------------------------------------------------- commands
class CommandBase(WireModel):
    """Fields every control command carries; ``command_id`` is the de-duplication id."""

    command_id: str = Field(default_factory=new_id)
    version: int = 1
    execution_id: Id
    ts: AwareDatetime = Field(default_factory=utcnow)
    issued_by: str = "cli"
    reason: str = ""


class StartExecution(CommandBase):
    """Run ``plan`` as a new execution, with tasks or actions pinned to agents by ``pins``."""

    type: Literal["start"] = "start"
    version: int = 2
    plan: Plan | None = Field(default=None, description=PLAN_DOC)
    plan_ref: PlanRef | None = Field(default=None, description=PLAN_REF_DOC)
    pins: dict[str, Id] = Field(default_factory=dict)

    _check_plan = model_validator(mode="after")(_plan_or_ref)


class PauseExecution(CommandBase):
    """Stop dispatching new work; work in progress finishes."""

    type: Literal["pause"] = "pause"


class ResumeExecution(CommandBase):
    """Dispatch work again after a pause."""

    type: Literal["resume"] = "resume"


class CancelExecution(CommandBase):
    """Stop the execution: open work is cancelled and nothing more is dispatched."""

    type: Literal["cancel"] = "cancel"


class PauseTask(CommandBase):
    """Stop dispatching one task's work until it is resumed."""

    type: Literal["pause_task"] = "pause_task"
    task_id: Id


class ResumeTask(CommandBase):
    """Dispatch one paused task's work again."""

    type: Literal["resume_task"] = "resume_task"
    task_id: Id


class CancelTask(CommandBase):
    """Skip one task: its open work is cancelled and its dependents go on as if it had finished."""

    type: Literal["cancel_task"] = "cancel_task"
    task_id: Id


class Reassign(CommandBase):
    """Move a task's open and future work to one named agent."""

    type: Literal["reassign"] = "reassign"
    task_id: Id
    agent_id: Id


class ResolveInbox(CommandBase):
    """A person's answer to an inbox item.

    approve/reject an approval; complete a human task (with ``output``); accept, edit (with ``output``)
    or reject a result under review. An escalation (work that failed or that no agent could take) can be
    retried (with ``params`` replacing the subtask's), completed by hand (with ``output``), skipped (it
    counts as done for its dependents) or failed (its task and the execution fail; ``reject`` does the same).
    """

    type: Literal["resolve"] = "resolve"
    item_id: str
    action: InboxAction
    output: dict[str, Any] | None = None
    comment: str = ""
    params: dict[str, Any] | None = Field(default=None, description="retry: new params for the subtask")


class WebhookDisabled(CommandBase):
    """The webhook delivery service gave up on ``webhook_id`` while delivering ``event_id`` of this execution.

    The coordinator opens an ``acknowledge`` inbox item on the execution, ended or not, so a person is told.
    ``command_id`` is derived from the webhook, the event and the attempt (``event_ids.webhook_disabled``): the
    same give-up sent again (a restart) opens no second item.
    """

    type: Literal["webhook_disabled"] = "webhook_disabled"
    issued_by: str = "webhooks"
    webhook_id: str
    url: str = Field(description="the webhook's URL as people may see it: scheme, host, port (a path may hold a token)")
    event_id: str = Field(description="the event whose delivery was given up on")


Command = Annotated[
    StartExecution
    | PauseExecution
    | ResumeExecution
    | CancelExecution
    | PauseTask
    | ResumeTask
    | CancelTask
    | Reassign
    | ResolveInbox
    | WebhookDisabled,
    Field(discriminator="type"),
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


# ---------------------------------------------------------------------------------------------- agents
class CapabilityCard(WireModel):
    """One action an agent performs, with the JSON schema of its params."""

    action: str
    description: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict)

    _check_action = field_validator("action")(lambda value: check_token(value, "action"))


class AgentCard(WireModel):
    """What an agent offers, kept in KV ``ax-agents`` under its id and refreshed by its heartbeat."""

    agent_id: Id
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
    size: int | None = Field(default=None, description="Bytes of the original; data_b64 keeps at most 64 KiB of it")
    headers: dict[str, str] = Field(default_factory=dict)
    stream_seq: int | None = None
    ts: AwareDatetime = Field(default_factory=utcnow)
