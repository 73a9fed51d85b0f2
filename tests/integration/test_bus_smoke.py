import os
from pathlib import Path

import pytest

from planexe_ax.bus import Bus, EmbeddedNats, ExecutionState, ExecutionStatus, decode_event, ensure_topology

pytestmark = pytest.mark.nats


async def test_topology_is_idempotent_and_events_carry_traceparent(bus: Bus) -> None:
    await ensure_topology(bus.js, bus.subjects, bus.settings)
    event = ExecutionState(execution_id="e1", status=ExecutionStatus.RUNNING)
    first = await bus.publish_event(event)
    again = await bus.publish_event(event)
    assert again.duplicate
    assert again.seq == first.seq
    stored = await bus.js.get_msg(bus.subjects.events_stream, first.seq)
    assert stored.headers is not None
    assert stored.headers["traceparent"].startswith("00-")
    assert stored.headers["Nats-Msg-Id"] == event.event_id
    assert stored.data is not None
    assert decode_event(stored.data) == event


async def test_postgres_fixture_gives_an_empty_database(postgres_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("select count(*) from pg_tables where schemaname='public'") == 0
    finally:
        await conn.close()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="reads the server's environment from /proc")
async def test_the_embedded_server_gets_half_the_cores_and_a_lazier_collector_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.delenv("GOGC", raising=False)
    async with EmbeddedNats(tmp_path / "tuned", auth=False) as server:
        assert server.proc is not None
        tuned = _environ(server.proc.pid)
    assert tuned["GOMAXPROCS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert tuned["GOGC"] == "400"

    monkeypatch.setenv("GOMAXPROCS", "3")
    monkeypatch.setenv("GOGC", "off")
    async with EmbeddedNats(tmp_path / "told", auth=False) as server:
        assert server.proc is not None
        told = _environ(server.proc.pid)
    assert (told["GOMAXPROCS"], told["GOGC"]) == ("3", "off")

    async with EmbeddedNats(tmp_path / "given", auth=False, environ={"GOGC": "200"}) as server:
        assert server.proc is not None
        given = _environ(server.proc.pid)
    assert given["GOGC"] == "200", "an environment given to the server replaces this process's"
    assert given["GOMAXPROCS"] == tuned["GOMAXPROCS"]
