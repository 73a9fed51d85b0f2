"""The WebSocket stream of one execution: snapshot, live events, resuming after a sequence, shared feeds, resync."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import planexe_ax
from planexe_ax.bus import SubtaskProgress
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.stream import Feed, StreamHub
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, running_stack
from tests.helpers.nats_server import start_nats

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

PROSPECTING = Path(planexe_ax.__file__).parent / "examples" / "prospecting.json"
GATED_TASK = "task_1_1"
"""Waits for a person's approval: the run cannot end before the test approves it."""
WAIT_S = 10.0


async def gated_execution(stack: Stack) -> str:
    """Start the prospecting plan with an approval gate on its first task; return the execution id."""
    plan = json.loads(PROSPECTING.read_text())
    plan["plan_id"] = "prospecting-gated"
    for task in (t for phase in plan["phases"] for t in phase["tasks"]):
        task["approval_required"] = task["task_id"] == GATED_TASK
    assert (await stack.client.post("/api/plans", json=plan)).status_code in (200, 201)
    response = await stack.client.post("/api/executions", json={"plan_id": plan["plan_id"]})
    assert response.status_code == 201, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


async def approve_gate(stack: Stack, execution_id: str) -> None:
    """Approve the gated task once its inbox item shows."""

    async def item() -> str | None:
        items = (await stack.client.get("/api/inbox", params={"execution_id": execution_id})).json()["items"]
        return next((i["item_id"] for i in items if i["task_id"] == GATED_TASK), None)

    item_id = await eventually(item)
    response = await stack.client.post(f"/api/inbox/{item_id}", json={"action": "approve"})
    assert response.status_code == 200, response.text


def stream_url(stack: Stack, execution_id: str, after_seq: int | str | None = None) -> str:
    url = f"{stack.ws_url}/api/executions/{execution_id}/stream?token={stack.token}"
    return url if after_seq is None else f"{url}&after_seq={after_seq}"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return frame


async def events_until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """Event frames up to and including the first of type ``last`` (``completed``: the COMPLETED state)."""
    events: list[dict[str, Any]] = []
    while True:
        frame = await receive(ws)
        assert frame["kind"] == "event", frame
        events.append(frame)
        if last == "completed" and frame["type"] == "execution_state" and frame["data"]["status"] == "COMPLETED":
            return events
        if frame["type"] == last:
            return events


