"""Agent work on the bus: lease offers, extend the leases, settle them, keep the agent's card fresh.

One mechanism for both kinds of agent: the SDK's :class:`~planexe_ax.agents.runtime.AgentRuntime` runs a
bus agent with it, the gateway's :class:`~planexe_ax.ws_gateway.agent_bridge.AgentBridge` an HTTP agent.

* :class:`OfferSource` holds the agent's durable consumers on the tasks stream (its direct one, then one per
  capability, shared by every agent of that capability): :meth:`~OfferSource.fetch` takes one offer at a
  time (HTTP agents), :meth:`~OfferSource.take` the offers of a :class:`StandingPull`, which keeps pull
  credits outstanding (the bus agent runtime).
* A :class:`LeasedOffer` is an offer whose message stays un-acked while the agent works: :meth:`~LeasedOffer.extend`
  keeps the lease (``in_progress``), :meth:`~LeasedOffer.finish` acks it once the outcome is published,
  :meth:`~LeasedOffer.give_back` naks it for another agent.
* :func:`every` runs the periodic heartbeat; :func:`put_card` and friends the card in
  KV ``ax-agents``.
* :class:`SoonPublisher` puts reports on the connection and hands back the futures of their acks.
* :class:`HeldAcks` holds offer acks a moment, so that they leave in one socket write with the next messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import KeyNotFoundError
from opentelemetry.trace import Span
from pydantic import ValidationError

from planexe_ax.bus import tracing
from planexe_ax.bus.codec import event_subject
from planexe_ax.bus.connection import Bus
from planexe_ax.bus.consumer import StandingPull
from planexe_ax.bus.errors import TIMEOUTS, brief_validation_error
from planexe_ax.bus.messages import AgentCard, EventBase, TaskOffer
from planexe_ax.bus.pipeline import AckInbox
from planexe_ax.bus.pull import delivered_count
from planexe_ax.bus.subjects import Subjects
from planexe_ax.bus.topology import capability_consumer, direct_consumer, ensure_consumer
from planexe_ax.bus.tracing import attempt_span

log = logging.getLogger(__name__)

DLQ_SOURCE = "agents"
"""Offers that are not offers go to ``ax.dlq.agents``."""
ACK_HOLD_S = 0.005
"""How long an offer's ack waits, at most, for other messages to leave with (see :class:`HeldAcks`)."""


class SoonPublisher:
    """Puts events on the connection as :meth:`Bus.publish_event` sends them, without waiting for the stream.

    :meth:`soon` hands back the future of the event's ack (JetStream's asynchronous publish). Every ack comes to
    one inbox of the connection, each message's reply subject being that inbox and a counter (nats-py's own
    asynchronous publish makes a random token, waits on a semaphore and sets a callback for each message), and
    a future that no ack answers within ``ack_wait_s`` ends in ``TimeoutError``: one timer for them all, not
    one per message. Messages put on the connection one after the other leave in that order, and the stream
    stores them in that order.

    Args:
        bus: The connection.
        ack_wait_s: How long an ack is waited for.
    """

    def __init__(self, bus: Bus, ack_wait_s: float) -> None:
        self.bus = bus
        self.ack_wait_s = ack_wait_s
        self._acks = AckInbox(bus.nc)
        self._waiting: deque[tuple[float, asyncio.Future[PubAck]]] = deque()
        """The acks waited for, in the order sent: until when, and the future."""
        self._timer: asyncio.TimerHandle | None = None

    async def soon(self, event: EventBase) -> asyncio.Future[PubAck] | None:
        """Put ``event`` on the connection now; the future of its ack, done within ``ack_wait_s``.

        None, with nothing sent, where :meth:`Bus.publish_event` would fence the event (a process that decides
        partitions) or make a publish span for it: publish it that way instead.
        """
        bus = self.bus
        subject = event_subject(bus.subjects, event)
        data, headers, _ = bus._encode(event, event.event_id)
        if bus.fences is not None:
            return None
        if not tracing.enabled():
            tracing.carry(headers, event)
        elif not tracing.noted_in_current(bus.subjects.template(subject), subject, event.event_id, headers, event):
            return None
        future = await self._acks.publish(subject, headers, data)
        loop = asyncio.get_running_loop()
        self._waiting.append((loop.time() + self.ack_wait_s, future))
        if self._timer is None:
            self._timer = loop.call_later(self.ack_wait_s, self._expire)
        return future

    def _expire(self) -> None:
        """End the futures whose time is up in ``TimeoutError``; look again when the next one's is."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._waiting:  # in the order sent: the first whose time is not up ends the look
            until, future = self._waiting[0]
            if until > now and not future.done():
                self._timer = loop.call_at(until, self._expire)
                break
            self._waiting.popleft()
            if not future.done():
                future.set_exception(TimeoutError(f"no ack within {self.ack_wait_s} s"))
        self._acks.prune()

    async def close(self) -> None:
        """Stop listening for acks; the futures still waited for end in ``TimeoutError``."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()
        await self._acks.close()


