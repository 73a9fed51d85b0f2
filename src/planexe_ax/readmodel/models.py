"""The read model: typed tables written only by the projector from events and agent cards (but webhooks).

The webhook tables at the end are configuration and a delivery log, not a projection: the gateway writes
the webhooks, the delivery service the deliveries and attempts.

No column has a server-side default: every value comes from an event (or a KV entry), so projecting
the same stream into an empty database gives identical rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(128)
ITEM_ID = String(255)  # built by the coordinator from the execution id, a task or subtask id and a version
STATUS = String(32)
INBOX_OPEN, INBOX_CLOSED = "open", "closed"
# none_as_null: a Python None is SQL NULL, not the JSON value null.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
DocumentJSON = JSON(none_as_null=True)
"""JSON kept as written (``json`` on PostgreSQL, not ``jsonb``): a document read back whole, never queried inside."""


class JsonText(str):
    """A JSON column's value written as JSON text already (by pydantic's serializer, in one Rust call).

    :mod:`planexe_ax.readmodel.bulk` binds it as it is where any other value is dumped first; SQLAlchemy's own
    statements would dump it again, as a JSON string: only the bulk writes take it.
    """

    __slots__ = ()


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zone type: values are stored as naive UTC and read back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC (naive on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back a timezone-aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the read-model tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class AgentRow(Base):
    """An agent as last seen in KV ``ax-agents``: card, liveness and the work it holds."""

    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(200))
    capabilities: Mapped[list[Any]]
    started_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
    status: Mapped[str] = mapped_column(STATUS)
    current: Mapped[list[Any] | None] = mapped_column(default=None)


class PlanRow(Base):
    """A plan in the catalog with its whole document; deleted plans stay for their executions."""

    __tablename__ = "plans"

    plan_id: Mapped[str] = mapped_column(ID, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    goal: Mapped[str] = mapped_column(Text)
    plan: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class PlanTask(Base):
    """One task of a catalog plan, in plan order, with its phase."""

    __tablename__ = "plan_tasks"

    plan_id: Mapped[str] = mapped_column(ID, ForeignKey("plans.plan_id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    phase_id: Mapped[str] = mapped_column(ID)
    phase_name: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    assignee_role: Mapped[str | None] = mapped_column(String(200))
    estimated_hours: Mapped[float | None] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer)


class PlanSubtask(Base):
    """One subtask of a catalog plan's task, in order."""

    __tablename__ = "plan_subtasks"
    __table_args__ = (
        ForeignKeyConstraint(["plan_id", "task_id"], ["plan_tasks.plan_id", "plan_tasks.task_id"], ondelete="CASCADE"),
    )

    plan_id: Mapped[str] = mapped_column(ID, primary_key=True)
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    subtask_id: Mapped[str] = mapped_column(ID, primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    position: Mapped[int] = mapped_column(Integer)


class Execution(Base):
    """One execution of a plan: status and times."""

    __tablename__ = "executions"
    __table_args__ = (Index("ix_executions_created", "created_at", "execution_id"),)

    execution_id: Mapped[str] = mapped_column(ID, primary_key=True)
    plan_id: Mapped[str] = mapped_column(ID, ForeignKey("plans.plan_id"), index=True)
    status: Mapped[str] = mapped_column(STATUS)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class ExecutionTask(Base):
    """A task's state inside one execution."""

    __tablename__ = "execution_tasks"

    execution_id: Mapped[str] = mapped_column(
        ID, ForeignKey("executions.execution_id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    status: Mapped[str] = mapped_column(STATUS)
    attempts: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ExecutionSubtask(Base):
    """A subtask's state inside one execution: attempt, agent, progress, result and why it waits."""

    __tablename__ = "execution_subtasks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["execution_id", "task_id"],
            ["execution_tasks.execution_id", "execution_tasks.task_id"],
            ondelete="CASCADE",
        ),
        Index("ix_execution_subtasks_execution_subtask", "execution_id", "subtask_id"),
    )

    execution_id: Mapped[str] = mapped_column(ID, primary_key=True)
    task_id: Mapped[str] = mapped_column(ID, primary_key=True)
    subtask_id: Mapped[str] = mapped_column(ID, primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(STATUS)
    attempt: Mapped[int] = mapped_column(Integer)
    agent_id: Mapped[str | None] = mapped_column(ID)
    progress: Mapped[float] = mapped_column(Float)
    output: Mapped[dict[str, Any] | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class InboxItem(Base):
    """Work for a person (a human task, an approval, a review or an escalation) and how it was answered."""

    __tablename__ = "inbox_items"

    item_id: Mapped[str] = mapped_column(ITEM_ID, primary_key=True)
    execution_id: Mapped[str] = mapped_column(ID, ForeignKey("executions.execution_id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str | None] = mapped_column(ID)
    subtask_id: Mapped[str | None] = mapped_column(ID)
    attempt: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(STATUS)
    title: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    output: Mapped[dict[str, Any] | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    actions: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(STATUS)
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    resolution_output: Mapped[dict[str, Any] | None]
    resolution_params: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class ExecutionEvent(Base):
    """Every event as it was received; rows are never updated."""

    __tablename__ = "execution_events"
    __table_args__ = (Index("ix_execution_events_execution_seq", "execution_id", "stream_seq"),)

    stream_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    execution_id: Mapped[str] = mapped_column(ID)
    type: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(ID)
    subtask_id: Mapped[str | None] = mapped_column(ID)
    agent_id: Mapped[str | None] = mapped_column(ID)
    attempt: Mapped[int | None] = mapped_column(Integer)
    ts: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)


class ProjectorCheckpoint(Base):
    """The last stream sequence a consumer projected, written in the same transaction as the rows."""

    __tablename__ = "projector_checkpoints"

    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    stream_seq: Mapped[int] = mapped_column(BigInteger)


READ_MODEL_TABLES = (
    AgentRow,
    PlanRow,
    PlanTask,
    PlanSubtask,
    Execution,
    ExecutionTask,
    ExecutionSubtask,
    InboxItem,
    ExecutionEvent,
)


# -- webhooks: configuration and a delivery log, written by the gateway and the delivery service ------------
WEBHOOK_ACTIVE, WEBHOOK_DISABLED = "active", "disabled"
DELIVERY_PENDING, DELIVERY_DELIVERED, DELIVERY_FAILED = "pending", "delivered", "failed"


class WebhookRow(Base):
    """A registered webhook endpoint: where events go, which ones, and the secret that signs them."""

    __tablename__ = "webhooks"

    webhook_id: Mapped[str] = mapped_column(ID, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[Any]]
    execution_id: Mapped[str | None] = mapped_column(ID)
    plan_id: Mapped[str | None] = mapped_column(ID)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(STATUS)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    after_seq: Mapped[int] = mapped_column(BigInteger)  # events up to this stream sequence predate the webhook
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event owed to one webhook: pending until delivered, or failed when retries ran out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ux_webhook_deliveries_event", "webhook_id", "event_id", unique=True),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    delivery_id: Mapped[str] = mapped_column(ID, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ID, ForeignKey("webhooks.webhook_id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ID)
    event_type: Mapped[str] = mapped_column(String(64))
    execution_id: Mapped[str] = mapped_column(ID)
    stream_seq: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(STATUS)
    attempts: Mapped[int] = mapped_column(Integer)
    first_due_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the status code, or the error, and how long it took."""

    __tablename__ = "webhook_attempts"

    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ID, ForeignKey("webhook_deliveries.delivery_id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]
