"""Supervised work on the bus: one back-off, one restart loop, and the pull-consumer loop built on them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import Error as JetStreamError
from opentelemetry.trace import Span

from planexe_ax.bus import parser
from planexe_ax.bus.connection import Bus
from planexe_ax.bus.errors import BusClosed
from planexe_ax.bus.pull import Puller, give_back
from planexe_ax.bus.tracing import process_span
from planexe_ax.bus.wakes import on_set, wake, woken

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]
Work = Callable[[asyncio.Event], Awaitable[None]]


class Backoff:
    """Waits between attempts that double from ``first_s`` up to ``most_s``; :meth:`reset` after a success."""

    def __init__(self, first_s: float = 0.1, most_s: float = 5.0) -> None:
        self.first_s, self.most_s = first_s, most_s
        self.delay_s = first_s

    def reset(self) -> None:
        """The last attempt worked: the next failure waits ``first_s`` again."""
        self.delay_s = self.first_s

    async def wait(self, stop: asyncio.Event) -> None:
        """Wait the current delay (less when ``stop`` is set meanwhile), then double it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.most_s)


class ErrorsOnce:
    """Logs each distinct error once (a server away for minutes fails the same way many times).

    Args:
        logger: Where to log.
        level: ``logging.ERROR`` (with the traceback) or lower (without).
        extra: Fields of every line (e.g. the agent id).
    """

    def __init__(self, logger: logging.Logger = log, level: int = logging.ERROR, **extra: str) -> None:
        self.logger, self.level, self.extra = logger, level, extra
        self.seen: set[str] = set()

    def __call__(self, what: str, exc: BaseException, **extra: str) -> None:
        """Log ``what`` with ``exc``, unless the same error was logged with it before."""
        key = f"{what}: {type(exc).__name__}: {exc}"
        if key not in self.seen:
            self.seen.add(key)
            trace = exc if self.level >= logging.ERROR else None
            self.logger.log(self.level, what, extra={**self.extra, "error": repr(exc), **extra}, exc_info=trace)

    def about(self, what: str, **extra: str) -> Callable[[Exception], None]:
        """A callback that logs the errors of ``what`` (for :func:`supervise` and :func:`every`)."""

        def report(exc: Exception) -> None:
            self(what, exc, **extra)

        return report


