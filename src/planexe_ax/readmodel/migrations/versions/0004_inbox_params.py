"""The params a person gave when answering an escalation with retry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``inbox_items.resolution_params``."""
    json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    op.add_column("inbox_items", sa.Column("resolution_params", json, nullable=True))


def downgrade() -> None:
    """Drop the column this revision added."""
    op.drop_column("inbox_items", "resolution_params")
