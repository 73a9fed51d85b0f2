"""Reading a KV bucket in batches: what changed since the last read, and the last entry of each key.

A watch (an ordered push consumer) hands on every put as a message of its own, so its reader wakes once per
put. On ``ax-agents`` that is once per heartbeat: 200 times a second for 1,000 agents every 5 s, and on a
small virtual machine each wake-up of a process costs more than what the reader then does with the put
(bench/idle_agents.py). A batched direct get (nats-server 2.11 or later, on a stream that allows direct gets)
answers one request with the stored messages from a sequence on, in one burst that ends with a status: a
reader that asks every ``poll_s`` wakes a few times per read, whatever the number of puts. As a bucket keeps
one entry per key (history 1), a read also skips the puts of a key that a later put replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from planexe_ax.bus.connection import Bus, KvEntry
from planexe_ax.bus.consumer import Backoff, ErrorsOnce
from planexe_ax.bus.errors import PASSING, BusError

log = logging.getLogger(__name__)

BATCHED_SINCE = (2, 11)
"""The nats-server version that answers a direct get with a batch."""
BATCH = 512
"""Most messages one direct get answers with; a read asks again while more are pending."""
READ_TIMEOUT_S = 5.0
"""How long one answer may take before the read counts as failed (a lost connection, a server away)."""
STATUS, DESCRIPTION = "Status", "Description"
END_OF_BATCH, NOTHING_NEW = "204", "404"
KV_OPERATION, MARKER_REASON = "KV-Operation", "Nats-Marker-Reason"
MARKER_OPERATIONS = {"MaxAge": "PURGE", "Purge": "PURGE", "Remove": "DEL"}
"""nats-server 2.11+ marks a key removed by its TTL or a purge with a reason instead of a KV operation."""


class DirectGetRefused(BusError):
    """The stream answered a direct get with an error status (no direct gets allowed, a server too old)."""


class DirectBatches:
    """Batched direct gets on one stream, over one inbox subscription, one request at a time.

    Args:
        bus: The connection.
        stream: The stream (a bucket's is ``KV_<bucket>``); it must allow direct gets.
    """

    def __init__(self, bus: Bus, stream: str) -> None:
        self.bus = bus
        self._subject = f"{bus.js._prefix}.DIRECT.GET.{stream}"
        self._inbox = bus.nc.new_inbox()
        self._tokens = itertools.count()
        self._token = ""
        self._sub: Subscription | None = None
        self._got: list[Msg] = []
        self._ended: asyncio.Future[Msg] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Unsubscribe (safe to call twice; the connection may be gone already)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        if msg.subject[len(self._inbox) + 1 :] != self._token:
            return  # the answer to a request that was given up
        if msg.headers and STATUS in msg.headers:
            if self._ended is not None and not self._ended.done():
                self._ended.set_result(msg)
        else:
            self._got.append(msg)

    async def ask(self, request: dict[str, Any], timeout_s: float = READ_TIMEOUT_S) -> tuple[list[Msg], int]:
        """The messages that answer ``request`` and how many more match it (pending after them).

        Raises:
            DirectGetRefused: the stream answered with an error status.
            TimeoutError: the answer did not end within ``timeout_s``.
        """
        async with self._lock:
            if self._sub is None:
                self._sub = await self.bus.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
            self._token, self._got = str(next(self._tokens)), []
            self._ended = ended = asyncio.get_running_loop().create_future()
            await self.bus.nc.publish(self._subject, json.dumps(request).encode(), reply=f"{self._inbox}.{self._token}")
            try:
                async with asyncio.timeout(timeout_s):
                    end = await ended
            finally:
                self._token = ""
            headers = end.headers or {}
            status = headers.get(STATUS, "")
            if status == NOTHING_NEW:
                return [], 0
            if status != END_OF_BATCH:
                raise DirectGetRefused(f"direct get on {self._subject}: {status} {headers.get(DESCRIPTION, '')}")
            return self._got, int(headers.get("Nats-Num-Pending", "0") or 0)


def kv_entry(prefix: str, msg: Msg) -> KvEntry | None:
    """The entry that a direct get's ``msg`` of a bucket whose subjects start with ``prefix`` holds.

    None for a server's marker of a reason this client does not know (skipped, as nats-py's watch does).
    """
    headers = msg.headers or {}
    operation = headers.get(KV_OPERATION)
    if operation is None and MARKER_REASON in headers:
        operation = MARKER_OPERATIONS.get(headers[MARKER_REASON])
        if operation is None:
            return None
    return KvEntry(
        key=headers.get("Nats-Subject", "")[len(prefix) :],
        value=msg.data or b"",
        revision=int(headers.get("Nats-Sequence", "0")),
        operation=operation,
        created=_stamp(headers.get("Nats-Time-Stamp")),
    )


def _stamp(text: str | None) -> datetime | None:
    """A server's RFC 3339 time with nanoseconds, to the microsecond."""
    if not text:
        return None
    head, _, fraction = text.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]:0<6}").replace(tzinfo=UTC)
    except ValueError:
        return None