async def supervise(
    stop: asyncio.Event,
    work: Work,
    name: str,
    *,
    on_error: Callable[[Exception], None] | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Run ``work(stop)`` until it returns, starting it again (after a back-off) whenever it fails.

    For loops that must outlive a lost bucket, consumer or connection. A closed connection ends the
    supervision: quietly when ``stop`` is set (a shutdown), by raising otherwise (nothing will work again).

    Args:
        stop: Set to stop; also cuts a back-off short.
        work: Returns when ``stop`` is set or its job is done.
        name: Names the work in the log.
        on_error: Told of each failure; by default each distinct one is logged once.
        backoff: The waits between starts; ``work`` may :meth:`Backoff.reset` it when it makes progress.
    """
    report = on_error or ErrorsOnce(work=name).about("work failed; restarting")
    backoff = backoff or Backoff()
    while not stop.is_set():
        try:
            await work(stop)
            return
        except BusClosed:
            if stop.is_set():
                return
            raise
        except Exception as exc:  # supervise: report, back off, start again
            report(exc)
            await backoff.wait(stop)


def _num_pending(msg: Msg) -> int:
    """How many messages the consumer had left after ``msg`` when it was delivered (unknown: 1)."""
    try:
        return int(msg.metadata.num_pending or 0)
    except Exception:  # not a JetStream delivery: assume there may be more
        return 1


STATUS, PENDING_MESSAGES = "Status", "Nats-Pending-Messages"
REQUEST_ENDED = frozenset({"408", "409"})
"""Statuses that end a pull request: it expired (408), or the server ended it (409: max waiting, a leader change)."""
NO_MESSAGES = "404"
"""The status that ends a ``no_wait`` request (:meth:`StandingPull.drain`) once it has brought what was stored."""
CONSUMER_GONE = ("Consumer Deleted", "Consumer is push based")
"""409 descriptions after which no pull request on the consumer can succeed until it is bound again."""


class StandingPull:
    """Pull credits kept outstanding on one durable consumer: messages come as soon as they are stored.

    A pull request asks for up to ``batch`` messages and lives ``expires`` seconds; the messages it brings
    wait here until :meth:`take` hands them out. A request is owed its batch less the messages that came for
    it (the server serves requests first in, first out), until the server ends it with a status on the
    request's own reply subject (408 expired, 409) or its ``expires`` has passed here (the server may have
    dropped it in a restart). One pull request per half of the credits, instead of one (or two) fetch round
    trips per batch: agents take offers this way, and :class:`PullLoop` with ``standing``. A loop that stops
    calls :meth:`interrupt` (armed once, :func:`~planexe_ax.bus.wakes.on_set`): the wait in progress ends then.

    Args:
        bus: The connection.
        stream: The consumer's stream.
        durable: The consumer.
        acks: Whether the consumer takes acks: :meth:`close` gives back (naks) what it holds only then.
    """

    def __init__(self, bus: Bus, stream: str, durable: str, *, acks: bool = True) -> None:
        self.bus = bus
        self.durable = durable
        self.acks = acks
        self._next = f"{bus.js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = bus.nc.new_inbox()
        self._sub: Subscription | None = None
        self._tokens = itertools.count()
        self._owed: dict[str, list[float]] = {}
        """Live pull requests by reply token: [until (loop time), messages still owed]."""
        self._ready: deque[Msg] = deque()
        self._waiting: list[asyncio.Future[None]] = []
        """The :meth:`take` calls waiting for messages or a status, woken by the next status or by the message
        that makes :attr:`_wanted` ready."""
        self._wanted = 1
        """How many ready messages wake the :meth:`take` waiting (its ``at_least``)."""
        self._broken: Exception | None = None
        self._interrupted = False

    async def start(self) -> None:
        """Subscribe to the inboxes the consumer delivers to (the messages handed over as they are read)."""
        self._sub = await parser.subscribe(self.bus.nc, f"{self._inbox}.*", self._arrived)

    async def close(self) -> None:
        """Unsubscribe, and give back the messages received and not taken (nak: another consumer gets them now).

        A consumer without acks has nothing to give back: what it delivered is done for the server.
        """
        sub, self._sub = self._sub, None
        ready = self._hand_out()
        if self.acks:
            await give_back(ready)
        if sub is not None:
            await parser.unsubscribe(self.bus.nc, sub)

    def interrupt(self) -> None:
        """End the :meth:`take` or :meth:`drain` in progress, and make every later one return at once: a stop.

        An interrupted pull hands out nothing and asks for nothing more: what came is given back by :meth:`close`,
        not handled after the stop.
        """
        self._interrupted = True
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            wake(waiter)

    @property
    def outstanding(self) -> int:
        """Messages the live requests may still bring."""
        now = asyncio.get_running_loop().time()
        for token in [token for token, (until, _) in self._owed.items() if until <= now]:
            del self._owed[token]
        return int(sum(owed for _, owed in self._owed.values()))

    def _arrived(self, msg: Msg) -> None:
        status = msg.headers.get(STATUS) if msg.headers else None
        if status is None:  # delivered on its own subject: counted against the oldest request, served first
            if self._owed:
                token, request = next(iter(self._owed.items()))
                request[1] -= 1
                if request[1] <= 0:
                    del self._owed[token]
            self._ready.append(msg)
            if len(self._ready) < self._wanted:
                return  # the take waiting sleeps on until it has as many as it asked for, or its time is up
        elif status in REQUEST_ENDED or status == NO_MESSAGES:  # on the reply subject of the request it ends
            self._owed.pop(msg.subject[len(self._inbox) + 1 :], None)
            description = msg.headers.get("Description", "") if msg.headers else ""
            if status == "409" and description.startswith(CONSUMER_GONE):
                self._broken = JetStreamError(f"{self.durable}: {description}")
        else:  # 100 (heartbeat): nothing owed changes
            return
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            wake(waiter)

    async def take(self, credits: Callable[[], int], timeout_s: float, at_least: int = 1) -> list[Msg]:
        """Every message here once ``at_least`` are, else every one that came within ``timeout_s`` (none: []).

        Args:
            credits: How many messages this pull may be owed now; asked again before each request. With 0 no
                request is made: only what the live requests bring comes (a caller that lets events gather at
                the server, to take them in one :meth:`drain`, is not woken by each).
            timeout_s: How long to wait, and how long a new request lives.
            at_least: How many messages end the wait before ``timeout_s``: a caller that lets messages gather
                (the projector filling a batch) is not woken for each one that comes meanwhile.

        Once :meth:`interrupt` was called: [] at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        at_least = max(1, at_least)
        while True:
            if self._interrupted:
                return []
            if self._broken is not None:
                raise self._broken
            if len(self._ready) >= at_least:
                return self._hand_out()
            owed, most = self.outstanding, credits()
            if most > 0 and (owed == 0 or most - owed >= max(1, most // 2)):  # top up in halves, not one per offer
                await self._request(most - owed, timeout_s)
            left = deadline - loop.time()
            if left <= 0:
                return self._hand_out()  # what came in time, if anything
            await self._sleep(left, at_least)

    async def drain(self, most: int, timeout_s: float) -> list[Msg]:
        """Every message here, and up to ``most`` more the consumer has ready now, in one request (``no_wait``).

        The server delivers what it has at once and ends the request (404, or 408 after some); the wait ends then,
        or after ``timeout_s``. One round trip and one burst instead of a wake-up per message as they are stored.
        Once :meth:`interrupt` was called: [] at once.
        """
        if self._interrupted:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        token = await self._request(most, timeout_s, no_wait=True)
        while token in self._owed and len(self._ready) < most:
            if self._broken is not None:
                raise self._broken
            left = deadline - loop.time()
            if left <= 0:
                break
            if not await self._sleep(left, most):
                return []
        return self._hand_out()

    async def _sleep(self, seconds: float, wanted: int) -> bool:
        """Wait until ``wanted`` messages are ready, a status comes, or ``seconds`` have passed; False: interrupted.

        A future woken by an arrival, a timer or :meth:`interrupt`: no task per wait (``asyncio.wait_for`` makes one).
        """
        if self._interrupted:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._wanted = wanted
        try:
            await woken(waiter, seconds)
        finally:
            self._wanted = 1
            if waiter in self._waiting:
                self._waiting.remove(waiter)
        return not self._interrupted

    def _hand_out(self) -> list[Msg]:
        ready, self._ready = list(self._ready), deque()
        return ready

    async def _request(self, batch: int, expires_s: float, no_wait: bool = False) -> str:
        token = str(next(self._tokens))
        self._owed[token] = [asyncio.get_running_loop().time() + expires_s, batch]
        # A no_wait request that also has an expiry waits for it when nothing is stored: without one it ends at once.
        asked: dict[str, Any] = {"batch": batch, "no_wait": True} if no_wait else {"batch": batch}
        if not no_wait:
            asked["expires"] = int(expires_s * 1e9)
        await self.bus.nc.publish(self._next, json.dumps(asked).encode(), reply=f"{self._inbox}.{token}")
        return token


class PullLoop:
    """Consume one durable pull consumer until ``stop`` is set.

    The first fetch of a round asks for one message (it returns as soon as one arrives); when
    ``batch`` > 1 and that message says more are waiting, a second fetch takes them (up to ``batch``),
    so a busy stream is handled in batches and an idle one costs one pull per message, with no wait.
    With ``standing``, a :class:`StandingPull` keeps that many credits outstanding instead: messages come as
    soon as they are stored, with no round trip per batch, and whatever came meanwhile is one batch.

    ``stop`` ends the wait in progress (the fetch or the standing pull is interrupted): the loop ends as soon as the
    batch being handled, if any, is done. Messages received and not handed to ``handler`` are given back (nak).

    Args:
        bus: The connection.
        stream: Stream name.
        durable: Durable consumer name (it must exist).
        handler: Takes a batch; acks, naks or dead-letters each message itself.
        batch: Largest batch handed to ``handler``.
        idle_timeout_s: How long one fetch waits (and, with ``standing``, how long a pull request lives).
        batch_wait_s: How long the second fetch waits for the messages the first said are waiting (it returns
            as soon as they are in); a busy process parses them slower, and would hand on smaller batches.
        standing: Pull credits kept outstanding (0: fetch each round).
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        durable: str,
        handler: BatchHandler,
        *,
        batch: int = 1,
        idle_timeout_s: float = 0.5,
        batch_wait_s: float = 0.05,
        standing: int = 0,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.handler = handler
        self.batch = batch
        self.idle_timeout_s = idle_timeout_s
        self.batch_wait_s = batch_wait_s
        self.standing = standing
        self.handled = 0
        self._errors = ErrorsOnce(durable=durable).about("consume loop error")
        self._pull: StandingPull | Puller | None = None
        """The pull of the round in progress: the one a stop interrupts."""

    async def run(self, stop: asyncio.Event, until_idle: bool = False) -> None:
        """Fetch and handle until ``stop`` is set (or, with ``until_idle``, until a fetch finds nothing)."""
        backoff = Backoff()

        async def consume(stop: asyncio.Event) -> None:
            if self.standing:
                await self._consume_standing(stop, until_idle, backoff)
                return
            async with Puller(self.bus, self.stream, self.durable) as puller:
                self._pull = puller
                while not stop.is_set():
                    msgs = await self._fetch(puller)
                    if not msgs:
                        if until_idle:
                            return
                        continue
                    await self._handle(msgs)
                    backoff.reset()

        with on_set(stop, self._interrupt):
            await supervise(stop, consume, self.durable, on_error=self._errors, backoff=backoff)

    def _interrupt(self) -> None:
        if self._pull is not None:
            self._pull.interrupt()

    async def _consume_standing(self, stop: asyncio.Event, until_idle: bool, backoff: Backoff) -> None:
        pull = StandingPull(self.bus, self.stream, self.durable)
        self._pull = pull
        await pull.start()
        try:
            while not stop.is_set():
                msgs = await pull.take(lambda: self.standing, self.idle_timeout_s)
                if not msgs:
                    if until_idle:
                        return
                    continue
                for first in range(0, len(msgs), self.batch):
                    if stop.is_set():  # not handed on after the stop: given back, as close gives back the rest
                        await give_back(msgs[first:])
                        break
                    await self._handle(msgs[first : first + self.batch])
                backoff.reset()
        finally:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await pull.close()

    async def _fetch(self, puller: Puller) -> list[Msg]:
        first = await puller.fetch(1, self.idle_timeout_s)
        waiting = _num_pending(first[-1]) if first else 0
        if self.batch > 1 and waiting:  # more are waiting: take them (a pull on an empty consumer waits out its expiry)
            first.extend(await puller.fetch(min(self.batch - 1, waiting), self.batch_wait_s))
        return first

    async def _handle(self, msgs: list[Msg]) -> None:
        """Hand on a batch; with ``batch`` 1 inside the message's process span (a batch handler opens its own)."""
        if self.batch == 1:
            with process_span(self.bus.subjects.template(msgs[0].subject), msgs[0], self.durable):
                await self.handler(msgs)
        else:
            await self.handler(msgs)
        self.handled += len(msgs)

    def span(self, msg: Msg, execution_id: str | None = None) -> AbstractContextManager[Span]:
        """The process span of one message of a batch (for a handler of ``batch`` > 1)."""
        return process_span(self.bus.subjects.template(msg.subject), msg, self.durable, execution_id)
