"""The agent runtime: pull offers, run capabilities, report, heartbeat the agent card.

One pull loop per consumer (one per capability, shared by every agent of that capability, plus the
agent's own direct consumer). The loops share a semaphore of ``concurrency`` permits. Each keeps pull
credits outstanding on its consumer (:class:`~planexe_ax.bus.work.StandingPull`): an offer is delivered
the moment it is stored, and a burst arrives in a few messages rather than one pull request per offer.
Each consumer is owed at most its share of the free permits (at least one), so the loops together are
owed no more offers than the agent can start, but for that one each: an agent holds at most one offer
per consumer that it cannot start at once.

Per offer the runtime waits on one round trip of its own: the outcome's PubAck. The capability's task
runs the capability and puts the outcome on the connection. A capability that ends within
``started_after_s`` is reported by its outcome alone, a result that says when it began; one that lasts
longer has ``subtask_started`` put on the connection then (or before its first progress or blocked
report), ahead of its outcome, so the stream stores them in that order. No ack is waited for meanwhile: an
outcome leaves in one write with those of the other offers that came with it, and the acks are awaited
after (``Reporter.send`` and ``Reporter.confirm``: JetStream's asynchronous publish through
the runtime's :class:`~planexe_ax.bus.work.SoonPublisher`, one ack inbox and one timeout timer for every
report, no request inbox, task or timer per report). The offer is acked after the outcome is stored, without waiting for
the ack's confirmation, and the ack is held a moment (:class:`~planexe_ax.bus.work.HeldAcks`) to leave in
the same socket write as the next offer's reports: one write, and one wake-up of the server, instead of two.

While it works on an execution the runtime follows that execution's decisions (see
:mod:`planexe_ax.agents.control`): a pause or resume reaches the capability through its context, and
when the coordinator cancels the attempt or takes it away the capability is told at once, hard-stopped
after ``cancel_grace_s``, the offer acked and no result published.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from planexe_ax.agents.control import ExecutionWatches
from planexe_ax.agents.reporting import ACK_WAIT_S, Report, Reporter, execute, validate_params
from planexe_ax.agents.sdk import Agent, Capability, RejectOffer, TaskContext
from planexe_ax.bus import Bus, SubtaskRejected, SubtaskResult, SubtaskStarted, TaskOffer, utcnow
from planexe_ax.bus.consumer import Backoff, ErrorsOnce, supervise
from planexe_ax.bus.tracing import fail_current
from planexe_ax.bus.wakes import wake
from planexe_ax.bus.work import (
    ACK_HOLD_S,
    HeldAcks,
    LeasedOffer,
    OfferSource,
    SoonPublisher,
    delete_card,
    every,
    put_card,
)

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 5.0
CANCEL_GRACE_S = 0.5
STARTED_AFTER_S = 0.1
"""How long a capability runs before its ``subtask_started`` is sent (a quick one is reported by its result alone)."""


class AgentRuntime:
    """Runs one :class:`Agent` against the bus.

    Args:
        bus: A connected bus (topology provisioned).
        agent: The agent to run.
        concurrency: Offers worked on at the same time, across all of the agent's consumers.
        grace_s: On stop, how long in-flight work may take to finish before it is cancelled (and nak'ed).
        fetch_timeout_s: How long one wait for offers lasts (a stop ends it at once), and a pull request lives.
        idle_timeout_s: In :meth:`run_until_idle`, a fetch that waits this long with nothing in flight ends the run.
        cancel_grace_s: When the coordinator cancels an attempt, how long the capability may take to return
            on its own (at a :meth:`TaskContext.checkpoint`) before its asyncio task is cancelled.
        ack_hold_s: How long an offer's ack may wait to leave in one write with the next reports (a stop
            sends the acks held at once).
        started_after_s: How long a capability runs before its ``subtask_started`` is sent; one that ends
            sooner is reported by its result alone (with ``started_at``). 0: as soon as it waits on anything.
    """

    def __init__(
        self,
        bus: Bus,
        agent: Agent,
        *,
        concurrency: int = 4,
        grace_s: float = 10.0,
        fetch_timeout_s: float = 1.0,
        idle_timeout_s: float = 0.5,
        cancel_grace_s: float = CANCEL_GRACE_S,
        ack_hold_s: float = ACK_HOLD_S,
        started_after_s: float = STARTED_AFTER_S,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if started_after_s < 0:
            raise ValueError("started_after_s must not be negative")
        self.bus = bus
        self.agent = agent
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.fetch_timeout_s = fetch_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self.started_after_s = started_after_s
        self.handled = 0
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._sem = asyncio.Semaphore(concurrency)
        self._room: list[asyncio.Future[None]] = []
        """The pull loops waiting for a permit (see :meth:`_acquire`)."""
        self._inflight: dict[asyncio.Task[None], LeasedOffer] = {}
        self._offers = OfferSource(bus)
        self._acks = HeldAcks(ack_hold_s)
        self._publisher = SoonPublisher(bus, ACK_WAIT_S)
        """Acks of offers whose outcome is stored, sent with the next reports (see :meth:`_report`)."""
        self._current: set[str] = set()
        self._log_once = ErrorsOnce(log, agent_id=agent.agent_id)
        self._started_at = utcnow()
        self._watches = ExecutionWatches(bus, self._log_once)

    @property
    def current(self) -> list[str]:
        """Subtask ids in progress."""
        return sorted(self._current)

    @property
    def watching(self) -> list[str]:
        """Ids of the executions whose decisions the runtime follows for work in them now."""
        return self._watches.watching

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish in-flight work (up to ``grace_s``) and return.

        Raises:
            BusClosed: When the connection is closed under a running agent.
        """
        await self._run(stop, until_idle=False)

    async def run_until_idle(self) -> None:
        """Work until no offer arrives within ``idle_timeout_s`` and nothing is in flight (burst mode)."""
        await self._run(asyncio.Event(), until_idle=True)

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def _run(self, stop: asyncio.Event, *, until_idle: bool) -> None:
        self._started_at = utcnow()
        durables = await self._offers.ensure(self.agent.agent_id, self.agent.actions)
        await self._put_card()
        stopped = asyncio.Event()
        heartbeat = asyncio.create_task(
            every(self.bus.settings.heartbeat_s, self._put_card, stopped, self._log_once.about("heartbeat failed")),
            name=f"heartbeat {self.agent.agent_id}",
        )
        log.info("agent started", extra={"agent_id": self.agent.agent_id, "actions": self.agent.actions})
        stop_seen = asyncio.create_task(self._wake_on(stop), name=f"stop {self.agent.agent_id}")
        try:
            async with asyncio.TaskGroup() as tg:
                for durable in durables:
                    tg.create_task(self._pull_loop(durable, len(durables), stop, until_idle), name=f"pull {durable}")
            await self._drain()
        finally:
            stop_seen.cancel()
            await self._cancel_inflight()
            await self._acks.close()
            await self._publisher.close()
            await self._watches.close()
            await self._offers.close()
            stopped.set()
            await heartbeat
            await self._delete_card()
            log.info("agent stopped", extra={"agent_id": self.agent.agent_id, "handled": self.handled})

    async def _drain(self) -> None:
        if self._inflight:
            log.info("waiting for in-flight work", extra={"agent_id": self.agent.agent_id, "n": len(self._inflight)})
            await asyncio.wait(list(self._inflight), timeout=self.grace_s)

    async def _cancel_inflight(self) -> None:
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            log.warning("cancelled in-flight work", extra={"agent_id": self.agent.agent_id, "n": len(tasks)})
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)

    # -- card ---------------------------------------------------------------------------------------------
    async def _put_card(self) -> None:
        card = self.agent.card(started_at=self._started_at, current=self._current, host=self.host, pid=self.pid)
        await put_card(self.bus, card)

    async def _delete_card(self) -> None:
        try:
            await delete_card(self.bus, self.agent.agent_id)
        except Exception as exc:  # the TTL removes the card anyway
            self._log_once("card delete failed", exc)

    # -- pulling ------------------------------------------------------------------------------------------
    async def _pull_loop(self, durable: str, shares: int, stop: asyncio.Event, until_idle: bool) -> None:
        backoff = Backoff()
        timeout = self.idle_timeout_s if until_idle else self.fetch_timeout_s

        def credits() -> int:
            """This consumer's share of the free permits: the consumers together are owed no more than that."""
            return max(1, (self.concurrency - len(self._inflight)) // shares)

        async def pull(stop: asyncio.Event) -> None:
            while await self._acquire(stop):
                # There is room. Wait for offers without holding the permit: a loop idling on one consumer
                # must not keep the permits that another consumer's offers need now.
                self._sem.release()
                offers = await self._offers.take(durable, credits, timeout)
                if not offers:
                    if until_idle and not self._inflight:
                        return
                    continue
                backoff.reset()
                for work in offers:
                    # Loops that race for the last permits wait for them here, holding at most the offers
                    # there was room for when they asked, and at most one more each.
                    await self._sem.acquire()
                    self._spawn(work)

        on_error = self._log_once.about("pull loop error", durable=durable)
        await supervise(stop, pull, durable, on_error=on_error, backoff=backoff)

    async def _acquire(self, stop: asyncio.Event) -> bool:
        """Take a permit, or return False once ``stop`` is set (so a stop is not held up by busy permits).

        While every permit is taken it waits on a future that the next permit given back (or the stop)
        wakes, rather than on the semaphore and the stop in two tasks.
        """
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if not self._sem.locked():  # a permit is free: taken without waiting
                await self._sem.acquire()
                return True
            room: asyncio.Future[None] = loop.create_future()
            self._room.append(room)
            try:
                await room
            finally:
                if room in self._room:
                    self._room.remove(room)
        return False

    def _wake_room(self) -> None:
        """Wake the loops waiting in :meth:`_acquire`: a permit was given back, or the runtime stops."""
        room, self._room = self._room, []
        for waiter in room:
            wake(waiter)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        """Once ``stop`` is set, end the pull loops' waits: for offers (given back on close) and for a permit."""
        await stop.wait()
        self._offers.interrupt()
        self._wake_room()

    def _spawn(self, work: LeasedOffer) -> None:
        task = asyncio.create_task(self._handle_safely(work), name=f"offer {work.subject}")
        self._inflight[task] = work
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._sem.release()
        if self._room:
            self._wake_room()

    # -- one offer ----------------------------------------------------------------------------------------
    async def _handle_safely(self, work: LeasedOffer) -> None:
        try:
            with work.attempt_span(self.agent.agent_id):
                await self._handle(work)
            self.handled += 1
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work.give_back()
            raise
        except Exception as exc:  # not acked: the offer is redelivered when its lease runs out
            self._log_once("offer handling failed", exc, subject=work.subject)

    async def _handle(self, work: LeasedOffer) -> None:
        offer = work.offer
        self._current.add(offer.subtask_id)
        lease = _Lease(work, self.bus.settings.ack_wait_s / 2, self._log_once.about("lease extension failed"))
        try:
            await self._work(offer, work.delivered)
        finally:
            await lease.stop()
            self._current.discard(offer.subtask_id)
        await work.finish(confirmed=False, held=self._acks)

    async def _work(self, offer: TaskOffer, delivered: int) -> None:
        """Work on one attempt (inside its span: the capability's own spans nest in it)."""
        outcome = await self._attempt(offer, delivered)
        if isinstance(outcome, SubtaskResult) and not outcome.ok:
            fail_current(outcome.error or "failed")

    async def _attempt(self, offer: TaskOffer, delivered: int) -> SubtaskResult | SubtaskRejected | None:
        reporter = Reporter(self.bus, offer, self.agent.agent_id, publisher=self._publisher)
        cap = self.agent.capability(offer.action)
        if cap is None:  # e.g. reassigned here by mistake: another agent of the action may take it
            why = f"agent {self.agent.agent_id} does not offer {offer.action}"
            return await reporter.publish(reporter.rejected(RejectOffer("missing_tool", why)))
        params = validate_params(cap, offer)
        if isinstance(params, str):
            return await reporter.publish(reporter.result(ok=False, error=params, retryable=False))
        try:
            rejection = await self.agent.can_accept(offer)
        except Exception as exc:  # a failing hook is a failure of user code: reported, never lost
            self._log_once("accept hook failed", exc, action=offer.action)
            return await reporter.publish(reporter.result(ok=False, error=f"accept hook: {type(exc).__name__}: {exc}"))
        if rejection is not None:
            return await reporter.publish(reporter.rejected(rejection))
        ctx = TaskContext(
            execution_id=offer.execution_id,
            task_id=offer.task_id,
            subtask_id=offer.subtask_id,
            attempt=offer.attempt,
            agent_id=self.agent.agent_id,
            settings=self.bus.settings,
            delivered=delivered,
            _progress=reporter.progress,
            _blocked=reporter.blocked,
        )
        async with self._watches.following(ctx) as watch:
            reporter.before_start = functools.partial(watch.follow_subtasks, offer.issued_at)
            if ctx.cancelled:
                ctx.logger.info("offer no longer wanted; not started", extra={"reason": ctx.stop_reason})
                return None
            try:
                outcome = await self._run_capability(cap, params, ctx, reporter)
            finally:
                sent = list(reporter.sent)
                errors = [await _stored(reporter, event, ack) for event, ack in sent]  # in the order sent
            starts = (err for (report, _), err in zip(sent, errors, strict=True) if isinstance(report, SubtaskStarted))
            started_error = next(starts, None)
            if outcome is None:
                if started_error is not None:
                    raise started_error  # not reported at all: the offer comes back
                return None
            if errors[-1] is not None:
                raise errors[-1]  # the outcome is not stored: the offer comes back
            if started_error is not None:
                # The outcome is stored and counts (the coordinator settles an attempt on it alone): the
                # offer is acked rather than worked on again.
                self._log_once("subtask_started not stored; the outcome is", started_error, subtask_id=offer.subtask_id)
            return outcome

    async def _report(
        self, cap: Capability, params: BaseModel, ctx: TaskContext, reporter: Reporter
    ) -> SubtaskResult | SubtaskRejected | None:
        """Run the capability and send its outcome, in the capability's own task; announce its start when it lasts.

        Returns the outcome sent, None when cancelled; each report sent (with the future of its ack) is
        added to ``reporter.sent`` as it goes out, for the caller to wait for the acks after (see _attempt).
        ``subtask_started`` is sent once the capability has run for ``started_after_s``, or before its first
        progress or blocked report; one that ends sooner is reported by its outcome alone, a result carrying
        ``started_at`` (:meth:`Reporter.begin`). The outcome is sent without waiting for the started's ack:
        both go out on one connection, the started first, so the stream stores them in that order. Only a
        started whose first send failed and is sent again can land after the outcome; the coordinator ignores
        a started that comes after the attempt's outcome.
        """
        await self._acks.release()  # the acks held leave in the same write as this attempt's first report
        reporter.begin()
        timer = asyncio.get_running_loop().call_later(self.started_after_s, reporter.announce)
        try:
            outcome = await execute(cap, params, ctx, reporter)
        finally:
            timer.cancel()
        if ctx.cancelled:  # the coordinator has decided: no result
            return None
        outcome = reporter.sendable(outcome)
        await reporter.announced()  # a started on its way leaves first
        await reporter.put(outcome)
        return outcome

    async def _run_capability(
        self, cap: Capability, params: BaseModel, ctx: TaskContext, reporter: Reporter
    ) -> SubtaskResult | SubtaskRejected | None:
        """The outcome sent, or None when the attempt was cancelled (the coordinator has decided); see _report."""
        work = asyncio.create_task(self._report(cap, params, ctx, reporter), name=f"{cap.action} {ctx.subtask_id}")
        work.add_done_callback(_retrieve)
        told = ctx.cancelled_future()  # done once the attempt is cancelled, or (below) once the work is done
        work.add_done_callback(lambda _: wake(told))
        try:
            await told
            if not work.done():
                await asyncio.wait({work}, timeout=self.cancel_grace_s)
            if not work.done():
                ctx.logger.warning("capability did not stop in time; cancelling it", extra={"action": cap.action})
                work.cancel()
                await asyncio.wait({work}, timeout=CANCEL_WAIT_S)
                if not work.done():
                    ctx.logger.error("capability ignores cancellation; abandoned", extra={"action": cap.action})
        finally:
            told.cancel()
            work.cancel()  # a no-op when it is done; when this runtime is stopped, the work stops with it
        if work.done() and not work.cancelled() and not work.exception() and (published := work.result()):
            return published
        if ctx.cancelled:
            ctx.logger.info("attempt cancelled; no result published", extra={"reason": ctx.stop_reason})
            return None
        return work.result()


class _Lease:
    """Extends an offer's lease every ``period_s`` from a loop timer (no task per offer while nothing is due)."""

    def __init__(self, work: LeasedOffer, period_s: float, on_error: Callable[[Exception], None]) -> None:
        self.work, self.period_s, self.on_error = work, period_s, on_error
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(period_s, self._due)
        self._extending: asyncio.Task[None] | None = None

    def _due(self) -> None:
        self._timer = None
        self._extending = self._loop.create_task(self._extend(), name=f"extend {self.work.subject}")

    async def _extend(self) -> None:
        try:
            await self.work.extend()
        except Exception as exc:  # the next period tries again
            self.on_error(exc)
        if self._extending is not None:  # not stopped meanwhile
            self._timer = self._loop.call_later(self.period_s, self._due)

    async def stop(self) -> None:
        """Extend no more; an extension under way is let finish (never cancelled mid-request)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        extending, self._extending = self._extending, None
        if extending is not None and not extending.done():
            await asyncio.wait({extending})


async def _stored(reporter: Reporter, event: Report, ack: asyncio.Future[Any]) -> BaseException | None:
    """None once ``event`` (put on the connection with ``ack``) is stored, else what kept it out."""
    try:
        await reporter.confirm(event, ack)
    except Exception as exc:  # told to the caller, who decides whether the attempt still counts
        return exc
    return None


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a finished task's exception as seen; the outcome is read elsewhere or deliberately dropped."""
    if not task.cancelled():
        task.exception()
