"""The delivery service's side of the webhook tables: owed deliveries in, due deliveries out, attempts logged.

Each event a webhook is subscribed to becomes one ``webhook_deliveries`` row, written in the same
transaction as the consumer's checkpoint, before the event is acked: a crash after the commit loses
nothing, a crash before it sees the event again (the unique ``(webhook_id, event_id)`` keeps one row). A
delivery is due when it is pending, its time has come, its webhook is active and no earlier delivery of
the same execution to the same webhook is pending: deliveries go out in order per execution.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    WEBHOOK_ACTIVE,
    WEBHOOK_DISABLED,
    Execution,
    ProjectorCheckpoint,
    WebhookAttempt,
    WebhookDelivery,
    WebhookRow,
)


@dataclass(frozen=True)
class Subscription:
    """What a webhook wants: event types (empty: all), one execution, one plan; events after ``after_seq``."""

    webhook_id: str
    event_types: frozenset[str]
    execution_id: str | None
    plan_id: str | None
    after_seq: int

    def wants(self, seq: int, event_type: str, execution_id: str, plan_id: str | None) -> bool:
        """Whether the event at ``seq`` is owed to this webhook."""
        return (
            seq > self.after_seq
            and (not self.event_types or event_type in self.event_types)
            and self.execution_id in (None, execution_id)
            and (self.plan_id is None or self.plan_id == plan_id)
        )


@dataclass(frozen=True)
class Owed:
    """One event to hand to the webhooks that want it."""

    seq: int
    event_id: str
    event_type: str
    execution_id: str
    payload: str


@dataclass(frozen=True)
class Due:
    """A delivery to attempt now."""

    delivery_id: str
    webhook_id: str
    url: str
    secret: str
    event_id: str
    payload: str
    attempts: int
    first_due_at: datetime
    execution_id: str = ""
    """The event's execution: the delivery's span goes into its trace."""


async def subscriptions(sessions: Sessions) -> list[Subscription]:
    """Every webhook's subscription (disabled ones too: their deliveries wait for them)."""
    async with sessions() as session:
        rows = await session.scalars(select(WebhookRow))
        return [
            Subscription(r.webhook_id, frozenset(r.event_types), r.execution_id, r.plan_id, r.after_seq) for r in rows
        ]


async def plans_of(sessions: Sessions, execution_ids: set[str]) -> dict[str, str]:
    """The plan id of each execution the read model knows."""
    if not execution_ids:
        return {}
    async with sessions() as session:
        rows = await session.execute(
            select(Execution.execution_id, Execution.plan_id).where(Execution.execution_id.in_(execution_ids))
        )
        return {str(e): str(p) for e, p in rows.all()}


async def checkpoint(sessions: Sessions, consumer: str) -> int:
    """The last stream sequence ``consumer`` handed out (0 before the first)."""
    async with sessions() as session:
        row = await session.get(ProjectorCheckpoint, consumer)
    return row.stream_seq if row else 0


async def enqueue(sessions: Sessions, consumer: str, top_seq: int, owed: list[tuple[str, Owed]]) -> int:
    """Store the ``(webhook_id, event)`` deliveries not stored yet and the checkpoint ``top_seq``; how many new."""
    now = datetime.now(UTC)
    added = 0
    async with sessions() as session, session.begin():
        for webhook_id, o in owed:
            known = await session.scalar(
                select(WebhookDelivery.delivery_id).where(
                    WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.event_id == o.event_id
                )
            )
            if known is not None:
                continue
            session.add(
                WebhookDelivery(
                    delivery_id=f"dlv_{uuid.uuid4().hex}",
                    webhook_id=webhook_id,
                    event_id=o.event_id,
                    event_type=o.event_type,
                    execution_id=o.execution_id,
                    stream_seq=o.seq,
                    payload=o.payload,
                    status=DELIVERY_PENDING,
                    attempts=0,
                    first_due_at=now,
                    next_attempt_at=now,
                )
            )
            added += 1
        row = await session.get(ProjectorCheckpoint, consumer)
        if row is None:
            session.add(ProjectorCheckpoint(consumer=consumer, stream_seq=top_seq))
        elif top_seq > row.stream_seq:
            row.stream_seq = top_seq
    return added


