"""Supervised work on the bus: one back-off, one restart loop, and the pull-consumer loop built on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

from nats.aio.msg import Msg
from opentelemetry.trace import Span

from planexe_ax.bus.connection import Bus
from planexe_ax.bus.errors import BusClosed
from planexe_ax.bus.pull import Puller
from planexe_ax.bus.tracing import process_span

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


class PullLoop:
    """Consume one durable pull consumer until ``stop`` is set.

    The first fetch of a round asks for one message (it returns as soon as one arrives); when
    ``batch`` > 1 and that message says more are waiting, a second fetch takes them (up to ``batch``),
    so a busy stream is handled in batches and an idle one costs one pull per message, with no wait.

    Args:
        bus: The connection.
        stream: Stream name.
        durable: Durable consumer name (it must exist).
        handler: Takes a batch; acks, naks or dead-letters each message itself.
        batch: Largest batch handed to ``handler``.
        idle_timeout_s: How long one fetch waits; bounds how fast ``stop`` is noticed.
        batch_wait_s: How long the second fetch waits for the messages the first said are waiting (it returns
            as soon as they are in); a busy process parses them slower, and would hand on smaller batches.
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
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.handler = handler
        self.batch = batch
        self.idle_timeout_s = idle_timeout_s
        self.batch_wait_s = batch_wait_s
        self.handled = 0
        self._errors = ErrorsOnce(durable=durable).about("consume loop error")

    async def run(self, stop: asyncio.Event, until_idle: bool = False) -> None:
        """Fetch and handle until ``stop`` is set (or, with ``until_idle``, until a fetch finds nothing)."""
        backoff = Backoff()

        async def consume(stop: asyncio.Event) -> None:
            async with Puller(self.bus, self.stream, self.durable) as puller:
                while not stop.is_set():
                    msgs = await self._fetch(puller)
                    if not msgs:
                        if until_idle:
                            return
                        continue
                    await self._handle(msgs)
                    backoff.reset()

        await supervise(stop, consume, self.durable, on_error=self._errors, backoff=backoff)

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
