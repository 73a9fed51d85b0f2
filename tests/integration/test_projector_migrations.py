"""The read-model migrations on SQLite and PostgreSQL: up, down to nothing, up again, and in step with the models."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from planexe_ax.projector import downgrade, make_engine, upgrade
from planexe_ax.projector.models import Base

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


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, table_names) == {*TABLES, "alembic_version"}
    await asyncio.wait_for(upgrade(database_url), WAIT_S)  # at head already: nothing to do

    await asyncio.wait_for(downgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, table_names) == set()

    await asyncio.wait_for(upgrade(database_url, "0001"), WAIT_S)
    assert await inspect_db(database_url, table_names) == {*TABLES, "alembic_version"}


async def test_the_migration_matches_the_models(database_url: str) -> None:
    await asyncio.wait_for(upgrade(database_url), WAIT_S)
    assert await inspect_db(database_url, schema_diff) == []
