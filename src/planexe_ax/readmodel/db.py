"""Engines and sessions of the read model: SQLite (aiosqlite) for the embedded default, PostgreSQL (asyncpg)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000

# sqlite3 binds a str, an int or a float as it is, but looks for an adapter for any other value, None included: a
# tuple built, the registry searched, then two attribute lookups on the value and the protocol, for each NULL of
# each row. Registered, None is adapted to itself by one look-up and a call in C (``{}.get(None)`` is None). The
# projector's bulk writes bind several NULLs a row: 2.9 % fewer instructions replaying its bench stream.
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))

Sessions = async_sessionmaker[AsyncSession]
"""A session factory of the read model, as :func:`make_session_factory` makes it."""
ReadModelError = SQLAlchemyError
"""The base of every error a read of the read model raises (the database away, a failed query)."""


def make_engine(url: str) -> AsyncEngine:
    """Create the async engine of the read model.

    On SQLite, every connection gets foreign keys on, the WAL journal and a busy timeout, and SQLAlchemy
    (not the sqlite3 module) issues ``BEGIN IMMEDIATE``, so transactions and savepoints behave as on PostgreSQL.
    On PostgreSQL, pooled connections are checked before use (``pool_pre_ping``).

    Args:
        url: A SQLAlchemy async URL, ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``.

    Returns:
        The engine; dispose of it with ``await engine.dispose()``.
    """
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    engine = create_async_engine(url)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy own BEGIN/COMMIT: the sqlite3 module's implicit transactions break SAVEPOINT.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
        # fails at once with "database is locked" when another connection writes, busy timeout or not.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: AsyncEngine) -> Sessions:
    """A session factory whose objects stay usable after commit.

    Args:
        engine: From :func:`make_engine`.

    Returns:
        ``async_sessionmaker(engine, expire_on_commit=False)``; open one session per batch or request.
    """
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def read_model(url: str) -> AsyncIterator[Sessions]:
    """Sessions of the read model at ``url`` for the length of a ``with`` block (the engine disposed after).

    Args:
        url: As for :func:`make_engine`.

    Yields:
        A session factory.
    """
    engine = make_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()
