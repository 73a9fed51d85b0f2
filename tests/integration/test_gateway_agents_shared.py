"""HTTP agents behind two gateways on one bus: the leases live in KV ``ax-http-leases``, so either gateway serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats.errors
import pytest
from nats.js.errors import KeyNotFoundError

from planexe_ax.bus import Bus, Identities, Subjects, connect
from planexe_ax.bus.http_leases import ACK, NAK, PROGRESS, HttpLease, HttpLeases
from planexe_ax.bus.work import OfferSource, every
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.agent_bridge import AgentBridge
from planexe_ax.ws_gateway.server import GatewayServer
from tests.helpers.agents import offer
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack
from tests.helpers.identities import agent_creds, client
from tests.integration.test_gateway_agents import HTTP_ACTION, lease, post, register, report, start_execution

pytestmark = [pytest.mark.nats, pytest.mark.postgres]


@contextlib.asynccontextmanager
async def second_gateway(stack: Stack) -> AsyncIterator[tuple[GatewayServer, httpx.AsyncClient]]:
    """Gateway B: another process's worth of gateway on the same bus and read model, with the same tokens."""
    server = GatewayServer(stack.settings, stack.settings.nats_url or "", host="127.0.0.1", port=0)
    try:
        url = await server.start()
        async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {stack.token}"}) as b:
            yield server, b
    finally:
        await server.stop()


def bridge_of(server: GatewayServer) -> AgentBridge:
    found: AgentBridge = server.app.state.gateway.extras["agent_bridge"]
    return found


async def subtask_results(client: httpx.AsyncClient, execution_id: str) -> list[object]:
    events = await client.get(f"/api/executions/{execution_id}/events", params={"type": "subtask_result"})
    items: list[object] = events.json()["items"]
    return items


async def test_work_taken_from_one_gateway_is_reported_through_the_other(stack: Stack, bus: Bus) -> None:
    async with second_gateway(stack) as (_, b):
        assert (await register(stack.client, "larry-1")).status_code == 201
        execution_id = await start_execution(stack)
        offer = await lease(stack.client, "larry-1")  # from gateway A
        stored = await HttpLeases(bus).get((execution_id, offer["subtask_id"], 1))
        assert stored is not None
        assert (stored[0].agent_id, stored[0].reply.startswith("$JS.ACK.")) == ("larry-1", True)
        await stack.server.stop()  # A goes away; B is running, so A leaves the lease to it (no nak)
        sub = await bus.js.pull_subscribe_bind(Subjects.capability_consumer(HTTP_ACTION), bus.subjects.tasks_stream)
        with pytest.raises(nats.errors.TimeoutError):  # not given back: nothing to redeliver
            await sub.fetch(1, timeout=1)
        await sub.unsubscribe()

        beat = await post(b, offer, report(offer, "larry-1", "heartbeat"))
        assert beat.status_code == 200, beat.text
        assert beat.json()["lease"]["lease_id"] == offer["lease"]["lease_id"]
        progress = await post(b, offer, report(offer, "larry-1", "progress", percent=50, message="half"))
        assert progress.status_code == 200, progress.text
        done = await post(b, offer, report(offer, "larry-1", "task_complete", output={"n": 1}))
        assert done.status_code == 200, done.text
        assert (done.json()["subtask_status"], done.json()["lease"]) == ("COMPLETED", None)
        again = await post(b, offer, report(offer, "larry-1", "task_complete", output={"n": 1}))
        assert (again.json()["duplicate"], again.json()["seq"]) == (True, done.json()["seq"])

        async def completed() -> bool:
            detail = (await b.get(f"/api/executions/{execution_id}")).json()
            return bool(detail["status"] == "COMPLETED")

        await eventually(completed, timeout=5)
        assert len(await subtask_results(b, execution_id)) == 1
        ended = await HttpLeases(bus).get((execution_id, offer["subtask_id"], 1))
        assert ended is not None
        assert ended[0].ended is not None
        assert ended[0].ended.event_type == "task_complete"


async def test_an_outcome_posted_to_both_gateways_is_stored_once(stack: Stack) -> None:
    async with second_gateway(stack) as (_, b):
        await register(stack.client, "larry-1")
        execution_id = await start_execution(stack)
        offer = await lease(b, "larry-1")  # registered through A, leased through B
        started = await post(stack.client, offer, report(offer, "larry-1", "started"))
        assert started.status_code == 200, started.text
        first = await post(stack.client, offer, report(offer, "larry-1", "task_complete", output={}))
        second = await post(b, offer, report(offer, "larry-1", "task_complete", output={}))
        assert (first.status_code, second.status_code) == (200, 200)
        assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
        late = await post(b, offer, report(offer, "larry-1", "task_error", error="too late"))
        assert late.status_code == 409
        assert "ended with task_complete" in late.json()["detail"]
        assert len(await subtask_results(stack.client, execution_id)) == 1


