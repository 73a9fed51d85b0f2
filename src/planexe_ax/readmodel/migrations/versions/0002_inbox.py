"""People in the loop: the inbox, and why a subtask waits (reason, retry time, deadline, confidence).

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(128)
ITEM_ID = sa.String(255)
STATUS = sa.String(32)


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, nullable: bool = False) -> sa.Column[Any]:
    kind = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    return sa.Column(name, kind, nullable=nullable)


def upgrade() -> None:
    """Add the inbox table and the columns that say why a subtask waits."""
    op.create_table(
        "inbox_items",
        sa.Column("item_id", ITEM_ID, primary_key=True),
        sa.Column("execution_id", ID, sa.ForeignKey("executions.execution_id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_id", ID, nullable=True),
        sa.Column("subtask_id", ID, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("kind", STATUS, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        _json("params"),
        _json("output", nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        _json("actions"),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        _json("resolution_output", nullable=True),
        _ts("opened_at"),
        _ts("closed_at", nullable=True),
    )
    op.create_index("ix_inbox_items_execution_id", "inbox_items", ["execution_id"])
    # Rows already there get an empty reason; the default is dropped at once, as the models have none.
    with op.batch_alter_table("execution_subtasks") as batch:
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(_ts("not_before", nullable=True))
        batch.add_column(_ts("deadline", nullable=True))
    with op.batch_alter_table("execution_subtasks") as batch:
        batch.alter_column("reason", existing_type=sa.Text(), existing_nullable=False, server_default=None)


def downgrade() -> None:
    """Drop the inbox table and those columns."""
    with op.batch_alter_table("execution_subtasks") as batch:
        batch.drop_column("deadline")
        batch.drop_column("not_before")
        batch.drop_column("reason")
        batch.drop_column("confidence")
    op.drop_index("ix_inbox_items_execution_id", table_name="inbox_items")
    op.drop_table("inbox_items")
