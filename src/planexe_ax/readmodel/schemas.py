"""What the read model answers: frozen pydantic models, the JSON of the REST API, the WebSocket and the CLI.

Times are ISO 8601 UTC text ending in ``Z`` (``2026-11-21T04:32:24.342740Z``) whether dumped to Python or JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, computed_field

from planexe_ax.bus.tracing import trace_id_of


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC text of ``value`` (``...Z``), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[
    datetime, PlainSerializer(_iso_text, return_type=str), WithJsonSchema({"type": "string", "format": "date-time"})
]
"""A timezone-aware datetime, written as ISO 8601 UTC text ending in ``Z``."""


class View(BaseModel):
    """Base of every answer of the read model: immutable."""

    model_config = ConfigDict(frozen=True)


# -- executions --------------------------------------------------------------------------------------------
class ExecutionSummary(View):
    """The list entry of an execution."""

    execution_id: str
    plan_id: str
    title: str
    status: str
    reason: str
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    updated_at: Timestamp


class ExecutionListItem(ExecutionSummary):
    """An execution in a list, with its progress."""

    progress: float


class ExecutionPage(View):
    """A page of executions, newest first."""

    items: list[ExecutionListItem]
    next_cursor: str | None


class ExecutionCounts(View):
    """Tasks and subtasks by status, their totals and the open inbox items of an execution."""

    tasks: dict[str, int]
    subtasks: dict[str, int]
    tasks_total: int
    subtasks_total: int
    inbox_open: int


class CurrentTask(View):
    """A task dispatched or running, with the agents working on it."""

    task_id: str
    title: str
    status: str
    agent_ids: list[str]
    started_at: Timestamp | None


class Blocker(View):
    """A subtask (or a task waiting for approval) that holds the execution up, and why."""

    task_id: str
    subtask_id: str | None
    title: str
    status: str
    reason: str
    agent_id: str | None
    since: Timestamp | None
    deadline: Timestamp | None
    not_before: Timestamp | None


class ExecutionDetail(ExecutionSummary):
    """Status, progress, counts, current tasks and blockers of one execution."""

    goal: str
    progress: float
    counts: ExecutionCounts
    current_tasks: list[CurrentTask]
    blockers: list[Blocker]
    trace_url: str | None = Field(default=None, description="The trace in the trace viewer (PLANEXE_TRACE_URL)")

    @computed_field(description="The execution's trace id (OpenTelemetry, 32 hex digits)")  # type: ignore[prop-decorator]
    @property
    def trace_id(self) -> str:
        """The execution's trace id: every span of the execution is in this trace."""
        return trace_id_of(self.execution_id)


# -- the task tree -----------------------------------------------------------------------------------------
class PlannedTimes(View):
    """A task's planned start and finish, in working days from the project start."""

    start_days: float
    finish_days: float


class TreeSubtask(View):
    """A subtask of the plan with its live state."""

    subtask_id: str
    action: str
    description: str
    human_required: bool
    status: str
    attempt: int
    agent_id: str | None
    progress: float
    output: dict[str, Any] | None
    confidence: float | None
    error: str | None
    reason: str
    started_at: Timestamp | None
    finished_at: Timestamp | None
    updated_at: Timestamp | None


class TreeTask(View):
    """A task of the plan with its live state, planned times and subtasks."""

    task_id: str
    title: str
    description: str
    assignee_role: str | None
    prerequisites: list[str]
    human_required: bool
    approval_required: bool
    estimated_hours: float | None
    planned: PlannedTimes | None
    status: str
    attempts: int
    reason: str
    started_at: Timestamp | None
    finished_at: Timestamp | None
    subtasks: list[TreeSubtask]


class TreePhase(View):
    """A phase of the plan and its tasks."""

    phase_id: str
    name: str
    description: str
    tasks: list[TreeTask]


class PlanOverview(View):
    """What the plan says about itself: goal, risks, dependencies, start."""

    plan_id: str
    title: str
    goal: str
    risks: list[dict[str, Any]]
    dependencies: list[dict[str, Any]]
    start_time: str | None


class ExecutionTree(View):
    """The plan overview and phases → tasks → subtasks with live states."""

    plan: PlanOverview
    phases: list[TreePhase]


class Snapshot(View):
    """What a WebSocket client starts from: the execution, its tree and the last event sequence in them."""

    last_seq: int
    execution: ExecutionDetail
    tree: ExecutionTree


# -- events ------------------------------------------------------------------------------------------------
class EventItem(View):
    """One event: its stream sequence, the indexed fields and the whole event (``data``)."""

    seq: int
    event_id: str | None
    type: str | None
    task_id: str | None
    subtask_id: str | None
    agent_id: str | None
    attempt: int | None
    ts: str | None
    data: dict[str, Any]


class EventPage(View):
    """A page of an execution's events, newest first."""

    items: list[EventItem]
    next_cursor: str | None


# -- the report of the command line ------------------------------------------------------------------------
class ReportSubtask(View):
    """A subtask in :class:`ExecutionReport`."""

    subtask_id: str
    action: str
    status: str
    agent_id: str | None
    output: dict[str, Any] | None
    attempts: int = Field(description="Attempts started so far (0: never started).")
    error: str | None = Field(
        description="Why it failed, waits to be retried, waits on a person, was skipped or cancelled (its last "
        "reason); None for work that is going or went well."
    )


class ReportTask(View):
    """A task in :class:`ExecutionReport`."""

    task_id: str
    title: str
    status: str
    started_at: Timestamp | None
    finished_at: Timestamp | None
    attempts: int
    subtasks: list[ReportSubtask]


