"""kill -9 of the webhook delivery service mid-run loses nothing: a new process delivers the rest, in order, and
so does a standby that was running beside it, without a second sender while the first one lived.

The kill may land between the headers and the body of a POST (httpx writes them separately): the receiver
then sees a request cut short, which is no delivery and no bad signature; the next process sends it whole.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from planexe_ax.config import Settings
from planexe_ax.webhooks.service import PARALLEL
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document, running_stack
from tests.helpers.processes import Service
from tests.helpers.webhook_receiver import Receiver
from tests.integration.test_webhooks import all_events, deliveries

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres]
READY = "webhook delivery started"


@pytest.fixture
async def stack(settings: Settings, nats_url: str, postgres_url: str) -> AsyncIterator[Stack]:
    async with running_stack(settings.model_copy(update={"fetch_allow": ["127.0.0.1"]}), nats_url, postgres_url) as s:
        yield s


def delivery_env(stack: Stack) -> dict[str, str]:
    settings = stack.settings
    return {
        "PLANEXE_NATS_URL": str(settings.nats_url),
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_identities_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": str(settings.database_url),
        "PLANEXE_FETCH_ALLOW": "127.0.0.1",
        "PLANEXE_WEBHOOK_BACKOFF_INITIAL_S": "0.05",
        "PLANEXE_WEBHOOK_BACKOFF_MAX_S": "0.2",
        "PLANEXE_WEBHOOK_POLL_S": "0.1",
    }


async def started(stack: Stack, log: Path) -> Service:
    service = Service(["serve", "webhooks"], delivery_env(stack), log)
    await asyncio.to_thread(service.wait_for, READY)
    return service


async def test_kill_9_of_the_delivery_service_loses_no_event(stack: Stack, tmp_path: Path) -> None:
    receiver = Receiver().start()
    first = await started(stack, tmp_path / "webhooks-1.log")
    second: Service | None = None
    try:
        hook = (await stack.client.post("/api/webhooks", json={"url": receiver.url})).json()
        receiver.secret = hook["secret"]
        assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
        executions = []
        for _ in range(2):
            answer = await stack.client.post("/api/executions", json={"plan_id": example_document()["plan_id"]})
            executions.append(answer.json()["execution_id"])

        async def some_arrived() -> bool:
            return len(receiver.received) >= 20

        await eventually(some_arrived, timeout=30)
        first.kill()
        killed_at = len(receiver.received)
        second = await started(stack, tmp_path / "webhooks-2.log")

        async def everything_arrived() -> list[str] | None:
            ids: list[str] = []
            for execution_id in executions:
                detail = (await stack.client.get(f"/api/executions/{execution_id}")).json()
                if detail["status"] != "COMPLETED":
                    return None
                page = await stack.client.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})
                ids += [e["event_id"] for e in page.json()["items"]]
            return ids if set(ids) <= set(receiver.received) else None

        ids = await eventually(everything_arrived, timeout=90)
    finally:
        if second is not None:
            assert second.terminate() == 0
        receiver.stop()

    assert killed_at < len(ids), "the kill came before the end of the run"
    assert receiver.bad == [], "every whole request verified"
    assert set(receiver.received) == set(ids)
    for execution_id in executions:
        seqs = [receiver.received[i]["seq"] for i in receiver.arrival
                if receiver.received[i]["data"]["execution_id"] == execution_id]  # fmt: skip
        assert seqs == sorted(seqs)


async def start_two(stack: Stack) -> list[str]:
    assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
    executions = []
    for _ in range(2):
        answer = await stack.client.post("/api/executions", json={"plan_id": example_document()["plan_id"]})
        executions.append(answer.json()["execution_id"])
    return executions


async def test_a_standby_delivery_service_takes_over_from_a_killed_one(stack: Stack, tmp_path: Path) -> None:
    receiver = Receiver().start()
    leader = await started(stack, tmp_path / "webhooks-a.log")
    standby = await started(stack, tmp_path / "webhooks-b.log")
    try:
        assert '"leading": true' in leader.log.read_text()
        assert '"leading": false' in standby.log.read_text()
        hook = (await stack.client.post("/api/webhooks", json={"url": receiver.url})).json()
        receiver.secret = hook["secret"]
        executions = await start_two(stack)

        async def some_arrived() -> bool:
            return len(receiver.received) >= 20

        await eventually(some_arrived, timeout=30)
        assert receiver.duplicates == 0, "one sender while the leader lives"
        leader.kill()
        killed_at = len(receiver.received)
        await asyncio.to_thread(standby.wait_for, '"msg": "leading"', 30)

        async def everything_arrived() -> list[dict[str, object]] | None:
            events = []
            for execution_id in executions:
                if (await stack.client.get(f"/api/executions/{execution_id}")).json()["status"] != "COMPLETED":
                    return None
                events += await all_events(stack, execution_id)
            return events if {e["event_id"] for e in events} <= set(receiver.received) else None

        events = await eventually(everything_arrived, timeout=90)
        log = await deliveries(stack, hook["webhook_id"])
    finally:
        assert standby.terminate() == 0
        receiver.stop()

    ids = [str(e["event_id"]) for e in events]
    assert killed_at < len(ids), "the kill came before the end of the run"
    assert receiver.bad == [], "every whole request verified"
    assert set(receiver.received) == set(ids), "each webhook-id once after the receiver's de-duplication"
    assert sorted(str(d["event_id"]) for d in log) == sorted(ids), "one delivery per event in the log"
    assert {d["status"] for d in log} == {"delivered"}
    # At least once: only what the killed leader had sent and not recorded may come twice.
    assert receiver.duplicates <= PARALLEL
    for execution_id in executions:
        seqs = [receiver.received[i]["seq"] for i in receiver.arrival
                if receiver.received[i]["data"]["execution_id"] == execution_id]  # fmt: skip
        assert seqs == sorted(seqs)


def test_a_request_cut_after_its_headers_is_no_delivery_and_no_bad_signature() -> None:
    receiver = Receiver(secret="whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").start()
    try:
        with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
            sock.sendall(
                b"POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 50\r\nwebhook-id: evt_1\r\n"
                b"webhook-timestamp: %d\r\nwebhook-signature: v1,c2ln\r\n\r\n" % int(time.time())
            )
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b"", "the receiver closes a cut request unanswered"
    finally:
        receiver.stop()
    assert (receiver.cut, receiver.bad, receiver.received) == (1, [], {})
