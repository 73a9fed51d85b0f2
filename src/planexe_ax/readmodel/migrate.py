"""Run the read-model migrations programmatically: no alembic.ini, the scripts ship inside the package."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from planexe_ax.readmodel.db import make_engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(url: str) -> Config:
    """An alembic ``Config`` pointing at the packaged scripts.

    Args:
        url: The async SQLAlchemy URL, used only when alembic has to connect by itself.

    Returns:
        The configuration; ``attributes["connection"]`` may carry a connection to reuse.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the read model at ``url`` up to ``revision``.

    Args:
        url: ``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``.
        revision: Target revision; ``head`` is the newest.
    """
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    """Take the read model at ``url`` down to ``revision``.

    At ``base`` the alembic version table is dropped too, so no table is left.

    Args:
        url: ``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``.
        revision: Target revision; ``base`` removes every table.
    """
    await _run(url, "downgrade", revision)


async def _run(url: str, direction: str, revision: str) -> None:
    config = alembic_config(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_sync, config, direction, revision)
    finally:
        await engine.dispose()
    log.info("read model migrated", extra={"direction": direction, "revision": revision})


def _run_sync(connection: Connection, config: Config, direction: str, revision: str) -> None:
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
        return
    command.downgrade(config, revision)
    if revision == "base":
        connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