RUN = 20
"""Most deliveries of one (webhook, execution) handed out at once, to go one after the other."""


def _due_query(now: datetime, limit: int) -> object:
    ranked = (
        select(
            WebhookDelivery.delivery_id,
            func.row_number()
            .over(
                partition_by=(WebhookDelivery.webhook_id, WebhookDelivery.execution_id),
                order_by=WebhookDelivery.stream_seq,
            )
            .label("rank"),
        )
        .where(WebhookDelivery.status == DELIVERY_PENDING)
        .subquery()
    )
    return (
        select(WebhookDelivery, WebhookRow.url, WebhookRow.secret, ranked.c.rank)
        .join(ranked, ranked.c.delivery_id == WebhookDelivery.delivery_id)
        .join(WebhookRow, WebhookRow.webhook_id == WebhookDelivery.webhook_id)
        .where(WebhookRow.status == WEBHOOK_ACTIVE, ranked.c.rank <= RUN, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.stream_seq)
        .limit(limit)
    )


async def due(sessions: Sessions, limit: int = 1000) -> list[list[Due]]:
    """Runs of deliveries to attempt now, one run per (webhook, execution), each to go in order.

    A run starts at the execution's earliest pending delivery to that webhook: when that one waits for a
    retry, nothing after it goes.
    """
    async with sessions() as session:
        rows = (await session.execute(_due_query(datetime.now(UTC), limit))).all()  # type: ignore[call-overload]  # a Select
    runs: dict[tuple[str, str], list[Due]] = {}
    for d, url, secret, rank in rows:
        run = runs.setdefault((d.webhook_id, d.execution_id), [])
        if rank == len(run) + 1:  # the run so far is unbroken from the earliest pending one
            fields = (d.event_id, d.payload, d.attempts, d.first_due_at, d.execution_id)
            run.append(Due(d.delivery_id, d.webhook_id, url, secret, *fields))
    return [run for run in runs.values() if run]


async def next_due_at(sessions: Sessions) -> datetime | None:
    """When the next pending delivery of an active webhook falls due (None: none is pending)."""
    async with sessions() as session:
        return await session.scalar(
            select(func.min(WebhookDelivery.next_attempt_at))
            .join(WebhookRow, WebhookRow.webhook_id == WebhookDelivery.webhook_id)
            .where(WebhookRow.status == WEBHOOK_ACTIVE, WebhookDelivery.status == DELIVERY_PENDING)
        )


async def is_active(sessions: Sessions, webhook_id: str) -> bool:
    """Whether the webhook exists and is active (not disabled, not deleted)."""
    async with sessions() as session:
        hook = await session.get(WebhookRow, webhook_id)
    return hook is not None and hook.status == WEBHOOK_ACTIVE


@dataclass(frozen=True)
class Outcome:
    """What one attempt gave and what follows: delivered, retry at ``retry_at``, or give up (``disable``)."""

    status_code: int | None
    latency_ms: float
    error: str | None
    delivered: bool
    retry_at: datetime | None = None
    disable: str | None = None


async def record(sessions: Sessions, due_item: Due, outcome: Outcome) -> None:
    """Log the attempt and move the delivery on; giving up fails it and disables its webhook with the reason."""
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        row = await session.get(WebhookDelivery, due_item.delivery_id)
        if row is None:  # the webhook was deleted meanwhile
            return
        row.attempts += 1
        session.add(
            WebhookAttempt(
                delivery_id=row.delivery_id,
                attempt=row.attempts,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                error=outcome.error,
                at=now,
            )
        )
        if outcome.delivered:
            row.status = DELIVERY_DELIVERED
        elif outcome.disable is not None:
            row.status = DELIVERY_FAILED
            hook = await session.get(WebhookRow, row.webhook_id)
            if hook is not None and hook.status == WEBHOOK_ACTIVE:  # disabled already: its first reason stays
                hook.status, hook.disabled_reason, hook.updated_at = WEBHOOK_DISABLED, outcome.disable, now
        else:
            row.next_attempt_at = outcome.retry_at or now
