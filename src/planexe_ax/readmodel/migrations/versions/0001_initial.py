"""Initial read model: agents, plans, executions, events, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(128)
STATUS = sa.String(32)


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, nullable: bool = False) -> sa.Column[Any]:
    kind = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    return sa.Column(name, kind, nullable=nullable)


def upgrade() -> None:
    """Create the agents, plans, executions, events and checkpoint tables."""
    op.create_table(
        "agents",
        sa.Column("agent_id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(200), nullable=False),
        _json("capabilities"),
        _ts("started_at"),
        _ts("last_heartbeat"),
        sa.Column("status", STATUS, nullable=False),
    )
    op.create_table(
        "plans",
        sa.Column("plan_id", ID, primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        _json("plan"),
        _ts("created_at"),
    )
    op.create_table(
        "plan_tasks",
        sa.Column("plan_id", ID, sa.ForeignKey("plans.plan_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("task_id", ID, primary_key=True),
        sa.Column("phase_id", ID, nullable=False),
        sa.Column("phase_name", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("assignee_role", sa.String(200), nullable=True),
        sa.Column("estimated_hours", sa.Float(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_table(
        "plan_subtasks",
        sa.Column("plan_id", ID, primary_key=True),
        sa.Column("task_id", ID, primary_key=True),
        sa.Column("subtask_id", ID, primary_key=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _json("params"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id", "task_id"], ["plan_tasks.plan_id", "plan_tasks.task_id"], ondelete="CASCADE"
        ),
    )
    _create_execution_tables()
    _create_event_tables()


def _create_execution_tables() -> None:
    op.create_table(
        "executions",
        sa.Column("execution_id", ID, primary_key=True),
        sa.Column("plan_id", ID, sa.ForeignKey("plans.plan_id"), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("updated_at"),
    )
    op.create_index("ix_executions_plan_id", "executions", ["plan_id"])
    op.create_table(
        "execution_tasks",
        sa.Column("execution_id", ID, sa.ForeignKey("executions.execution_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("task_id", ID, primary_key=True),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
    )
    op.create_table(
        "execution_subtasks",
        sa.Column("execution_id", ID, primary_key=True),
        sa.Column("task_id", ID, primary_key=True),
        sa.Column("subtask_id", ID, primary_key=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("agent_id", ID, nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        _json("output", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["execution_id", "task_id"],
            ["execution_tasks.execution_id", "execution_tasks.task_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_execution_subtasks_execution_subtask", "execution_subtasks", ["execution_id", "subtask_id"])


def _create_event_tables() -> None:
    op.create_table(
        "execution_events",
        sa.Column("stream_seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("event_id", ID, nullable=False, unique=True),
        sa.Column("execution_id", ID, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("task_id", ID, nullable=True),
        sa.Column("subtask_id", ID, nullable=True),
        sa.Column("agent_id", ID, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        _ts("ts"),
        _json("data"),
    )
    op.create_index("ix_execution_events_execution_seq", "execution_events", ["execution_id", "stream_seq"])
    op.create_table(
        "projector_checkpoints",
        sa.Column("consumer", sa.String(128), primary_key=True),
        sa.Column("stream_seq", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    """Drop every table this revision created."""
    op.drop_table("projector_checkpoints")
    op.drop_index("ix_execution_events_execution_seq", table_name="execution_events")
    op.drop_table("execution_events")
    op.drop_index("ix_execution_subtasks_execution_subtask", table_name="execution_subtasks")
    op.drop_table("execution_subtasks")
    op.drop_table("execution_tasks")
    op.drop_index("ix_executions_plan_id", table_name="executions")
    op.drop_table("executions")
    op.drop_table("plan_subtasks")
    op.drop_table("plan_tasks")
    op.drop_table("plans")
    op.drop_table("agents")
