"""Several webhook delivery services on one read model: the lease holder consumes and delivers, the others stand
by; one that stops cleanly hands over at once (a killed one: tests/e2e/test_webhook_recovery.py)."""

from __future__ import annotations

import asyncio

import pytest

from planexe_ax.bus import Subjects, connect
from planexe_ax.config import Settings
from planexe_ax.webhooks import WebhookService
from tests.helpers.eventually import eventually

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

WAIT_S = 30.0


async def test_one_service_delivers_and_a_standby_takes_over_when_it_stops(
    nats_url: str, settings: Settings, postgres_url: str
) -> None:
    settings = settings.model_copy(update={"leader_ttl_s": 30.0, "database_url": postgres_url})
    admin = await connect(settings, nats_url, "test", role="admin")  # provisions the leases bucket with this TTL
    buses = [await connect(settings, nats_url, f"webhooks-{n}", role="webhooks") for n in "ab"]
    a, b = (WebhookService(bus, settings, holder=name) for bus, name in zip(buses, "ab", strict=True))
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    try:
        await a.start()
        await b.start()
        assert (a.leading, b.leading) == (True, False)
        kv = await admin.js.key_value(admin.subjects.leases_bucket)
        assert (await kv.get(Subjects.webhooks_lease(Subjects.WEBHOOK_EVENTS))).value == b"a"
        run_a, run_b = asyncio.create_task(a.run(stop_a)), asyncio.create_task(b.run(stop_b))

        stop_a.set()  # a clean stop deletes the key: b need not wait out the 30 s TTL
        await asyncio.wait_for(run_a, WAIT_S)

        async def b_leads() -> bool:
            return b.leading

        await eventually(b_leads, timeout=10)
        assert (await kv.get(Subjects.webhooks_lease(Subjects.WEBHOOK_EVENTS))).value == b"b"
        assert (a.terms, b.terms) == (1, 1)
        stop_b.set()
        await asyncio.wait_for(run_b, WAIT_S)
    finally:
        stop_a.set()
        stop_b.set()
        for service in (a, b):
            await service.close()
        for bus in (*buses, admin):
            await bus.close()
