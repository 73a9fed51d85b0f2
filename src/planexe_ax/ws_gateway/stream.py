"""The live stream of one execution over a WebSocket: ``/api/executions/{execution_id}/stream``.

Protocol (OpenAPI does not list WebSocket routes; this is their reference). Every frame is JSON text.

Server to client:

``{"kind": "snapshot", "last_seq": C, "execution": {...}, "tree": {...}}``
    Sent on connect (unless ``after_seq`` is given) and after a ``resync``: the execution as
    ``GET /api/executions/{id}`` shows it, its tree as ``GET /api/executions/{id}/tasks``, and ``last_seq``,
    the event stream sequence the read model had reached. Replace the client's state with it. Its rows may
    already show some events after ``last_seq``; applying those again sets the same states.
``{"kind": "event", "seq": S, "event_id": ..., "type": ..., "task_id": ..., "subtask_id": ..., "agent_id": ...,
"attempt": ..., "ts": ..., "data": {...}}``
    Every event of the execution after the client's position (the snapshot's ``last_seq``, or ``after_seq``),
    in stream order, each ``seq`` once (until a resync): the shape of the items of
    ``GET /api/executions/{id}/events``.
``{"kind": "resync", "reason": "..."}``
    The client fell too far behind (its queue in the gateway overflowed) and the events it missed are
    dropped. A snapshot follows; events go on after that snapshot's ``last_seq``.
``{"kind": "error", "status": 404 | 400 | 503, "detail": "..."}``
    Then the socket closes: 4404 unknown execution, 4400 bad ``after_seq`` (not an integer of 0 or more, or
    beyond the event stream's last sequence), 1013 NATS or the read model unavailable (reconnect later with
    ``after_seq``).
``{"kind": "pong"}``
    The answer to ``{"kind": "ping"}``. Anything else a client sends is ignored.

Authentication: a token with the viewer role (or operator, approver, admin) as ``Authorization: Bearer``,
``?token=`` or the dashboard's session cookie; a browser's ``Origin`` must be the gateway's own address or in
``PLANEXE_HTTP_CORS_ORIGINS``. Otherwise the handshake is answered 401 or 403 (JSON ``detail``) and no
WebSocket opens.

Reconnecting: keep the ``seq`` of the last event applied and reconnect with ``?after_seq=<seq>``: no snapshot,
exactly the events after it (no gap, no duplicate), then the live tail. A gateway shutting down closes with
1001 or 1012.

Inside: one :class:`StreamHub` per gateway keeps one :class:`Feed` per watched execution, a shared ordered
consumer whose events are decoded and serialised once, then, for each client, written straight to its socket as
one prebuilt frame when its writer is idle and the socket keeps up (:mod:`planexe_ax.ws_gateway.frames`), else
put (never awaited) on the client's bounded queue, which its writer empties in order. A client that lets its
queue fill is marked for resync; the others are not slowed. A message on the
execution's subjects that does not decode as an event is skipped and counted (``websocket_undecodable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.encoders import jsonable_encoder

from planexe_ax.bus import Bus, decode_event
from planexe_ax.bus.errors import BusError
from planexe_ax.bus.replay import ExecutionEvents, StoredEvent, events_last_seq
from planexe_ax.readmodel import ReadModelError
from planexe_ax.readmodel.events import event_item
from planexe_ax.readmodel.executions import execution_status
from planexe_ax.readmodel.executions import snapshot as read_snapshot
from planexe_ax.ws_gateway.context import Gateway, ws_gateway
from planexe_ax.ws_gateway.frames import DirectWriter, direct_writer, text_frame
from planexe_ax.ws_gateway.security import admitted

log = logging.getLogger(__name__)

router = APIRouter(tags=["executions"])

DEFAULT_QUEUE_SIZE = 1000
RECONNECT_CHECK_S = 1.0
BACKFILL_WAIT_S = 5.0
"""Longest wait for the next stored event while catching up (they are all stored: only a lost server waits)."""

Frame = tuple[int, str]
"""(stream sequence, JSON text) of one event; negative sequences are markers."""
RESYNC: Frame = (-1, "")
CLOSING: Frame = (-2, "")
PONG = json.dumps({"kind": "pong"})
UNAVAILABLE = (ReadModelError, BusError, TimeoutError, ConnectionError)


class UnknownExecution(Exception):
    """The read model does not know the execution."""


def event_frame(seq: int, data: bytes) -> str | None:
    """The ``event`` frame of a stored event (None, logged, for an event that cannot be decoded)."""
    try:
        event = decode_event(data)
    except ValueError:
        log.warning("undecodable event not streamed", extra={"stream_seq": seq})
        return None
    item = event_item(seq, event.model_dump(mode="json", by_alias=True))
    return json.dumps({"kind": "event", **item.model_dump(mode="json")})


@dataclass
class StreamCounts:
    """What a hub's feeds have counted since start (the ``websocket_*`` gauges of /metrics)."""

    resyncs: int = 0
    """Clients told to resync."""
    undecodable: int = 0
    """Messages on watched executions' subjects that did not decode as events: skipped, not streamed."""
    frames_direct: int = 0
    """Event frames written straight to a client's socket (frames.py)."""
    frames_queued: int = 0
    """Event frames queued for a client's writer (it was busy, or its socket pushed back)."""


