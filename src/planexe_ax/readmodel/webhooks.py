"""Registered webhooks and their delivery log: what the gateway reads and writes.

Unlike the rest of the read model these rows are not projected from events: a webhook is configuration the
gateway stores when an operator registers it, and the delivery service (:mod:`.webhook_queue`) writes the
deliveries and attempts. A webhook's ``after_seq`` is the last event stored when it was registered: it is
owed only the events after it.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import (
    DELIVERY_PENDING,
    WEBHOOK_ACTIVE,
    WebhookAttempt,
    WebhookDelivery,
    WebhookRow,
)
from planexe_ax.readmodel.schemas import AttemptView, DeliveryPage, DeliveryView, WebhookSecret, WebhookView

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64, as Standard Webhooks has it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class NewWebhook:
    """What registration stores (the caller checked the URL)."""

    url: str
    event_types: list[str]
    execution_id: str | None
    plan_id: str | None
    description: str
    created_by: str
    after_seq: int


def _view(row: WebhookRow) -> WebhookView:
    return WebhookView.model_validate({name: getattr(row, name) for name in WebhookView.model_fields})


def _with_secret(row: WebhookRow) -> WebhookSecret:
    return WebhookSecret.model_validate({name: getattr(row, name) for name in WebhookSecret.model_fields})


async def create_webhook(sessions: Sessions, webhook_id: str, new: NewWebhook) -> WebhookSecret:
    """Store a webhook with a fresh secret; the answer is the only time the secret is shown besides rotation."""
    now = datetime.now(UTC)
    row = WebhookRow(
        webhook_id=webhook_id,
        url=new.url,
        secret=new_secret(),
        event_types=list(new.event_types),
        execution_id=new.execution_id,
        plan_id=new.plan_id,
        description=new.description,
        status=WEBHOOK_ACTIVE,
        disabled_reason=None,
        after_seq=new.after_seq,
        created_by=new.created_by,
        created_at=now,
        updated_at=now,
    )
    async with sessions() as session, session.begin():
        session.add(row)
    return _with_secret(row)


async def list_webhooks(sessions: Sessions) -> list[WebhookView]:
    """Every webhook, oldest first."""
    async with sessions() as session:
        rows = await session.scalars(select(WebhookRow).order_by(WebhookRow.created_at, WebhookRow.webhook_id))
        return [_view(row) for row in rows]


async def get_webhook(sessions: Sessions, webhook_id: str) -> WebhookView | None:
    """One webhook (None when unknown)."""
    async with sessions() as session:
        row = await session.get(WebhookRow, webhook_id)
    return None if row is None else _view(row)


async def update_webhook(sessions: Sessions, webhook_id: str, changes: dict[str, Any]) -> WebhookView | None:
    """Change some of url, event_types, execution_id, plan_id, description, status; None when unknown.

    Setting ``status`` to active clears ``disabled_reason``: the pending deliveries go out again.
    """
    async with sessions() as session, session.begin():
        row = await session.get(WebhookRow, webhook_id)
        if row is None:
            return None
        for name, value in changes.items():
            setattr(row, name, value)
        if changes.get("status") == WEBHOOK_ACTIVE:
            row.disabled_reason = None
        row.updated_at = datetime.now(UTC)
    return _view(row)


async def rotate_secret(sessions: Sessions, webhook_id: str) -> WebhookSecret | None:
    """Give the webhook a new secret (the old one stops signing at once); None when unknown."""
    async with sessions() as session, session.begin():
        row = await session.get(WebhookRow, webhook_id)
        if row is None:
            return None
        row.secret = new_secret()
        row.updated_at = datetime.now(UTC)
    return _with_secret(row)


async def delete_webhook(sessions: Sessions, webhook_id: str) -> bool:
    """Delete the webhook, its deliveries and their attempts; False when unknown."""
    async with sessions() as session, session.begin():
        row = await session.get(WebhookRow, webhook_id)
        if row is None:
            return False
        await session.delete(row)
    return True


async def deliveries_page(sessions: Sessions, webhook_id: str, limit: int) -> DeliveryPage:
    """The webhook's latest ``limit`` deliveries, newest event first, each with every attempt."""
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == webhook_id)
                .order_by(WebhookDelivery.stream_seq.desc())
                .limit(limit)
            )
        )
        ids = [row.delivery_id for row in rows]
        attempts: dict[str, list[AttemptView]] = {i: [] for i in ids}
        found = await session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)).order_by(WebhookAttempt.attempt_id)
        )
        for a in found:
            attempts[a.delivery_id].append(
                AttemptView(
                    attempt=a.attempt, status_code=a.status_code, latency_ms=a.latency_ms, error=a.error, at=a.at
                )
            )
    return DeliveryPage(items=[_delivery(row, attempts[row.delivery_id]) for row in rows])


def _delivery(row: WebhookDelivery, attempts: list[AttemptView]) -> DeliveryView:
    return DeliveryView(
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        event_type=row.event_type,
        execution_id=row.execution_id,
        seq=row.stream_seq,
        status=row.status,
        attempts=attempts,
        next_attempt_at=row.next_attempt_at if row.status == DELIVERY_PENDING else None,
    )


async def redeliver(sessions: Sessions, webhook_id: str, delivery_id: str) -> bool:
    """Make a delivery pending and due now (a delivered or failed one goes out again); False when unknown."""
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.delivery_id == delivery_id)
            .values(status=DELIVERY_PENDING, next_attempt_at=now, first_due_at=now)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult for an UPDATE
