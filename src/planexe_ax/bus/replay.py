"""Reading AX_EVENTS from a position: what the coordinator, the projector, the gateway and agents read back.

* :func:`replay_present` every event stored now, once, in order: the coordinator's rebuild.
* :func:`resume_after`: a durable consumer whose owner keeps its own position; :func:`rewind_if_lost` what such
  an owner checks before it moves its position past a batch; :func:`rewind_if_skipped` the same check by the
  consumer's delivery sequence (:class:`DeliveryGaps`), with no read of the stream: the coordinator's, whose
  consumer takes reports only.
* :func:`next_report_seq` where an execution's next agent report is stored; :func:`stored_at` one stored message.
* :class:`ExecutionEvents` one execution's events from a sequence on (or from now on), in order.
* :func:`last_event` the latest event of one kind of one execution; :func:`events_last_seq` the last event's.
* :func:`listen` live (core NATS) delivery of a few subjects, for what only matters while it happens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from planexe_ax.bus.connection import Bus
from planexe_ax.bus.messages import AGENT_REPORTS
from planexe_ax.bus.parser import subscribe, unsubscribe
from planexe_ax.bus.pull import delivery_seq, stream_seq
from planexe_ax.bus.topology import events_consumer, ordered_consumer, position_consumer, rebuild_consumer
from planexe_ax.bus.tracing import process_span

log = logging.getLogger(__name__)
REBUILD_BATCH = 256
RELAY = "relay"
"""The consumer name of the spans of events handed on as they arrive (the gateway's relay to browsers)."""


@dataclass(frozen=True)
class StoredEvent:
    """One stored event: its stream sequence and its bytes (decode with :func:`~planexe_ax.bus.decode_event`)."""

    seq: int
    subject: str
    data: bytes


OnEvent = Callable[[StoredEvent], Awaitable[None]]


def _stored(msg: Msg) -> StoredEvent:
    return StoredEvent(stream_seq(msg), msg.subject, msg.data)


async def events_last_seq(bus: Bus, subject: str | None = None) -> int:
    """The sequence of the last event stored in AX_EVENTS on ``subject`` (default any; 0 when there is none).

    The last event, not the stream's last message: a coordinator's fence marker (``ax.fence.>``) may come
    after it, and no reader of events ever reaches that. The stream's leader answers (not a direct get).
    """
    try:
        raw = await bus.js.get_last_msg(bus.subjects.events_stream, subject or bus.subjects.all_events)
    except NotFoundError:
        return 0
    return int(raw.seq or 0)


async def resume_after(bus: Bus, durable: str, after_seq: int) -> None:
    """Recreate the durable events consumer ``durable`` so that it delivers from ``after_seq + 1`` on, in order."""
    await reposition(bus, events_consumer(bus.subjects, durable, bus.settings), after_seq)


async def first_missing(bus: Bus, after_seq: int, seqs: Iterable[int]) -> int | None:
    """The first event stored after ``after_seq`` and before the last of ``seqs`` that ``seqs`` lacks (None: none).

    A durable consumer delivers events in stream order, but one it delivered that never arrived (its node went
    down with it in flight, a pull was given up with messages on their way) comes back only after ack_wait,
    behind newer ones: an owner that keeps its position as the highest sequence it stored would skip it for
    good. Only jumps are looked up, one read of the stream each: the stream holds other messages between
    events (fence markers), so a jump alone proves nothing.
    """
    previous = after_seq
    for seq in sorted(s for s in seqs if s > after_seq):
        if seq > previous + 1:
            found = await next_event_seq(bus, previous + 1)
            if found is not None and found < seq:
                return found
        previous = seq
    return None


class Rewound(Exception):
    """A batch was set aside and its consumer put back before it: an event before the batch never arrived."""


async def rewind_if_lost(bus: Bus, durable: str, after_seq: int, seqs: Iterable[int]) -> None:
    """Put ``durable`` back after ``after_seq`` when a batch of ``seqs`` lacks an event before its last.

    See :func:`first_missing`. The consumer is made again as :func:`resume_after` makes it.

    Raises:
        Rewound: It did: the batch is to be set aside unacked, and the pulls on the consumer begun again (the
            new consumer delivers the batch again, in order, with what it lacked).
    """
    missing = await first_missing(bus, after_seq, seqs)
    if missing is None:
        return
    log.warning(
        "an event delivered before this batch never arrived; reading again from the last one handled",
        extra={"durable": durable, "stream_seq": missing, "after_seq": after_seq},
    )
    await resume_after(bus, durable, after_seq)
    raise Rewound(f"{durable}: event {missing} never arrived; the consumer delivers again after {after_seq}")


async def reposition(bus: Bus, config: ConsumerConfig, after_seq: int) -> None:
    """Recreate the events consumer ``config`` so that it delivers from ``after_seq + 1`` on, in order."""
    await position_consumer(bus.js, bus.subjects.events_stream, config, after_seq)


class DeliveryGaps:
    """Where a consumer's deliveries jump: every delivery, a redelivery too, takes the consumer's next sequence.

    A jump is a delivery that never arrived (its node went down with it in flight, a pull was given up with
    messages on their way). Unlike :func:`first_missing` it needs no read of the stream, so it suits a consumer
    whose filter leaves gaps in the stream sequence in nearly every batch. Start again (:meth:`reset`) whenever
    the consumer is made again: its deliveries count from 1.
    """

    def __init__(self) -> None:
        self.last = 0
        """The consumer's sequence of the last delivery handled (0: the consumer was just made)."""

    def reset(self) -> None:
        """The consumer was made again."""
        self.last = 0

    def first_lost(self, msgs: Iterable[Msg]) -> int | None:
        """The first delivery before or among ``msgs`` that never arrived (None: none; they are counted as handled)."""
        expected = self.last + 1
        for msg in msgs:
            if delivery_seq(msg) != expected:
                return expected
            expected += 1
        self.last = expected - 1
        return None


async def rewind_if_skipped(
    bus: Bus, config: ConsumerConfig, after_seq: int, msgs: list[Msg], gaps: DeliveryGaps
) -> None:
    """Put the events consumer ``config`` back after ``after_seq`` when a delivery before or among ``msgs`` is lost.

    Raises:
        Rewound: It did: the batch is to be set aside unacked, and the pulls on the consumer begun again (the
            new consumer delivers it again, in order, with what it lacked).
    """
    lost = gaps.first_lost(msgs)
    if lost is None:
        return
    log.warning(
        "a message delivered before this batch never arrived; reading again from the last one handled",
        extra={"durable": config.durable_name, "delivery": lost, "after_seq": after_seq},
    )
    await reposition(bus, config, after_seq)
    gaps.reset()
    raise Rewound(
        f"{config.durable_name}: delivery {lost} never arrived; the consumer delivers again after {after_seq}"
    )


async def next_report_seq(bus: Bus, execution_id: str, from_seq: int) -> int | None:
    """The sequence of the execution's first agent report stored at or after ``from_seq`` (None: there is none)."""
    return await next_event_seq(bus, from_seq, bus.subjects.reports_of(execution_id))


async def stored_at(bus: Bus, seq: int) -> StoredEvent:
    """The message AX_EVENTS holds at ``seq`` (decode it with :func:`~planexe_ax.bus.decode_event_on`)."""
    raw = await bus.js.get_msg(bus.subjects.events_stream, seq)
    return StoredEvent(seq, raw.subject or "", raw.data or b"")


async def next_event_seq(bus: Bus, from_seq: int, subject: str | None = None) -> int | None:
    """The sequence of the first event stored at or after ``from_seq``, on ``subject`` (default any; None: none)."""
    try:
        raw = await bus.js.get_msg(
            bus.subjects.events_stream, seq=from_seq, subject=subject or bus.subjects.all_events, next=True
        )
    except NotFoundError:
        return None
    return int(raw.seq or 0) or None


async def stored_since(bus: Bus, subject: str, since: datetime, most: int) -> AsyncIterator[StoredEvent]:
    """The events on ``subject`` stored from ``since`` to the last one there when it is called, in order.

    At most ``most`` of them: one ``STREAM.MSG.GET`` each (the first by ``start_time``, then by sequence), so this
    suits a short look back, not a replay. A caller that subscribed to ``subject`` before calling it has every
    event from ``since`` on: these, then the live ones (an event may come both ways).
    """
    stream = bus.subjects.events_stream
    try:
        last = int((await bus.js.get_last_msg(stream, subject)).seq or 0)
    except NotFoundError:
        return
    asked: dict[str, Any] = {"next_by_subj": subject, "start_time": since.isoformat()}
    api = f"{bus.js._prefix}.STREAM.MSG.GET.{stream}"
    for _ in range(most):
        try:
            found = (await bus.js._api_request(api, json.dumps(asked).encode(), timeout=bus.js._timeout))["message"]
        except NotFoundError:
            return
        seq = int(found["seq"])
        if seq > last:
            return
        yield StoredEvent(seq, found.get("subject", subject), base64.b64decode(found.get("data") or ""))
        if seq == last:
            return
        asked = {"seq": seq + 1, "next_by_subj": subject}


async def replay_present(bus: Bus, batch: int = REBUILD_BATCH) -> AsyncIterator[StoredEvent]:
    """Every event stored when it is called, once, in order, without acks (a rebuild to the stream's end).

    It reads up to the last event the stream's leader holds when it is called (:func:`events_last_seq`), not
    to the consumer's count of what is pending: on a cluster the server makes a one-replica consumer on any
    replica of the stream, and a replica catching up (a node back from a partition) holds only a part of it.
    Such a consumer's deliveries catch up with its replica; its count when made does not, and a rebuild that
    trusted it would end early, missing reports that other readers already took as read.
    """
    subjects = bus.subjects
    end = await events_last_seq(bus)
    if end == 0:
        return
    sub = await bus.js.pull_subscribe(subjects.all_events, stream=subjects.events_stream, config=rebuild_consumer())
    try:
        seq = 0
        while seq < end:
            try:
                msgs = await sub.fetch(batch, timeout=10)
            except TimeoutError:
                if await next_event_seq(bus, seq + 1) is None:
                    return  # what is left of the stream was removed meanwhile (its limits)
                continue  # the consumer's replica is still catching up
            for msg in msgs:
                stored = _stored(msg)
                seq = stored.seq
                yield stored
    finally:
        await sub.unsubscribe()


async def last_event(bus: Bus, execution_id: str, kind: str) -> bytes | None:
    """The latest stored event of ``kind`` of the execution; None when there is none."""
    subject = bus.subjects.event(execution_id, kind)
    try:
        raw = await bus.js.get_last_msg(bus.subjects.events_stream, subject)
    except NotFoundError:
        return None
    return raw.data or b""


class ExecutionEvents:
    """An ordered consumer of one execution's events (see :meth:`open`); close it with :meth:`close`."""

    def __init__(self, bus: Bus, subjects: list[str]) -> None:
        self._bus = bus
        self._subjects = subjects
        self._sub: Any = None
        self._ready: deque[Msg] = deque()
        self._arrived = asyncio.Event()

    @classmethod
    async def open(
        cls,
        bus: Bus,
        execution_id: str,
        after_seq: int | None,
        on_event: OnEvent | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Self:
        """Follow the execution's events after stream sequence ``after_seq``, or (None) those stored from now on.

        With ``on_event`` each event is handed to it as it arrives; without, read them with :meth:`next`.
        With ``kinds`` only events of those types are delivered (the server filters them: the others cost
        neither a delivery nor a decode). An ordered consumer does not outlive a server restart: open another
        after ``bus.reconnected_at`` moves.
        """
        subject = bus.subjects.events_of(execution_id)
        config = ordered_consumer(None if after_seq is None else after_seq + 1)
        if kinds is not None:
            kinds = set(kinds)
            config.filter_subjects = bus.subjects.events_of_kinds(
                execution_id, kinds - AGENT_REPORTS, kinds & AGENT_REPORTS
            )
        events = cls(bus, config.filter_subjects or [subject])

        async def deliver(msg: Msg) -> None:
            assert on_event is not None
            with process_span(bus.subjects.template(msg.subject), msg, RELAY, execution_id):
                await on_event(_stored(msg))

        callback = deliver if on_event is not None else events._keep
        events._sub = await bus.js.subscribe(subject, cb=callback, ordered_consumer=True, config=config)
        return events

    async def _keep(self, msg: Msg) -> None:
        """Hold a delivered event for :meth:`next` (a callback: no task and no timer per event while they flow)."""
        self._ready.append(msg)
        self._arrived.set()

    async def next(self, timeout_s: float) -> StoredEvent | None:
        """The next event; None when none came within ``timeout_s``."""
        if not self._ready:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
            if not self._ready:
                return None
        return _stored(self._ready.popleft())

    async def through(self, end: int, timeout_s: float) -> AsyncIterator[StoredEvent]:
        """The events up to stream sequence ``end`` (e.g. :meth:`last_stored`), each once, in order.

        A consumer made again (it does not outlive a reconnect) replays from its start: what was read already
        is skipped. Ends early when no event comes within ``timeout_s``: the caller compares the last sequence
        it got with ``end``.
        """
        last = 0
        while last < end:
            got = await self.next(timeout_s)
            if got is None:
                return
            if got.seq > last:
                last = got.seq
                yield got

    async def last_stored(self) -> int:
        """The sequence of the last stored event this consumer delivers (0: none), asked of the stream's leader.

        Read the consumer until it delivers that one to have every event stored when this was called. The
        consumer's own count of what is pending will not do on a cluster: the server makes an ordered consumer
        on any replica of the stream, and one catching up holds only a part of it.
        """
        return max([await events_last_seq(self._bus, subject) for subject in self._subjects], default=0)

    async def close(self) -> None:
        """Stop following; safe when the connection is gone (the consumer went with it)."""
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


@contextlib.asynccontextmanager
async def execution_events(
    bus: Bus, execution_id: str, after_seq: int | None = None, kinds: Iterable[str] | None = None
) -> AsyncIterator[ExecutionEvents]:
    """:meth:`ExecutionEvents.open` for the block, closed on exit."""
    events = await ExecutionEvents.open(bus, execution_id, after_seq, kinds=kinds)
    try:
        yield events
    finally:
        await events.close()


class Listening:
    """Core NATS subscriptions made by :func:`listen`; :meth:`close` drops them."""

    def __init__(self, nc: Client, subs: list[Subscription]) -> None:
        self._nc = nc
        self._subs = subs

    async def close(self) -> list[Exception]:
        """Unsubscribe every subject; returns what failed (a closed connection has dropped them anyway)."""
        subs, self._subs = self._subs, []
        errors = []
        for sub in subs:
            try:
                await unsubscribe(self._nc, sub)
            except Exception as exc:  # go on with the others
                errors.append(exc)
        return errors


async def listen(bus: Bus, subjects: list[str], on_message: Callable[[str, bytes], None]) -> Listening:
    """Hand every message published on ``subjects`` from now on to ``on_message(subject, data)``.

    ``on_message`` is a plain function, called as the client reads each message (it must not block): no queue,
    task or coroutine per message (:func:`~planexe_ax.bus.parser.deliver_directly`). Returns once the server has
    the interest (flushed), so nothing published after the call is missed.
    """
    nc = bus.nc
    subs: list[Subscription] = []

    def deliver(msg: Msg) -> None:
        on_message(msg.subject, msg.data)

    try:
        for subject in subjects:
            subs.append(await subscribe(nc, subject, deliver))  # noqa: PERF401 - keeps those made before a failure
        await nc.flush()
    except BaseException:
        await Listening(nc, subs).close()
        raise
    return Listening(nc, subs)