class Listener:
    """One WebSocket's seat on a feed: a bounded mailbox of frames; ``live`` while the feed fills it.

    A deque and one waiter rather than an ``asyncio.Queue``: every event is offered to every client of the
    execution, and the queue's bookkeeping (unfinished-task count, its ``finished`` event, putters) cost more
    than the offer itself.

    Args:
        feed: The feed it sits on.
        size: Frames it may hold; one more and it is marked for resync.
        direct: Writes a frame straight to the client's socket (None: every frame goes through the writer).
    """

    def __init__(self, feed: Feed, size: int, direct: DirectWriter | None = None) -> None:
        self.feed = feed
        self.size = size
        self.direct = direct
        self.frames: deque[Frame] = deque()
        self.live = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        """Its writer waits on an empty mailbox: a frame written to the socket now goes out in order."""
        waiter = self._waiter
        return not self.frames and waiter is not None and not waiter.done()

    def offer(self, frame: Frame) -> bool:
        """Queue ``frame`` without waiting; on overflow drop the queue, leave a resync marker, return False."""
        if len(self.frames) >= self.size:
            self.live = False
            self.interrupt(RESYNC)
            return False
        self.frames.append(frame)
        if self._waiter is not None:
            self._wake()
        return True

    def interrupt(self, marker: Frame) -> None:
        """Replace whatever is queued by ``marker``."""
        self.frames.clear()
        self.frames.append(marker)
        self._wake()

    async def next(self) -> Frame:
        """The oldest frame queued, waiting for one if there is none."""
        while not self.frames:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.frames.popleft()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Feed:
    """One ordered consumer of an execution's events, shared by every client watching it.

    ``last_seq`` is the last sequence handed to the listeners; before the first event, the stream's last
    sequence when the consumer was created (it starts right after it).

    Args:
        bus: The gateway's connection.
        execution_id: The execution followed.
        counts: Where it counts resyncs, undecodable messages and the frames it hands out (its hub's).
    """

    def __init__(self, bus: Bus, execution_id: str, counts: StreamCounts) -> None:
        self.bus = bus
        self.execution_id = execution_id
        self.counts = counts
        self.listeners: set[Listener] = set()
        self.last_seq = 0
        self.since: datetime | None = None
        self._events: ExecutionEvents | None = None
        self.ready = asyncio.create_task(self._start())

    @property
    def failed(self) -> bool:
        """The start ended in an error."""
        return self.ready.done() and not self.ready.cancelled() and self.ready.exception() is not None

    async def _start(self) -> None:
        self.last_seq = await events_last_seq(self.bus)
        await self.subscribe()

    async def subscribe(self) -> None:
        """(Re)subscribe from ``last_seq + 1``: after a reconnect the ordered consumer may be gone."""
        since = self.bus.reconnected_at
        events = await ExecutionEvents.open(self.bus, self.execution_id, self.last_seq, on_event=self._on_event)
        old, self._events, self.since = self._events, events, since
        if old is not None:
            await old.close()

    async def stop(self) -> None:
        """Unsubscribe (or abandon a start still under way)."""
        self.ready.cancel()
        await asyncio.wait([self.ready])
        if self._events is not None:
            await self._events.close()

    async def _on_event(self, stored: StoredEvent) -> None:
        seq = stored.seq
        if seq <= self.last_seq:  # delivered again by a new consumer after a reconnect
            return
        self.last_seq = seq
        counts = self.counts
        text = event_frame(seq, stored.data)
        if text is None:
            counts.undecodable += 1
            return
        wire: bytes | None = None
        for listener in self.listeners:
            if not listener.live:
                continue
            if listener.direct is not None and listener.idle:
                if wire is None:
                    wire = text_frame(text)
                if listener.direct(wire):
                    counts.frames_direct += 1
                    continue
            counts.frames_queued += 1
            if not listener.offer((seq, text)):
                counts.resyncs += 1
                log.info("websocket client fell behind", extra={"execution_id": self.execution_id, "seq": seq})

    async def catch_up(self, listener: Listener, position: int, send: Callable[[str], Awaitable[None]]) -> int:
        """Make ``listener`` live and send it the stored events after ``position``; return the last seq covered.

        Why nothing is lost or repeated: making the listener live and reading ``until = last_seq`` happen
        with no ``await`` between them, so no delivery falls in between: every event after ``until`` goes to
        the queue, and every event up to ``until`` was handed out before, so it is already in the stream. The
        backfill reads ``(position, until]`` with a consumer of its own and stops at ``until``, or at the
        execution's last event stored when it began, as the stream's leader tells it (``until`` may be the
        stream's end rather than an event of this execution). The caller then sends queued events above the
        returned sequence, which also skips what a client already has when its position is ahead of the feed.
        """
        listener.live = True
        until = self.last_seq
        if position < until:
            await self._backfill(position, until, send)
        return max(position, until)

    async def _backfill(self, after: int, until: int, send: Callable[[str], Awaitable[None]]) -> None:
        events = await ExecutionEvents.open(self.bus, self.execution_id, after)
        try:
            end, last = min(until, await events.last_stored()), after
            async for stored in events.through(end, BACKFILL_WAIT_S):
                last = stored.seq
                if stored.seq > until:
                    continue
                if (text := event_frame(stored.seq, stored.data)) is None:
                    self.counts.undecodable += 1
                else:
                    await send(text)
            if last < end:
                raise TimeoutError(f"no stored event after {last} within {BACKFILL_WAIT_S:g} s")
        finally:
            await events.close()