@dataclass(eq=False)
class LeasedOffer:
    """One offer held by one agent; its message stays un-acked until the attempt's outcome is published."""

    offer: TaskOffer
    _msg: Msg

    @property
    def subject(self) -> str:
        """The subject the offer came on."""
        return self._msg.subject

    @property
    def reply(self) -> str:
        """The delivery's ack subject: any connection allowed to publish there may ack, nak or extend it."""
        return self._msg.reply

    @property
    def headers(self) -> Mapping[str, str] | None:
        """The offer message's headers (trace context)."""
        return self._msg.headers

    def attempt_span(self, agent_id: str) -> contextlib.AbstractContextManager[Span]:
        """The attempt's span, which is also the offer's process span (continuing the context it carries)."""
        # The consumer's name is read from the ack subject only for a span that is made (metadata parses it all).
        group = (self._msg.metadata.consumer or "agents") if tracing.enabled() else "agents"
        return attempt_span(self.offer, agent_id, self._msg, group)

    @property
    def delivered(self) -> int:
        """How many times the offer has been delivered (1 the first time)."""
        return delivered_count(self._msg) or 1

    async def extend(self) -> None:
        """Keep the lease for another ack wait (``in_progress``)."""
        await self._msg.in_progress()

    async def finish(self, *, confirmed: bool = True, held: HeldAcks | None = None) -> None:
        """Ack the offer: its outcome is published (its PubAck received), or nobody should do it any more.

        Args:
            confirmed: Wait for the server to confirm the ack (one round trip). Without, the ack is sent and
                the caller goes on: an ack lost with the connection lets the offer be delivered again, which
                at-least-once delivery allows (the outcome is on the stream already; the coordinator ignores
                a second outcome of a settled attempt).
            held: Without ``confirmed``: put the ack there, to leave with the next messages of the
                connection (at most :data:`ACK_HOLD_S` later), instead of sending it now.
        """
        if confirmed:
            await self._msg.ack_sync()
        elif held is not None:
            held.add(self._msg)
        else:
            await self._msg.ack()

    async def give_back(self) -> None:
        """Nak the offer, so another agent (or this one) gets it at once."""
        await self._msg.nak()


