"""The plan catalog: uploaded plans can be deleted (kept for their executions), and what an agent works on.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add plan deletion, the agents' current work and the executions' listing index."""
    json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    # Plain ALTER TABLE on every backend (SQLite 3.35+ drops columns itself): a batch copy of `plans` would
    # drop the table that executions reference.
    op.add_column("plans", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("agents", sa.Column("current", json, nullable=True))
    op.create_index("ix_executions_created", "executions", ["created_at", "execution_id"])


def downgrade() -> None:
    """Drop the index and the columns this revision added."""
    op.drop_index("ix_executions_created", table_name="executions")
    op.drop_column("agents", "current")
    op.drop_column("plans", "deleted_at")
