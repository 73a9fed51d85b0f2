"""Fixtures: a real nats-server per session, a unique namespace per test, SQLite and PostgreSQL read models."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from planexe_ax.bus import Bus, EmbeddedNats, connect, tracing
from planexe_ax.config import Settings
from tests.helpers.gateway import Stack, running_stack
from tests.helpers.postgres import create_database, drop_database, postgres_server
from tests.helpers.spans import EXPORTED, PROVIDER


@pytest.fixture(scope="session", autouse=True)
def small_stream_limits() -> Iterator[None]:
    """Keep each namespace's stream byte limits small: the server reserves them, and tests make many namespaces.

    Set in the environment, so that the services and commands tests start as processes use them too.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLANEXE_EVENTS_MAX_BYTES", str(32 * 1024 * 1024))
        patch.setenv("PLANEXE_STREAM_MAX_BYTES", str(4 * 1024 * 1024))
        yield


@pytest.fixture(scope="session")
def nats_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nats")


@pytest.fixture(scope="session")
def nats_auth(nats_store: Path) -> Path:
    """The identities of the session's nats-server (operator mode): made before it starts."""
    identities = EmbeddedNats(nats_store).identities
    assert identities is not None
    return identities.folder


@pytest.fixture(scope="session", autouse=True)
def nats_auth_for_every_process(nats_auth: Path) -> Iterator[None]:
    """Commands and services a test starts find the session server's identities (PLANEXE_NATS_AUTH_DIR)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLANEXE_NATS_AUTH_DIR", str(nats_auth))
        yield


@pytest.fixture(scope="session")
def nats_url(nats_store: Path) -> Iterator[str]:
    """One nats-server for the session, in operator mode; tests keep apart by namespace.

    Killed at the end: its store is thrown away, and a graceful stop of a server holding every test's streams
    can take the whole 10 s grace of ``stop_sync``.
    """
    server = EmbeddedNats(nats_store)
    server.start_sync()
    yield server.url
    server.kill()


@pytest.fixture
def settings(tmp_path: Path, nats_auth: Path) -> Settings:
    """Settings with a namespace of this test's own, so tests never see each other's messages.

    Services connect with their own identities, signed with the session server's account key.
    """
    return Settings(
        namespace=f"t{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path / "data",
        nats_auth_dir=nats_auth,
        ack_wait_s=5.0,
        heartbeat_s=0.5,
        agent_ttl_s=3.0,
        lag_scale_s=0.0,
    )


@pytest.fixture
async def bus(nats_url: str, settings: Settings) -> AsyncIterator[Bus]:
    connected = await connect(settings, nats_url, "test", role="admin")
    yield connected
    await connected.close()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str | None]:
    with postgres_server() as url:
        yield url


@pytest.fixture
async def postgres_url(postgres_admin_url: str | None) -> AsyncIterator[str]:
    if postgres_admin_url is None:
        pytest.skip("no PostgreSQL: set PLANEXE_TEST_DATABASE_URL or install initdb/pg_ctl")
    url = await create_database(postgres_admin_url)
    yield url
    await drop_database(postgres_admin_url, url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'readmodel.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'readmodel.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def stack(nats_url: str, settings: Settings, postgres_url: str) -> AsyncIterator[Stack]:
    """Coordinator, projector, built-in agents and the gateway on a free port, on PostgreSQL."""
    async with running_stack(settings, nats_url, postgres_url) as started:
        yield started


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans made in this process during the test, every one sampled and kept (tests/helpers/spans.py)."""
    EXPORTED.clear()
    tracing.enable(PROVIDER)
    try:
        yield EXPORTED
    finally:
        tracing.disable()