async def stored_seqs(stack: Stack, execution_id: str, up_to: int) -> list[int]:
    """The stream sequences of the execution's stored events up to ``up_to``, read from the REST API once projected.

    Each once: the API lists a task's move that rode in a subtask's decision on its own, at the same sequence.
    """
    await stack.gateway.wait_projected(up_to)
    seqs: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await stack.client.get(f"/api/executions/{execution_id}/events", params=params)).json()
        seqs.extend(item["seq"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return sorted({seq for seq in seqs if seq <= up_to})


async def close_code(ws: ClientConnection) -> int | None:
    """The code of the server's close, once the frames sent before it are read."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(WAIT_S):
            while True:
                await ws.recv()
    return ws.close_code


async def texts_until(ws: ClientConnection, seq: int) -> list[str]:
    """The text frames a client is sent up to and including the event of sequence ``seq``."""
    texts: list[str] = []
    while not texts or json.loads(texts[-1]).get("seq", 0) < seq:
        text = await asyncio.wait_for(ws.recv(), WAIT_S)
        assert isinstance(text, str)
        texts.append(text)
    return texts


def seqs_of(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events]


async def test_snapshot_then_live_events_until_completed(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    async with connect(stream_url(stack, execution_id)) as ws:
        snapshot = await receive(ws)
        assert snapshot["kind"] == "snapshot"
        assert snapshot["execution"]["execution_id"] == execution_id
        assert len([t for phase in snapshot["tree"]["phases"] for t in phase["tasks"]]) == 8
        await approve_gate(stack, execution_id)
        events = await events_until(ws, "completed")

    seqs = seqs_of(events)
    assert seqs == sorted(set(seqs))
    assert seqs[0] > snapshot["last_seq"]
    assert {event["data"]["execution_id"] for event in events} == {execution_id}
    stored = await stored_seqs(stack, execution_id, seqs[-1])
    assert [seq for seq in stored if seq > snapshot["last_seq"]] == seqs
    detail = (await stack.client.get(f"/api/executions/{execution_id}")).json()
    assert detail["status"] == "COMPLETED"
    async with connect(stream_url(stack, execution_id)) as ws:
        final = await receive(ws)
        await ws.send(json.dumps({"kind": "ping"}))
        assert await receive(ws) == {"kind": "pong"}  # the run is over: nothing else comes
    assert final["kind"] == "snapshot"
    assert final["last_seq"] >= seqs[-1]
    assert final["execution"] == (await stack.client.get(f"/api/executions/{execution_id}")).json()
    assert final["tree"] == (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    assert final["execution"]["status"] == "COMPLETED"
    subtasks = [s for phase in final["tree"]["phases"] for t in phase["tasks"] for s in t["subtasks"]]
    assert {s["status"] for s in subtasks} == {"COMPLETED"}


async def test_reconnect_after_seq_gets_every_event_once(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    async with connect(stream_url(stack, execution_id, after_seq=0)) as ws:
        first = await events_until(ws, "inbox_opened")  # from the execution's first event
    await approve_gate(stack, execution_id)  # the run goes on while no one watches
    async with connect(stream_url(stack, execution_id, after_seq=first[-1]["seq"])) as ws:
        second = await events_until(ws, "completed")

    assert first[0]["type"] == "execution_created"
    both = seqs_of(first) + seqs_of(second)
    assert both == sorted(set(both)), "a sequence came twice or out of order"
    assert both == await stored_seqs(stack, execution_id, both[-1]), "an event is missing"


async def test_clients_of_one_execution_share_one_subscription(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    hub: StreamHub = stack.gateway.extras["hub"]
    async with connect(stream_url(stack, execution_id)) as one, connect(stream_url(stack, execution_id, 0)) as two:
        snapshot = await receive(one)
        await eventually(lambda: _true(hub.clients_of() == {execution_id: 2}))
        await approve_gate(stack, execution_id)
        seen_by_one, seen_by_two = await asyncio.gather(events_until(one, "completed"), events_until(two, "completed"))
        assert hub.clients_of() == {execution_id: 2}
        assert stack.gateway.gauges["websockets_open"]() == 2

    stored = await stored_seqs(stack, execution_id, seqs_of(seen_by_two)[-1])
    assert seqs_of(seen_by_two) == stored
    assert seqs_of(seen_by_one) == [seq for seq in stored if seq > snapshot["last_seq"]]
    await eventually(lambda: _true(hub.clients_of() == {}))  # the last client gone, the feed is dropped


async def test_an_event_handed_out_during_the_backfill_is_neither_lost_nor_repeated(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    hub: StreamHub = stack.gateway.extras["hub"]
    backfilled: list[int] = []
    during: list[int] = []

    async def send(text: str) -> None:
        backfilled.append(json.loads(text)["seq"])
        if not during:  # the first stored event is being sent: one more is published and handed out now
            during.append((await stack.gateway.bus.publish_event(progress(execution_id))).seq)
            await fanned_out(listener.feed, during[0])

    async with hub.listen(execution_id) as listener:
        covered = await listener.feed.catch_up(listener, 0, send)
        queued = [seq for seq, _ in listener.frames]

    assert during[0] > covered  # it came after the point the backfill stops at
    seqs = backfilled + [seq for seq in queued if seq > covered]
    assert during[0] in seqs
    assert seqs == await stored_seqs(stack, execution_id, seqs[-1])


async def test_frames_written_straight_to_a_socket_are_those_a_queued_client_is_sent(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    hub: StreamHub = stack.gateway.extras["hub"]
    async with connect(stream_url(stack, execution_id)) as queued, connect(stream_url(stack, execution_id)) as direct:
        after = max((await receive(queued))["last_seq"], (await receive(direct))["last_seq"])
        listeners = hub.feeds[execution_id].listeners
        assert {listener.direct is not None for listener in listeners} == {True}, "no socket can be written to"
        next(iter(listeners)).direct = None  # that one gets every frame through its writer, as without frames.py
        messages = ["short", "é" * 100, "x" * 70_000]  # lengths of one, two and eight bytes in the frame header
        seqs = [(await stack.gateway.bus.publish_event(progress(execution_id, message=m))).seq for m in messages]
        texts = await asyncio.gather(*(texts_until(ws, seqs[-1]) for ws in (queued, direct)))

    got = [[text for text in texts_of_one if json.loads(text)["seq"] > after] for texts_of_one in texts]
    assert got[0] == got[1], "the two clients were sent different frames"
    assert [json.loads(text)["data"]["message"] for text in got[0][-3:]] == messages
    assert hub.counts.frames_direct >= 1
    assert hub.counts.frames_queued >= len(messages)
    metrics = (await stack.client.get("/metrics")).text
    assert f"planexe_websocket_frames_direct {float(hub.counts.frames_direct)}" in metrics


async def test_a_client_whose_connection_drops_leaves_and_the_others_get_everything(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    hub: StreamHub = stack.gateway.extras["hub"]
    async with connect(stream_url(stack, execution_id)) as stays:
        start = (await receive(stays))["last_seq"]
        gone = await connect(stream_url(stack, execution_id))
        assert (await receive(gone))["kind"] == "snapshot"
        await eventually(lambda: _true(hub.clients_of() == {execution_id: 2}))
        gone.transport.abort()  # a tab killed: the gateway learns of it only when it reads or writes the socket
        seqs = [(await stack.gateway.bus.publish_event(progress(execution_id))).seq for _ in range(20)]
        texts = await texts_until(stays, seqs[-1])
        await eventually(lambda: _true(hub.clients_of() == {execution_id: 1}))

    got = [json.loads(text)["seq"] for text in texts]
    assert got == [seq for seq in await stored_seqs(stack, execution_id, seqs[-1]) if seq > start]


async def test_a_client_that_does_not_read_is_resynced_and_the_others_get_everything(stack: Stack) -> None:
    hub = await small_queues(stack, size=8)
    execution_id = await gated_execution(stack)
    async with connect(stream_url(stack, execution_id)) as fast, slow_client(stream_url(stack, execution_id)) as slow:
        start = (await receive(fast))["last_seq"]
        assert (await receive(slow))["kind"] == "snapshot"
        async with Reader(fast) as seen_by_fast:
            published = await publish_until_resync(stack, hub, execution_id)
            await eventually(lambda: _true(published <= {f.get("event_id") for f in seen_by_fast.frames}))
        kinds = [frame["kind"] for frame in await frames_until_snapshot(slow)]

    assert kinds[-2:] == ["resync", "snapshot"], kinds
    assert set(kinds[:-2]) == {"event"}, kinds
    assert {f["kind"] for f in seen_by_fast.frames} == {"event"}, "the fast client was resynced too"
    seqs = seqs_of(seen_by_fast.frames)
    assert seqs == [seq for seq in await stored_seqs(stack, execution_id, seqs[-1]) if seq > start]


async def test_unknown_execution_and_bad_after_seq_are_refused(stack: Stack) -> None:
    for after_seq in (None, 3):
        async with connect(stream_url(stack, "no-such-execution", after_seq)) as ws:
            error = await receive(ws)
            assert await close_code(ws) == 4404
        assert error == {"kind": "error", "status": 404, "detail": "unknown execution no-such-execution"}

    execution_id = await gated_execution(stack)
    details: dict[str, str] = {}
    for bad in ("-1", "x", "1000000000"):
        async with connect(stream_url(stack, execution_id, bad)) as ws:
            error = await receive(ws)
            assert await close_code(ws) == 4400
        assert (error["kind"], error["status"]) == ("error", 400)
        assert "after_seq" in error["detail"]
        details[bad] = error["detail"]
    assert "beyond the event stream's last sequence" in details["1000000000"]


async def test_messages_that_are_not_events_are_skipped_and_counted(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    bus = stack.gateway.bus
    junk = bus.subjects.report(execution_id, "junk", "http-agent")  # what the gateway may publish: a report
    await bus.js.publish(junk, b'{"execution_id": "no type"}')  # in the backlog a reconnecting client reads
    async with connect(stream_url(stack, execution_id, after_seq=0)) as ws:
        before = await events_until(ws, "inbox_opened")
        await bus.js.publish(junk, b"\xff not json")  # in the live tail
        await approve_gate(stack, execution_id)
        after = await events_until(ws, "completed")
    both = seqs_of(before) + seqs_of(after)
    assert both == await stored_seqs(stack, execution_id, both[-1])
    assert stack.gateway.extras["hub"].counts.undecodable == 2
    assert "planexe_websocket_undecodable 2.0" in (await stack.client.get("/metrics")).text


async def test_open_streams_end_when_the_gateway_stops(stack: Stack) -> None:
    execution_id = await gated_execution(stack)
    async with connect(stream_url(stack, execution_id)) as ws:
        assert (await receive(ws))["kind"] == "snapshot"
        async with asyncio.timeout(4):  # within uvicorn's graceful shutdown: the handler did not hang
            await stack.server.stop()
        code = await close_code(ws)
    assert code in (1001, 1012)  # going away / service restart


@pytest.mark.slow
async def test_the_stream_goes_on_after_nats_restarts(tmp_path: Path, settings: Settings, postgres_url: str) -> None:
    server = await start_nats(tmp_path / "nats")
    settings = settings.model_copy(update={"nats_auth_dir": server.auth_dir})
    try:
        async with running_stack(settings, server.url, postgres_url) as stack:
            execution_id = await gated_execution(stack)
            bus = stack.gateway.bus
            async with connect(stream_url(stack, execution_id, after_seq=0)) as ws:
                before = await events_until(ws, "inbox_opened")
                restarted_from = bus.reconnected_at
                await server.stop()
                await server.start()  # same port and store: the ordered consumer of the feed is gone
                feed = stack.gateway.extras["hub"].feeds[execution_id]
                await eventually(
                    lambda: _true(bus.reconnected_at != restarted_from and feed.since == bus.reconnected_at)
                )
                await approve_gate(stack, execution_id)
                after = await events_until(ws, "completed")
            both = seqs_of(before) + seqs_of(after)
            assert both == await stored_seqs(stack, execution_id, both[-1])
    finally:
        await server.stop()


# -- the slow client ---------------------------------------------------------------------------------------
BIG = 64 * 1024
"""Characters in each burst event: some dozens fill the socket buffers of a client that does not read."""


async def _true(value: bool) -> bool:
    return value


async def small_queues(stack: Stack, size: int) -> StreamHub:
    """Swap the gateway's hub for one whose clients may fall only ``size`` events behind."""
    old: StreamHub = stack.gateway.extras["hub"]
    hub = StreamHub(stack.gateway.bus, queue_size=size)
    hub.start()
    stack.gateway.extras["hub"] = hub
    await old.close()
    return hub


@contextlib.asynccontextmanager
async def slow_client(url: str) -> AsyncIterator[ClientConnection]:
    """A client that reads only when asked: a small receive buffer and no read-ahead in the library."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    ws = await connect(url, sock=sock, max_queue=1)
    try:
        yield ws
    finally:  # it would not read the close handshake either: drop the connection as a killed tab does
        ws.transport.abort()
        await ws.wait_closed()


class Reader:
    """Reads every frame of a client in the background (``frames``) while the block runs."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def __aenter__(self) -> Reader:
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _read(self) -> None:
        async for text in self.ws:
            self.frames.append(json.loads(text))


async def publish_until_resync(stack: Stack, hub: StreamHub, execution_id: str) -> set[str]:
    """Publish big progress events, ten at a time, until the hub has resynced a client; return their ids.

    The slow client's socket buffers fill after a few megabytes, then its queue, then it overflows.
    """
    published: set[str] = set()
    feed = hub.feeds[execution_id]
    while hub.counts.resyncs == 0:
        assert len(published) < 1000, "no client was resynced"
        last = 0
        for _ in range(10):
            event = progress(execution_id, message="x" * BIG)
            last = (await stack.gateway.bus.publish_event(event)).seq
            published.add(event.event_id)
        await fanned_out(feed, last)
    return published


def progress(execution_id: str, message: str = "") -> SubtaskProgress:
    """A progress report by an HTTP agent behind the gate: the coordinator ignores it, the stream carries it."""
    return SubtaskProgress(
        execution_id=execution_id,
        task_id="task_1_2",
        subtask_id="task_1_2_1",
        agent_id="http-agent",
        percent=0,
        message=message,
    )


async def fanned_out(feed: Feed, seq: int) -> None:
    """Wait until the feed has handed event ``seq`` to its clients."""
    await eventually(lambda: _true(feed.last_seq >= seq))


async def frames_until_snapshot(ws: ClientConnection) -> list[dict[str, Any]]:
    """What the slow client was sent, read now, up to the snapshot that follows its resync."""
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["kind"] != "snapshot":
        frames.append(await receive(ws))
    return frames