class StreamHub:
    """Every feed of this gateway, started on a client's arrival and dropped when its last client leaves.

    Args:
        bus: The gateway's connection.
        queue_size: Events a client may fall behind before it is told to resync.
        reconnect_check_s: How often feeds look for a NATS reconnect.
    """

    def __init__(
        self, bus: Bus, queue_size: int = DEFAULT_QUEUE_SIZE, reconnect_check_s: float = RECONNECT_CHECK_S
    ) -> None:
        self.bus = bus
        self.queue_size = queue_size
        self.reconnect_check_s = reconnect_check_s
        self.feeds: dict[str, Feed] = {}
        self.counts = StreamCounts()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def open_clients(self) -> int:
        """WebSocket clients on a feed now."""
        return sum(len(feed.listeners) for feed in self.feeds.values())

    def clients_of(self) -> dict[str, int]:
        """Clients per execution that has a feed (one subscription each)."""
        return {execution_id: len(feed.listeners) for execution_id, feed in self.feeds.items()}

    def start(self) -> None:
        """Start watching for NATS reconnects."""
        self._watcher = asyncio.create_task(self._watch_reconnects())

    async def close(self) -> None:
        """Tell every client the gateway is closing and drop every feed."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait([self._watcher])
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            for listener in feed.listeners:
                listener.live = False
                listener.interrupt(CLOSING)
            await feed.stop()

    @contextlib.asynccontextmanager
    async def listen(self, execution_id: str, direct: DirectWriter | None = None) -> AsyncIterator[Listener]:
        """A seat on the execution's feed (started if it is the first), given up on exit.

        ``direct`` writes to the client's socket itself (:class:`Listener`).
        """
        feed = self.feeds.get(execution_id)
        if feed is None:
            feed = self.feeds[execution_id] = Feed(self.bus, execution_id, self.counts)
        listener = Listener(feed, self.queue_size, direct)
        feed.listeners.add(listener)
        try:
            await asyncio.shield(feed.ready)
            yield listener
        finally:
            feed.listeners.discard(listener)
            if (not feed.listeners or feed.failed) and self.feeds.get(execution_id) is feed:
                del self.feeds[execution_id]
                await feed.stop()

    async def _watch_reconnects(self) -> None:
        while True:
            await asyncio.sleep(self.reconnect_check_s)
            for feed in list(self.feeds.values()):
                if feed.ready.done() and not feed.failed and feed.since != self.bus.reconnected_at:
                    try:
                        await feed.subscribe()
                        log.info("stream feed subscribed again", extra={"execution_id": feed.execution_id})
                    except Exception as exc:  # NATS not back yet: the next check tries again
                        extra = {"execution_id": feed.execution_id, "error": repr(exc)}
                        log.warning("stream feed not subscribed", extra=extra)


async def startup(gw: Gateway) -> None:
    """Create the hub (``gw.extras["hub"]``) and its gauges (``websockets_open`` and the stream's counters)."""
    hub = StreamHub(gw.bus)
    hub.start()
    gw.extras["hub"] = hub
    gw.gauges["websockets_open"] = lambda: gw.extras["hub"].open_clients
    gw.gauges["websocket_feeds"] = lambda: len(gw.extras["hub"].feeds)
    gw.gauges["websocket_resyncs"] = lambda: gw.extras["hub"].counts.resyncs
    gw.gauges["websocket_undecodable"] = lambda: gw.extras["hub"].counts.undecodable
    gw.gauges["websocket_frames_direct"] = lambda: gw.extras["hub"].counts.frames_direct
    gw.gauges["websocket_frames_queued"] = lambda: gw.extras["hub"].counts.frames_queued


async def shutdown(gw: Gateway) -> None:
    """Close the hub (sockets still open end with 1001)."""
    await gw.extras["hub"].close()


# -- the route ---------------------------------------------------------------------------------------------
@router.websocket("/api/executions/{execution_id}/stream")
async def stream(websocket: WebSocket, execution_id: str) -> None:
    """Snapshot, then the execution's events as they happen (see the module docstring for the protocol)."""
    gw = ws_gateway(websocket)
    hub: StreamHub = gw.extras["hub"]
    if not await admitted(websocket):
        return
    await websocket.accept()
    try:
        after = _after_seq(websocket.query_params.get("after_seq"))
    except ValueError as exc:
        await _refuse(websocket, 400, str(exc), 4400)
        return
    try:
        snapshot = await _snapshot(gw, execution_id) if after is None else None
        if snapshot is None:
            await _known(gw, execution_id)
            if (last := await _last_seq(gw)) < (after or 0):
                await _refuse(
                    websocket, 400, f"after_seq {after} is beyond the event stream's last sequence {last}", 4400
                )
                return
        async with hub.listen(execution_id, direct_writer(websocket)) as listener:
            closing = await _serve(websocket, gw, listener, after, snapshot)
        if closing:
            await _close(websocket, 1001, "the gateway is shutting down")
    except WebSocketDisconnect:
        return
    except UnknownExecution:
        await _refuse(websocket, 404, f"unknown execution {execution_id}", 4404)
    except UNAVAILABLE as exc:
        log.warning("websocket stream unavailable", extra={"execution_id": execution_id, "error": repr(exc)})
        await _refuse(websocket, 503, f"unavailable, reconnect later: {type(exc).__name__}", 1013)


def _after_seq(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"after_seq must be an integer, not {text!r}") from None
    if value < 0:
        raise ValueError(f"after_seq must be 0 or more, not {value}")
    return value


async def _snapshot(gw: Gateway, execution_id: str) -> dict[str, Any]:
    found = await read_snapshot(gw.sessions, execution_id)
    if found is None:
        raise UnknownExecution(execution_id)
    return found.model_dump(mode="json")


async def _last_seq(gw: Gateway) -> int:
    """The event stream's last sequence: no client can have seen an event after it."""
    return await events_last_seq(gw.bus)


async def _known(gw: Gateway, execution_id: str) -> None:
    if await execution_status(gw.sessions, execution_id) is None:
        raise UnknownExecution(execution_id)


async def _serve(
    websocket: WebSocket, gw: Gateway, listener: Listener, after: int | None, snapshot: dict[str, Any] | None
) -> bool:
    """Write frames and read the client's messages until either ends; True when the gateway is closing."""
    reader = asyncio.create_task(_read(websocket))
    writer = asyncio.create_task(_write(websocket, gw, listener, after, snapshot))
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
    if writer not in done:
        return False  # the client left
    writer.result()  # raises what stopped it, if anything did
    return True


async def _read(websocket: WebSocket) -> None:
    """Answer pings and notice the close; nothing else a client says matters."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if json.loads(message.get("text") or "null").get("kind") == "ping":
                await websocket.send_text(PONG)


async def _write(
    websocket: WebSocket, gw: Gateway, listener: Listener, after: int | None, snapshot: dict[str, Any] | None
) -> None:
    """Snapshot (unless resuming), the backlog, then the live queue; resync on overflow; return on closing."""
    send, feed = websocket.send_text, listener.feed
    if snapshot is not None:
        await send(json.dumps({"kind": "snapshot", **jsonable_encoder(snapshot)}))
    sent = await feed.catch_up(listener, snapshot["last_seq"] if snapshot else after or 0, send)
    while True:
        seq, text = await listener.next()
        if seq > sent:
            await send(text)
            sent = seq
        elif (seq, text) == RESYNC:
            reason = f"more than {listener.size} events behind; reload from the snapshot that follows"
            await send(json.dumps({"kind": "resync", "reason": reason}))
            snapshot = await _snapshot(gw, feed.execution_id)
            await send(json.dumps({"kind": "snapshot", **jsonable_encoder(snapshot)}))
            sent = await feed.catch_up(listener, snapshot["last_seq"], send)
        elif (seq, text) == CLOSING:
            return


async def _refuse(websocket: WebSocket, status: int, detail: str, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may be gone already
        await websocket.send_text(json.dumps({"kind": "error", "status": status, "detail": detail}))
    await _close(websocket, code, detail)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # closed already, or the client left
        await websocket.close(code=code, reason=reason[:120])