async def read_since(
    reader: DirectBatches, prefix: str, after: int, batch: int = BATCH, keys: str = ">"
) -> tuple[list[KvEntry], int]:
    """Every entry stored after stream sequence ``after`` (all of them when 0), and the last sequence read.

    Args:
        reader: Direct gets on the bucket's stream.
        prefix: The bucket's subjects' prefix, ``$KV.<bucket>.``.
        after: Where the previous read ended.
        batch: Most entries one request answers with; more requests are made while entries are pending.
        keys: The keys read (a NATS wildcard filter).
    """
    entries: list[KvEntry] = []
    while True:
        request = {"seq": after + 1, "next_by_subj": f"{prefix}{keys}", "batch": batch}
        msgs, pending = await reader.ask(request)
        for msg in msgs:
            entry = kv_entry(prefix, msg)
            after = max(after, int((msg.headers or {}).get("Nats-Sequence", "0")))
            if entry is not None:
                entries.append(entry)
        if not msgs or pending <= 0:
            return entries, after


async def kv_changes(
    bus: Bus, bucket: str, stop: asyncio.Event, poll_s: float, batch: int = BATCH
) -> AsyncIterator[list[KvEntry]]:
    """The entries of ``bucket`` in batches, one every ``poll_s`` until ``stop`` is set.

    The first batch holds every entry stored (the bucket's current keys, and the delete markers it keeps);
    each later one what was stored since the batch before, in order: often nothing (a tick, for checks in
    time). After a reconnect the bucket is read afresh (the server may have a new stream). A read that fails
    (the server away, the stream electing a leader) is logged once and made again; meanwhile the batches are
    empty. The bucket's stream must allow direct gets (:func:`~planexe_ax.bus.topology.topology` makes the
    agents bucket so).
    """
    prefix = f"$KV.{bucket}."
    reader = DirectBatches(bus, f"KV_{bucket}")
    errors, backoff = ErrorsOnce(log, logging.WARNING, bucket=bucket).about("reading the bucket failed"), Backoff()
    after, since = 0, bus.reconnected_at
    stopping = asyncio.ensure_future(stop.wait())  # a read in flight (up to READ_TIMEOUT_S) does not hold up a stop
    try:
        while not stop.is_set():
            if bus.reconnected_at != since:
                after, since = 0, bus.reconnected_at
            reading = asyncio.ensure_future(read_since(reader, prefix, after, batch))
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                return
            try:
                entries, after = reading.result()
            except PASSING as exc:
                errors(exc)
                await backoff.wait(stop)
                yield []
                continue
            backoff.reset()
            yield entries
            await asyncio.wait({stopping}, timeout=poll_s)
    finally:
        stopping.cancel()
        await reader.close()


def batched_reads(bus: Bus) -> bool:
    """Whether the server answers batched direct gets (nats-server 2.11 or later)."""
    version = bus.nc.connected_server_version
    return (version.major, version.minor) >= BATCHED_SINCE


async def agent_changes(
    bus: Bus, stop: asyncio.Event, poll_s: float, batched: bool | None = None
) -> AsyncIterator[list[KvEntry]]:
    """The cards of ``ax-agents`` in batches (see :func:`kv_changes`): all of them first, then what changed.

    Args:
        bus: The connection.
        stop: Ends the reading.
        poll_s: How often the bucket is read.
        batched: Read in batched direct gets; default when the server answers them (:func:`batched_reads`).
            Otherwise a watch hands on every put as it comes (one wake-up each): every card first, in one
            batch, then each put in a batch of its own, and an empty batch when none came for ``poll_s``.
    """
    if batched if batched is not None else batched_reads(bus):
        async for entries in kv_changes(bus, bus.subjects.agents_bucket, stop, poll_s):
            yield entries
        return
    initial: list[KvEntry] | None = []
    async for entry in bus.agent_updates(stop, poll_s):
        if initial is None:
            yield [] if entry is None else [entry]
        elif entry is not None:
            initial.append(entry)
        else:  # the watch's initial values are in
            yield initial
            initial = None