async def test_a_lease_that_expires_goes_back_to_the_queue_for_any_gateway(stack: Stack) -> None:
    async with second_gateway(stack) as (server_b, b):
        for bridge in (stack.gateway.extras["agent_bridge"], bridge_of(server_b)):
            bridge.window_s = 0.5  # minutes in production; short here
        await register(stack.client, "larry-1")
        await register(b, "marie-1", name="Marie")
        execution_id = await start_execution(stack)
        first = await lease(stack.client, "larry-1")  # Larry takes it from A, then goes quiet

        second = await lease(b, "marie-1")  # given back (nak) by one gateway, taken by Marie from B
        assert (second["subtask_id"], second["lease"]["attempt"]) == (first["subtask_id"], 1)
        assert second["lease"]["delivered"] == 2
        late = await post(stack.client, first, report(first, "larry-1", "task_complete", output={}))
        assert late.status_code == 409
        assert "another agent" in late.json()["detail"]
        done = await post(stack.client, second, report(second, "marie-1", "task_complete", output={"by": "marie"}))
        assert done.status_code == 200, done.text
        assert done.json()["subtask_status"] == "COMPLETED"
        assert len(await subtask_results(stack.client, execution_id)) == 1


async def test_only_the_gateway_writes_the_http_leases_bucket(
    bus: Bus, nats_url: str, nats_auth: Path, tmp_path: Path
) -> None:
    bucket = bus.subjects.http_leases_bucket
    subject = f"$KV.{bucket}.seen.larry-1"
    identities = Identities.load(nats_auth)
    for role in ("projector", "builtin-agents", "operator"):
        async with client(nats_url, identities.role_creds(role, bus.subjects)) as service:
            with pytest.raises(nats.errors.TimeoutError):  # the server drops it: no stream ever acks
                await service.nc.jetstream().publish(subject, b"{}", timeout=1)
            await service.refused(subject)
    creds = agent_creds(nats_auth, bus.subjects, "larry-1", ["echo"], tmp_path)
    async with client(nats_url, creds) as agent:
        read = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.seen.larry-1"
        await agent.nc.publish(read, b"", reply=agent.nc.new_inbox())
        await agent.refused(read)
    with pytest.raises(KeyNotFoundError):
        await (await HttpLeases(bus).kv()).get("seen.larry-1")
    async with client(nats_url, identities.role_creds("gateway", bus.subjects)) as gateway:
        ack = await gateway.nc.jetstream().publish(subject, b"{}", timeout=2)
        assert ack.stream == f"KV_{bucket}"
        assert gateway.errors == []


def test_a_lease_record_round_trips() -> None:
    record = HttpLease.model_validate(
        {
            "offer": {
                "execution_id": "e1",
                "plan_id": "p1",
                "task_id": "t1",
                "subtask_id": "s1",
                "attempt": 2,
                "action": "a",
            },
            "agent_id": "larry-1",
            "reply": "$JS.ACK.AX_TASKS.agents-a.1.2.3.4.0",
            "report_key": "00" * 32,
            "future_field": "ignored",
        }
    )
    assert record.key == ("e1", "s1", 2)
    assert HttpLease.model_validate_json(record.model_dump_json()) == record


async def test_another_gateways_connection_extends_acks_and_naks_an_offer_by_its_ack_subject(
    nats_url: str, settings: Settings
) -> None:
    quick = settings.model_copy(update={"ack_wait_s": 1.0})
    first = await connect(quick, nats_url, "gateway-a", role="gateway")
    second = await connect(quick, nats_url, "gateway-b", role="gateway", provision=False)
    coordinator = await connect(quick, nats_url, "coordinator", role="coordinator", provision=False)
    source = OfferSource(first)
    done = asyncio.Event()
    try:
        durable = Subjects.capability_consumer("echo")
        await source.ensure("larry-1", ["echo"])
        await coordinator.publish_offer(offer("echo", n=1))
        await coordinator.publish_offer(offer("echo", n=2))
        kept, lapsed = await source.fetch(durable, 2), await source.fetch(durable, 2)
        assert kept is not None
        assert lapsed is not None
        leases = HttpLeases(second)  # the other gateway: it knows only the ack subjects

        async def extend() -> None:
            await leases.settle(kept.reply, PROGRESS)

        keeper = asyncio.create_task(every(0.3, extend, done, lambda exc: None))
        again = await source.fetch(durable, 3 * quick.ack_wait_s)  # only the offer nobody extended comes back
        assert again is not None
        assert (again.offer.subtask_id, again.delivered) == ("s2", 2)
        done.set()
        await keeper
        await leases.settle(kept.reply, ACK)
        await leases.settle(again.reply, NAK)
        back = await source.fetch(durable, 2)  # given back at once, well before the ack wait
        assert back is not None
        assert (back.offer.subtask_id, back.delivered) == ("s2", 3)
        await back.finish()
        assert await source.fetch(durable, 1.5 * quick.ack_wait_s) is None, "the acked offer is gone for good"
    finally:
        done.set()
        await source.close()
        for bus in (first, second, coordinator):
            await bus.close()
