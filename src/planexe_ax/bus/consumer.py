"""A supervised pull-consumer loop: fetch, hand a batch to a handler, survive every error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import FetchTimeoutError

from planexe_ax.bus.connection import Bus
from planexe_ax.bus.tracing import consume_span

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Msg]], Awaitable[None]]
_TIMEOUTS = (TimeoutError, NatsTimeoutError, FetchTimeoutError)


class PullLoop:
    """Consume one durable pull consumer until ``stop`` is set.

    The first fetch of a round asks for one message (it returns as soon as one arrives); when
    ``batch`` > 1 a second, short fetch collects whatever else is waiting, so a busy stream is
    handled in batches and an idle one with no added latency.

    Args:
        bus: The connection.
        stream: Stream name.
        durable: Durable consumer name (it must exist).
        handler: Takes a batch; acks, naks or dead-letters each message itself.
        batch: Largest batch handed to ``handler``.
        idle_timeout_s: How long one fetch waits; bounds how fast ``stop`` is noticed.
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
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.handler = handler
        self.batch = batch
        self.idle_timeout_s = idle_timeout_s
        self.handled = 0
        self._errors_seen: set[str] = set()

    async def run(self, stop: asyncio.Event, until_idle: bool = False) -> None:
        """Fetch and handle until ``stop`` is set (or, with ``until_idle``, until a fetch finds nothing)."""
        backoff = 0.1
        sub = None
        try:
            while not stop.is_set():
                try:
                    if sub is None:
                        sub = await self.bus.js.pull_subscribe_bind(self.durable, self.stream)
                    msgs = await self._fetch(sub)
                    if not msgs:
                        if until_idle:
                            return
                        continue
                    await self._handle(msgs)
                    backoff = 0.1
                except ConnectionClosedError:
                    if stop.is_set():
                        return
                    raise
                except Exception as exc:  # supervise: log each distinct error once, back off, go on
                    self._log_once(exc)
                    sub = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):  # the connection may already be closed
                    await sub.unsubscribe()

    async def _fetch(self, sub: object) -> list[Msg]:
        fetch = sub.fetch  # type: ignore[attr-defined]  # nats-py's PullSubscription
        try:
            first: list[Msg] = await fetch(1, timeout=self.idle_timeout_s)
        except _TIMEOUTS:
            return []
        if self.batch > 1:
            with contextlib.suppress(*_TIMEOUTS):
                first.extend(await fetch(self.batch - 1, timeout=0.002))
        return first

    async def _handle(self, msgs: list[Msg]) -> None:
        headers = msgs[0].headers if len(msgs) == 1 else None
        with consume_span(msgs[0].subject if len(msgs) == 1 else f"{self.stream} batch", headers):
            await self.handler(msgs)
        self.handled += len(msgs)

    def _log_once(self, exc: Exception) -> None:
        key = f"{type(exc).__name__}: {exc}"
        if key not in self._errors_seen:
            self._errors_seen.add(key)
            log.error("consume loop error", extra={"durable": self.durable, "error": key}, exc_info=exc)


async def supervise(stop: asyncio.Event, work: Callable[[asyncio.Event], Awaitable[None]], name: str) -> None:
    """Run ``work(stop)`` until ``stop`` is set, starting it again (backing off to 5 s) when it fails.

    For watches that must outlive a lost bucket or connection: the failure is logged and the work goes on.
    """
    backoff = 0.1
    while not stop.is_set():
        try:
            await work(stop)
            backoff = 0.1
        except Exception as exc:  # supervise: log, back off, start again
            log.error("work failed; restarting", extra={"work": name, "error": repr(exc)}, exc_info=exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
