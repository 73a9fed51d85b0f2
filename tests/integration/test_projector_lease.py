"""Several projectors on one read model: the lease holder writes, a standby takes over when it dies."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from planexe_ax.bus import Subjects, connect
from planexe_ax.config import Settings
from planexe_ax.projector import Projector
from planexe_ax.readmodel import table_dump
from tests.helpers.eventually import eventually
from tests.helpers.projector_factories import people_scenario
from tests.integration.test_projector_service import publish_all, scenario

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

WAIT_S = 30.0


async def test_a_standby_projector_takes_over_from_a_dead_one(
    nats_url: str, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"leader_ttl_s": 1.0})
    admin = await connect(settings, nats_url, "test", role="admin")  # provisions the leases bucket with this TTL
    buses = [await connect(settings, nats_url, f"projector-{n}", role="projector") for n in "ab"]
    first, second = scenario("e1")[:9], [*scenario("e1")[9:], *people_scenario("e2")]
    a, b = (Projector(bus, database_url, holder=name) for bus, name in zip(buses, "ab", strict=True))
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    try:
        await a.start()
        await b.start()
        assert (a.leading, b.leading) == (True, False)
        run_a, run_b = asyncio.create_task(a.run(stop_a)), asyncio.create_task(b.run(stop_b))
        mid = await publish_all(admin, first)
        await a.wait_for_seq(mid, WAIT_S)
        assert (b.leading, b.batches, b.last_seq) == (False, 0, 0)  # the standby wrote nothing

        # Kill a: its connection drops as a killed process's does (its lease is not released: it expires),
        # and whatever it was doing ends.
        await buses[0].close()
        run_a.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # its watchers saw the connection go
            await run_a
        last = await publish_all(admin, second)
        await b.wait_for_seq(last, WAIT_S)
        assert (b.leading, b.terms) == (True, 1)
        assert (a.projected, b.projected) == (len(first), len(second))  # every event applied once, none twice
        live = await table_dump(b.sessions)
        assert [row["event_id"] for row in live["execution_events"]] == [e.event_id for e in first + second]

        replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.sqlite3'}"
        async with Projector(admin, replay_url, durable="projector-replay") as replay:
            await asyncio.wait_for(replay.run_until_idle(), WAIT_S)
            assert await table_dump(replay.sessions) == live

        stop_b.set()
        await asyncio.wait_for(run_b, WAIT_S)
        kv = await admin.js.key_value(admin.subjects.leases_bucket)
        lease = Subjects.projector_lease(Subjects.PROJECTOR_EVENTS)
        await eventually(lambda: _gone(kv, lease), timeout=WAIT_S)  # b stepped down: the next one need not wait
    finally:
        stop_a.set()
        stop_b.set()
        for projector in (a, b):
            await projector.close()
        for bus in (*buses, admin):
            await bus.close()


async def _gone(kv: KeyValue, key: str) -> bool:
    try:
        await kv.get(key)
    except KeyNotFoundError:  # deleted (KeyDeletedError is one) or expired: nobody holds it
        return True
    return False