class HeldAcks:
    """Acks held for a moment, so that they leave in one socket write with the connection's next messages.

    Every write to the socket costs the process a system call and wakes the server. (The coordinator holds the
    acks of the reports it decided on the same way, until its next publishes.) An agent acks an offer once
    its outcome is stored, which is when it asks for more offers and, soon after, reports on them: the acks
    added here are sent by the next :meth:`release` (called before those publishes), or ``hold_s`` after the
    first of them was added when no publish comes. An ack is never sent before its offer's outcome is stored
    (it is added only then); one held when the process dies is lost as an ack lost with the connection is:
    the offer is delivered again when its lease runs out, and its outcome, on the stream already, is not
    counted twice.

    Args:
        hold_s: The longest an ack is held.
    """

    def __init__(self, hold_s: float = ACK_HOLD_S) -> None:
        self.hold_s = hold_s
        self._msgs: list[Msg] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._msgs)

    def add(self, msg: Msg) -> None:
        """Hold the ack of ``msg`` (a delivery whose outcome is stored) until the next :meth:`release`."""
        self._msgs.append(msg)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.hold_s, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._msgs:
            task = asyncio.get_running_loop().create_task(self.release(), name="offer acks")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def release(self) -> None:
        """Send every ack held now (they are put on the connection; it writes them with what follows)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        msgs, self._msgs = self._msgs, []
        for msg in msgs:
            try:
                await msg.ack()
            except Exception as exc:  # at least once: the offer comes back when its lease runs out
                log.warning("ack not sent", extra={"subject": msg.subject, "error": repr(exc)})

    async def close(self) -> None:
        """Send what is held and wait for the sends under way."""
        await self.release()
        if self._sending:
            await asyncio.wait(set(self._sending))


class OfferSource:
    """The durable consumers agents take offers from: one subscription (one fetch at a time) or standing pull each.

    One source may serve many agents (the gateway's HTTP agents share it): each capability consumer is
    shared by every agent of that capability anyway; an agent's direct consumer carries the work pinned to it.

    Args:
        bus: The connection.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._ensured: set[str] = set()
        self._subs: dict[str, tuple[JetStreamContext.PullSubscription, asyncio.Lock]] = {}
        self._pulls: dict[str, StandingPull] = {}
        self._interrupted = False

    @staticmethod
    def durables(agent_id: str, actions: Iterable[str]) -> list[str]:
        """The consumers an agent fetches from, in order: work pinned to it first, then each action's."""
        return [Subjects.direct_consumer(agent_id), *(Subjects.capability_consumer(a) for a in actions)]

    async def ensure(self, agent_id: str, actions: Iterable[str]) -> list[str]:
        """Create (or update) the agent's direct consumer and one per action; return :meth:`durables`."""
        subjects, settings = self.bus.subjects, self.bus.settings
        actions = list(actions)
        configs = [direct_consumer(subjects, agent_id, settings)]
        configs += [capability_consumer(subjects, action, settings) for action in actions]
        for config in configs:
            if config.durable_name not in self._ensured:
                await ensure_consumer(self.bus.js, subjects.tasks_stream, config)
                self._ensured.add(config.durable_name or "")
        return self.durables(agent_id, actions)

    async def fetch(self, durable: str, timeout_s: float) -> LeasedOffer | None:
        """Lease the next offer of ``durable``; None when none came within ``timeout_s``.

        A message that is not an offer is dead-lettered and the next one fetched. Any other error drops
        the subscription (it is bound again next time, e.g. after the consumer was recreated) and is raised.
        """
        while msgs := await self._fetch_msgs(durable, 1, timeout_s):
            if (leased := await self._leased(msgs[0])) is not None:
                return leased
        return None

    async def take(self, durable: str, credits: Callable[[], int], timeout_s: float) -> list[LeasedOffer]:
        """Lease the next offers of ``durable`` from its :class:`StandingPull`; [] when none came in time.

        Unlike :meth:`fetch`, pull credits stay outstanding between calls, so an offer is delivered as soon
        as it is stored, and a burst comes in a few messages. ``credits()`` says how many offers this
        consumer may be owed now (at least one is asked for); the caller shares its free room among its
        consumers with it. An error drops the standing pull (made again next time) and is raised. After
        :meth:`interrupt`: [] at once.
        """
        if self._interrupted:
            return []
        pull = self._pulls.get(durable)
        if pull is None:
            pull = StandingPull(self.bus, self.bus.subjects.tasks_stream, durable)
            await pull.start()
            self._pulls[durable] = pull
        while True:
            try:
                msgs = await pull.take(credits, timeout_s)
            except Exception:
                self._pulls.pop(durable, None)
                with contextlib.suppress(Exception):  # the subscription may have died with the connection
                    await pull.close()
                raise
            if not msgs:
                return []
            offers = [leased for msg in msgs if (leased := await self._leased(msg)) is not None]
            if offers:
                return offers

    async def _leased(self, msg: Msg) -> LeasedOffer | None:
        try:
            return LeasedOffer(TaskOffer.model_validate_json(msg.data), msg)
        except ValidationError as exc:
            await self.bus.dead_letter(DLQ_SOURCE, msg, f"not a TaskOffer: {brief_validation_error(exc)}")
            return None

    async def _fetch_msgs(self, durable: str, most: int, timeout_s: float) -> list[Msg]:
        if durable not in self._subs:
            sub = await self.bus.js.pull_subscribe_bind(durable, self.bus.subjects.tasks_stream)
            self._subs[durable] = (sub, asyncio.Lock())
        sub, lock = self._subs[durable]
        async with lock:  # one fetch at a time per subscription: a fetch must not take another's message
            try:
                msgs = await sub.fetch(max(1, most), timeout=timeout_s)
            except TIMEOUTS:
                return []
            except Exception:
                self._subs.pop(durable, None)
                with contextlib.suppress(Exception):  # the subscription may have died with the connection
                    await sub.unsubscribe()
                raise
        return list(msgs)

    def interrupt(self) -> None:
        """End the :meth:`take` calls waiting, and make every later one return [] at once, until :meth:`close`.

        For a runtime that stops: it starts no work after its stop, and the offers the standing pulls received
        meanwhile are given back (nak) when it closes the source.
        """
        self._interrupted = True
        for pull in self._pulls.values():
            pull.interrupt()

    async def close(self) -> None:
        """Drop every subscription (the durable consumers stay); give back the offers received and not taken."""
        subs, self._subs = list(self._subs.values()), {}
        pulls, self._pulls = list(self._pulls.values()), {}
        self._interrupted = False
        self._ensured.clear()
        for pull in pulls:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await pull.close()
        for sub, _ in subs:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()


async def every(
    period_s: float, action: Callable[[], Awaitable[None]], done: asyncio.Event, on_error: Callable[[Exception], None]
) -> None:
    """Run ``action`` every ``period_s`` until ``done`` is set; a failure is passed to ``on_error`` and retried.

    Ended by ``done``, never by cancel: on Python 3.11 a cancel that lands while nats-py's request
    (asyncio.wait_for) completes is swallowed, and a cancelled loop would go on forever.
    """
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), period_s)
            return
        try:
            await action()
        except Exception as exc:  # the next period tries again
            on_error(exc)


async def put_card(bus: Bus, card: AgentCard) -> None:
    """Put the agent's card in KV ``ax-agents`` (a heartbeat: the entry's TTL starts again)."""
    await (await bus.agents_kv()).put(card.agent_id, card.model_dump_json().encode())


async def stored_card(bus: Bus, agent_id: str) -> bytes | None:
    """The raw card of ``agent_id`` in KV ``ax-agents``; None when there is none."""
    try:
        entry = await (await bus.agents_kv()).get(agent_id)
    except KeyNotFoundError:
        return None
    return entry.value or b""


async def delete_card(bus: Bus, agent_id: str) -> None:
    """Take the agent's card out of KV ``ax-agents`` (it goes offline at once rather than after the TTL)."""
    await (await bus.agents_kv()).delete(agent_id)
