import pytest

from planexe_ax.bus import Bus, ExecutionState, ExecutionStatus, decode_event, ensure_topology

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
