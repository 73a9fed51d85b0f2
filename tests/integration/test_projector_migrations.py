"""The read-model migrations on SQLite and PostgreSQL: up, down to nothing, up again, and in step with the models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from planexe_ax.readmodel import downgrade, make_engine, upgrade
from planexe_ax.readmodel.models import Base

pytestmark = pytest.mark.postgres

TABLES = {
    "agents",
    "plans",
    "plan_tasks",
    "plan_subtasks",
    "executions",
    "execution_tasks",
    "execution_subtasks",
    "execution_events",
    "projector_checkpoints",
}
TABLES_0002 = {*TABLES, "inbox_items"}
TABLES_HEAD = {*TABLES_0002, "webhooks", "webhook_deliveries", "webhook_attempts"}
SUBTASK_COLUMNS_0002 = {"reason", "confidence", "not_before", "deadline"}
HEAD = "0006"
WAIT_S = 60.0


async def inspect_db(url: str, look: Any) -> Any:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def schema_diff(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def retyped_columns(conn: Connection) -> list[tuple[str, str, str]]:
    """What differs from the models: only columns whose type a later revision changes, (table, column, type)."""
    diff = schema_diff(conn)
    changes = [change for group in diff for change in (group if isinstance(group, list) else [group])]
    assert all(change[0] == "modify_type" for change in changes), diff
    return [(change[2], change[3], type(change[5]).__name__) for change in changes]


EVENTS_RETYPED_BY_0006 = {
    "sqlite+aiosqlite": [],
    "postgresql+asyncpg": [("execution_events", "data", "JSONB"), ("plans", "plan", "JSONB")],
}
PLAN_0005 = (
    "INSERT INTO plans (plan_id, title, goal, plan, created_at) VALUES "
    "('p1', 't', 'g', '{{\"plan_id\": \"p1\", \"phases\": [{{\"tasks\": []}}]}}', {ts})"
)
EVENT_0005 = (
    "INSERT INTO execution_events (stream_seq, event_id, execution_id, type, ts, data) VALUES "
    "(7, 'ev7', 'e1', 'task_state', {ts}, '{{\"b\": [1, 2.5, null], \"a\": \"caf\u00e9\"}}')"
)


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, table_names) == {*TABLES_HEAD, "alembic_version"}
    await asyncio.wait_for(upgrade(database_url), WAIT_S)  # at head already: nothing to do

    await asyncio.wait_for(downgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, table_names) == set()

    await asyncio.wait_for(upgrade(database_url, "0001"), WAIT_S)
    assert await inspect_db(database_url, table_names) == {*TABLES, "alembic_version"}


def subtask_columns(conn: Connection) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("execution_subtasks")}


def inbox_indexes(conn: Connection) -> list[tuple[str | None, list[str | None]]]:
    return [(index["name"], list(index["column_names"])) for index in inspect(conn).get_indexes("inbox_items")]


def subtask_indexes(conn: Connection) -> list[str]:
    return sorted(str(index["name"]) for index in inspect(conn).get_indexes("execution_subtasks"))


def version(conn: Connection) -> str | None:
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


TS = "'2025-03-01 09:00:00'"
ROWS_0001 = [
    f"INSERT INTO plans (plan_id, title, goal, plan, created_at) VALUES ('p1', 't', 'g', '{{}}', {TS})",
    "INSERT INTO executions (execution_id, plan_id, status, reason, created_at, updated_at)"
    f" VALUES ('e1', 'p1', 'RUNNING', '', {TS}, {TS})",
    "INSERT INTO execution_tasks (execution_id, task_id, status, attempts, reason)"
    " VALUES ('e1', 't1', 'RUNNING', 1, '')",
    "INSERT INTO execution_subtasks (execution_id, task_id, subtask_id, action, status, attempt, progress, updated_at)"
    f" VALUES ('e1', 't1', 's1', 'echo', 'FAILED', 1, 50.0, {TS})",
]


async def run_sql(url: str, statements: list[str]) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def subtask_rows(conn: Connection) -> list[dict[str, Any]]:
    result = conn.execute(text("SELECT * FROM execution_subtasks"))
    return [{k: v for k, v in row.items() if k in {"subtask_id", "status", "progress", *SUBTASK_COLUMNS_0002}}
            for row in result.mappings()]  # fmt: skip


async def test_0002_up_and_down_keeps_the_rows_of_0001(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url, "0001"), WAIT_S)
    assert not SUBTASK_COLUMNS_0002 & await inspect_db(database_url, subtask_columns)
    await run_sql(database_url, ROWS_0001)

    await asyncio.wait_for(upgrade(database_url, "0002"), WAIT_S)
    assert await inspect_db(database_url, version) == "0002"
    assert await inspect_db(database_url, table_names) == {*TABLES_0002, "alembic_version"}
    assert await inspect_db(database_url, subtask_columns) >= SUBTASK_COLUMNS_0002
    assert await inspect_db(database_url, subtask_rows) == [
        {"subtask_id": "s1", "status": "FAILED", "progress": 50.0, "reason": "", "confidence": None,
         "not_before": None, "deadline": None}
    ]  # fmt: skip
    assert await inspect_db(database_url, inbox_indexes) == [("ix_inbox_items_execution_id", ["execution_id"])]
    assert await inspect_db(database_url, subtask_indexes) == ["ix_execution_subtasks_execution_subtask"]

    await asyncio.wait_for(downgrade(database_url, "0001"), WAIT_S)
    assert await inspect_db(database_url, version) == "0001"
    assert await inspect_db(database_url, table_names) == {*TABLES, "alembic_version"}
    assert not SUBTASK_COLUMNS_0002 & await inspect_db(database_url, subtask_columns)
    assert await inspect_db(database_url, subtask_rows) == [{"subtask_id": "s1", "status": "FAILED", "progress": 50.0}]
    assert await inspect_db(database_url, subtask_indexes) == ["ix_execution_subtasks_execution_subtask"]

    await asyncio.wait_for(upgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, version) == HEAD
    assert await inspect_db(database_url, schema_diff) == []


def plan_and_agent_columns(conn: Connection) -> tuple[set[str], set[str]]:
    found = inspect(conn)
    return {c["name"] for c in found.get_columns("plans")}, {c["name"] for c in found.get_columns("agents")}


def execution_indexes(conn: Connection) -> list[str]:
    return sorted(str(index["name"]) for index in inspect(conn).get_indexes("executions"))


def plan_rows(conn: Connection) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(text("SELECT plan_id, title FROM plans"))]


async def test_0003_up_and_down_keeps_plans_and_executions(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url, "0002"), WAIT_S)
    await run_sql(database_url, ROWS_0001[:2])  # a plan and its execution

    await asyncio.wait_for(upgrade(database_url, "0003"), WAIT_S)
    plans, agents = await inspect_db(database_url, plan_and_agent_columns)
    assert "deleted_at" in plans
    assert "current" in agents
    assert "ix_executions_created" in await inspect_db(database_url, execution_indexes)
    assert await inspect_db(database_url, plan_rows) == [("p1", "t")]

    await asyncio.wait_for(downgrade(database_url, "0002"), WAIT_S)
    plans, agents = await inspect_db(database_url, plan_and_agent_columns)
    assert "deleted_at" not in plans
    assert "current" not in agents
    assert "ix_executions_created" not in await inspect_db(database_url, execution_indexes)
    assert await inspect_db(database_url, plan_rows) == [("p1", "t")]


async def test_the_migration_matches_the_models(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, schema_diff) == []


def inbox_columns(conn: Connection) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("inbox_items")}


def inbox_rows(conn: Connection) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(text("SELECT item_id, resolution FROM inbox_items"))]


INBOX_ROW = (
    "INSERT INTO inbox_items (item_id, execution_id, kind, title, reason, action, params, actions, status,"
    f" resolution, opened_at) VALUES ('i1', 'e1', 'escalation', 't', 'r', 'echo', '{{}}', '[]', 'closed', 'retried',"
    f" {TS})"
)


async def test_0004_up_and_down_keeps_the_inbox(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url, "0003"), WAIT_S)
    await run_sql(database_url, [*ROWS_0001[:2], INBOX_ROW])

    await asyncio.wait_for(upgrade(database_url, "0004"), WAIT_S)
    assert "resolution_params" in await inspect_db(database_url, inbox_columns)
    assert await inspect_db(database_url, inbox_rows) == [("i1", "retried")]

    await asyncio.wait_for(downgrade(database_url, "0003"), WAIT_S)
    assert "resolution_params" not in await inspect_db(database_url, inbox_columns)
    assert await inspect_db(database_url, inbox_rows) == [("i1", "retried")]


async def test_0005_adds_the_webhook_tables_and_takes_them_away(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url, "0004"), WAIT_S)
    await asyncio.wait_for(upgrade(database_url, "0005"), WAIT_S)
    assert await inspect_db(database_url, table_names) == {*TABLES_HEAD, "alembic_version"}
    assert await inspect_db(database_url, retyped_columns) == EVENTS_RETYPED_BY_0006[database_url.split(":")[0]]
    await asyncio.wait_for(downgrade(database_url, "0004"), WAIT_S)
    assert await inspect_db(database_url, table_names) == {*TABLES_0002, "alembic_version"}


def event_documents(conn: Connection) -> list[tuple[Any, Any, str]]:
    """Each stored event's and plan's document, read back, with its column's type."""
    found = []
    for table, key, column in (("execution_events", "stream_seq", "data"), ("plans", "plan_id", "plan")):
        kind = next(c["type"] for c in inspect(conn).get_columns(table) if c["name"] == column)
        for name, data in conn.execute(text(f"SELECT {key}, {column} FROM {table}")).all():
            found.append((name, data if isinstance(data, dict) else json.loads(data), type(kind).__name__))
    return found


async def test_0006_keeps_each_event_document_as_json_and_back(database_url: str) -> None:
    """On PostgreSQL jsonb to json and back, the stored documents unchanged; on SQLite nothing to do."""
    pg = database_url.startswith("postgresql")
    await asyncio.wait_for(upgrade(database_url, "0005"), WAIT_S)
    await run_sql(database_url, [EVENT_0005.format(ts=TS), PLAN_0005.format(ts=TS)])
    document = {"b": [1, 2.5, None], "a": "caf\u00e9"}
    plan = {"plan_id": "p1", "phases": [{"tasks": []}]}

    await asyncio.wait_for(upgrade(database_url, "0006"), WAIT_S)
    assert await inspect_db(database_url, event_documents) == [(7, document, "JSON"), ("p1", plan, "JSON")]
    assert await inspect_db(database_url, schema_diff) == []
    await asyncio.wait_for(downgrade(database_url, "0005"), WAIT_S)
    before = "JSONB" if pg else "JSON"
    assert await inspect_db(database_url, event_documents) == [(7, document, before), ("p1", plan, before)]
