"""Events' and plans' documents as ``json`` on PostgreSQL, not ``jsonb``: kept as written, only checked to be JSON.

The read model never looks inside an event's ``data`` or a plan's ``plan`` in SQL (it reads the whole document
back); ``jsonb`` made the server take every document apart and build it again on every write: about 40 % of the
time a batch of events took to copy in, and 20 ms a 1,000-task plan. SQLite keeps JSON as text either way:
nothing changes there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


DOCUMENTS = (("execution_events", "data"), ("plans", "plan"))


def upgrade() -> None:
    """``execution_events.data`` and ``plans.plan``: ``jsonb`` to ``json`` (PostgreSQL; as jsonb wrote them)."""
    if op.get_bind().dialect.name == "postgresql":
        for table, column in DOCUMENTS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE json USING {column}::json")


def downgrade() -> None:
    """Both columns back to ``jsonb`` (PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        for table, column in DOCUMENTS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb")