class ExecutionReport(View):
    """One execution with its tasks and subtasks, in plan order."""

    execution_id: str
    plan_id: str
    status: str
    reason: str
    started_at: Timestamp | None
    finished_at: Timestamp | None
    tasks: list[ReportTask]

    @computed_field(description="The execution's trace id (OpenTelemetry, 32 hex digits)")  # type: ignore[prop-decorator]
    @property
    def trace_id(self) -> str:
        """The execution's trace id: every span of the execution is in this trace."""
        return trace_id_of(self.execution_id)


# -- the plan catalog --------------------------------------------------------------------------------------
class PlanSummary(View):
    """The catalog entry of a plan, with the number of phases, tasks, subtasks and risks."""

    plan_id: str
    title: str
    goal: str
    created_at: Timestamp
    phases: int
    tasks: int
    subtasks: int
    risks: int


class PlanPage(View):
    """A page of the catalog, newest first."""

    items: list[PlanSummary]
    next_cursor: str | None


class PlanDetail(PlanSummary):
    """A catalog entry with the whole plan document."""

    plan: dict[str, Any]


class UploadedPlan(PlanDetail):
    """A plan stored in the catalog, with the warnings of its checks (actions no agent offers, ...)."""

    warnings: list[str]


class ImportedPlan(PlanDetail):
    """A plan imported from a PlanExe run, with what the import did."""

    import_report: dict[str, Any]


class PlanTaskEntry(View):
    """A task of a plan document (every field of it) with its phase."""

    model_config = ConfigDict(frozen=True, extra="allow")

    phase_id: str
    phase_name: str
    task_id: str
    title: str


class PlanTasks(View):
    """Every task of a plan, in plan order."""

    plan_id: str
    items: list[PlanTaskEntry]


# -- agents ------------------------------------------------------------------------------------------------
class Capability(View):
    """One action an agent offers."""

    model_config = ConfigDict(frozen=True, extra="allow")

    action: str
    description: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict)


class AgentView(View):
    """An agent with its capabilities, the subtasks it works on and its liveness."""

    agent_id: str
    name: str
    role: str
    status: str
    online: bool
    capabilities: list[Capability]
    current: list[str]
    started_at: Timestamp
    last_heartbeat: Timestamp


class AgentList(View):
    """Every agent, online ones first."""

    items: list[AgentView]


class AgentCapabilities(View):
    """What one agent offers."""

    agent_id: str
    online: bool
    capabilities: list[Capability]


class SubtaskAttempt(View):
    """The status and attempt the read model shows for a subtask."""

    status: str
    attempt: int


class Statuses(View):
    """The statuses the read model shows now for an execution and one of its subtasks (None: unknown)."""

    execution_status: str | None
    subtask_status: str | None


# -- the inbox ---------------------------------------------------------------------------------------------
class InboxEntry(View):
    """Work for a person (a human task, an approval, a review or an escalation) and how it was answered."""

    item_id: str
    execution_id: str
    task_id: str | None
    subtask_id: str | None
    attempt: int | None
    kind: str
    title: str
    reason: str
    action: str
    params: dict[str, Any]
    output: dict[str, Any] | None
    confidence: float | None
    actions: list[str]
    status: str
    resolution: str | None
    resolved_by: str | None
    comment: str | None
    resolution_output: dict[str, Any] | None
    resolution_params: dict[str, Any] | None = None
    """retried: the params the person gave (None: the subtask kept its params)."""
    opened_at: Timestamp
    closed_at: Timestamp | None


class InboxList(View):
    """Inbox items, oldest first."""

    items: list[InboxEntry]


class ExecutionAt(ExecutionDetail):
    """The execution as it was right after one event (``GET /api/executions/{id}?at_seq=N``)."""

    at_seq: int
    """The stream sequence of the last event replayed (the execution's last event at or before N)."""
    events: int
    """How many of the execution's events were replayed."""
    tree: ExecutionTree
    inbox: list[InboxEntry]
    """Every inbox item opened by then, with its state then."""


# -- operations --------------------------------------------------------------------------------------------
class ReadFigures(View):
    """Counts for /metrics: executions, tasks, subtasks and agents by status, attempts, the projector checkpoint."""

    executions: dict[str, int]
    tasks: dict[str, int]
    subtasks: dict[str, int]
    subtask_attempts_dispatched: int
    agents: dict[str, int]
    projector_checkpoint: int


# -- webhooks ------------------------------------------------------------------------------------------------
class WebhookView(View):
    """A registered webhook (without its secret)."""

    webhook_id: str
    url: str
    event_types: list[str]
    execution_id: str | None
    plan_id: str | None
    description: str
    status: str = Field(description="active, or disabled (deliveries wait; `disabled_reason` says why)")
    disabled_reason: str | None
    created_by: str
    created_at: Timestamp
    updated_at: Timestamp


class WebhookSecret(WebhookView):
    """A webhook with its signing secret: the answer of registration and of rotating the secret."""

    secret: str = Field(description="whsec_…: verify deliveries with any Standard Webhooks library")


class WebhookList(View):
    """Every registered webhook."""

    items: list[WebhookView]


class AttemptView(View):
    """One HTTP attempt of a delivery."""

    attempt: int
    status_code: int | None
    latency_ms: float
    error: str | None
    at: Timestamp


class DeliveryView(View):
    """One event owed to a webhook and every attempt to deliver it."""

    delivery_id: str
    event_id: str = Field(description="also the webhook-id header: receivers de-duplicate on it")
    event_type: str
    execution_id: str
    seq: int
    status: str = Field(description="pending, delivered or failed (retries ran out)")
    attempts: list[AttemptView]
    next_attempt_at: Timestamp | None


class DeliveryPage(View):
    """A webhook's deliveries, newest first."""

    items: list[DeliveryView]
