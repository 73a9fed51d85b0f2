"""Webhooks, their deliveries and every delivery attempt.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(128)
STATUS = sa.String(32)


def _ts(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Create ``webhooks``, ``webhook_deliveries`` and ``webhook_attempts``."""
    json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    op.create_table(
        "webhooks",
        sa.Column("webhook_id", ID, primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("event_types", json, nullable=False),
        sa.Column("execution_id", ID, nullable=True),
        sa.Column("plan_id", ID, nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", ID, primary_key=True),
        sa.Column("webhook_id", ID, sa.ForeignKey("webhooks.webhook_id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("execution_id", ID, nullable=False),
        sa.Column("stream_seq", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("first_due_at"),
        _ts("next_attempt_at"),
    )
    op.create_index("ux_webhook_deliveries_event", "webhook_deliveries", ["webhook_id", "event_id"], unique=True)
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("attempt_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            ID,
            sa.ForeignKey("webhook_deliveries.delivery_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("at"),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])


def downgrade() -> None:
    """Drop the tables this revision created."""
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
