"""The read side: what the CLI and the gateway ask the read model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from planexe_ax.readmodel.models import (
    INBOX_OPEN,
    READ_MODEL_TABLES,
    Base,
    Execution,
    ExecutionSubtask,
    ExecutionTask,
    InboxItem,
    PlanSubtask,
    PlanTask,
)

Sessions = async_sessionmaker[AsyncSession]


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC text of ``value`` (``...Z``), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def execution_status(session_factory: Sessions, execution_id: str) -> str | None:
    """The status of one execution.

    Args:
        session_factory: Sessions of the read model.
        execution_id: The execution.

    Returns:
        The status (``RUNNING``, ...), or None when the read model does not know the execution.
    """
    async with session_factory() as session:
        return await session.scalar(select(Execution.status).where(Execution.execution_id == execution_id))


async def execution_report(session_factory: Sessions, execution_id: str) -> dict[str, Any] | None:
    """One execution with its tasks and subtasks, in plan order, as JSON-ready data.

    Args:
        session_factory: Sessions of the read model.
        execution_id: The execution.

    Returns:
        ``{"execution_id", "plan_id", "status", "started_at", "finished_at", "tasks": [{"task_id", "status",
        "started_at", "finished_at", "attempts", "subtasks": [{"subtask_id", "action", "status", "agent_id",
        "output"}]}]}`` with times as ISO 8601 UTC text or None; None when the execution is unknown.
    """
    async with session_factory() as session:
        execution = await session.get(Execution, execution_id)
        if execution is None:
            return None
        tasks = await _tasks(session, execution)
        subtasks = await _subtasks(session, execution)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for sub in subtasks:
        by_task.setdefault(sub.task_id, []).append(
            {
                "subtask_id": sub.subtask_id,
                "action": sub.action,
                "status": sub.status,
                "agent_id": sub.agent_id,
                "output": sub.output,
            }
        )
    return {
        "execution_id": execution.execution_id,
        "plan_id": execution.plan_id,
        "status": execution.status,
        "started_at": iso(execution.started_at),
        "finished_at": iso(execution.finished_at),
        "tasks": [
            {
                "task_id": task.task_id,
                "status": task.status,
                "started_at": iso(task.started_at),
                "finished_at": iso(task.finished_at),
                "attempts": task.attempts,
                "subtasks": by_task.get(task.task_id, []),
            }
            for task in tasks
        ],
    }


async def _tasks(session: AsyncSession, execution: Execution) -> list[ExecutionTask]:
    query = (
        select(ExecutionTask)
        .outerjoin(PlanTask, (PlanTask.plan_id == execution.plan_id) & (PlanTask.task_id == ExecutionTask.task_id))
        .where(ExecutionTask.execution_id == execution.execution_id)
        .order_by(PlanTask.position, ExecutionTask.task_id)
    )
    return list(await session.scalars(query))


async def _subtasks(session: AsyncSession, execution: Execution) -> list[ExecutionSubtask]:
    query = (
        select(ExecutionSubtask)
        .outerjoin(
            PlanSubtask,
            (PlanSubtask.plan_id == execution.plan_id)
            & (PlanSubtask.task_id == ExecutionSubtask.task_id)
            & (PlanSubtask.subtask_id == ExecutionSubtask.subtask_id),
        )
        .where(ExecutionSubtask.execution_id == execution.execution_id)
        .order_by(ExecutionSubtask.task_id, PlanSubtask.position, ExecutionSubtask.subtask_id)
    )
    return list(await session.scalars(query))


async def inbox_items(
    session_factory: Sessions, *, execution_id: str | None = None, include_closed: bool = False
) -> list[dict[str, Any]]:
    """Inbox items, oldest first.

    Args:
        session_factory: Sessions of the read model.
        execution_id: Only the items of this execution; None for every execution.
        include_closed: Closed items too; by default only the open ones.

    Returns:
        One dict per item as :func:`inbox_item` gives it.
    """
    query = select(InboxItem).order_by(InboxItem.opened_at, InboxItem.item_id)
    if execution_id is not None:
        query = query.where(InboxItem.execution_id == execution_id)
    if not include_closed:
        query = query.where(InboxItem.status == INBOX_OPEN)
    async with session_factory() as session:
        return [_inbox_dict(row) for row in await session.scalars(query)]


async def inbox_item(session_factory: Sessions, item_id: str) -> dict[str, Any] | None:
    """One inbox item, open or closed.

    Args:
        session_factory: Sessions of the read model.
        item_id: The item.

    Returns:
        Every column of ``inbox_items`` (``item_id``, ``execution_id``, ``task_id``, ``subtask_id``, ``attempt``,
        ``kind``, ``title``, ``reason``, ``action``, ``params``, ``output``, ``confidence``, ``actions``,
        ``status`` (``open`` or ``closed``), ``resolution``, ``resolved_by``, ``comment``, ``resolution_output``,
        ``opened_at``, ``closed_at``) with times as ISO 8601 UTC text or None; None when the item is unknown.
    """
    async with session_factory() as session:
        row = await session.get(InboxItem, item_id)
        return None if row is None else _inbox_dict(row)


def _inbox_dict(row: InboxItem) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for column in InboxItem.__table__.columns:
        value = getattr(row, column.key)
        item[column.key] = iso(value) if isinstance(value, datetime) else value
    return item


async def table_dump(session_factory: Sessions) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read-model table (checkpoints excepted), sorted by primary key.

    Two databases that projected the same stream give equal dumps.

    Args:
        session_factory: Sessions of the read model.

    Returns:
        Table name to rows; each row maps column name to its Python value.
    """
    dump: dict[str, list[dict[str, Any]]] = {}
    async with session_factory() as session:
        for model in READ_MODEL_TABLES:
            table = Base.metadata.tables[model.__tablename__]
            result = await session.execute(select(table).order_by(*table.primary_key.columns))
            dump[table.name] = [dict(row) for row in result.mappings()]
    return dump
