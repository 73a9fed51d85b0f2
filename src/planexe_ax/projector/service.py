"""The projector process: consume AX_EVENTS into the read model, one transaction per batch with its checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from opentelemetry.trace import Span
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import (
    Bus,
    Event,
    ExecutionCreated,
    Msg,
    Subjects,
    decode_event_on,
    stream_seq,
    with_plan,
)
from planexe_ax.bus.codec import stored_as_sent
from planexe_ax.bus.consumer import Backoff, ErrorsOnce, StandingPull, supervise
from planexe_ax.bus.leader import HoldsLease, LeaderLease, Terms, default_holder
from planexe_ax.bus.replay import Rewound, events_last_seq, first_missing, next_event_seq, reposition
from planexe_ax.bus.topology import projector_consumer
from planexe_ax.bus.tracing import batch_process_span, process_span
from planexe_ax.bus.tracing import enabled as tracing_enabled
from planexe_ax.bus.wakes import on_set
from planexe_ax.errors import PlanUnavailable
from planexe_ax.projector.agent_cards import AgentWatcher
from planexe_ax.projector.plan_catalog import PlanWatcher
from planexe_ax.readmodel.db import make_engine, make_session_factory
from planexe_ax.readmodel.known import Known
from planexe_ax.readmodel.migrate import upgrade
from planexe_ax.readmodel.projection import Batch, apply_event, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

DLQ_SOURCE = "projector"
BATCH = 4000
"""Events per transaction at most while the stream holds at least as many more (catching up, replaying).

A larger batch writes a row that several of its events change once instead of once per batch, and commits less
often: replaying ``bench/projector.py``'s stream into PostgreSQL, 4,000 against 1,000 took about a quarter less
time.
"""
LIVE_BATCH = 1000
"""Events per transaction at most once fewer than a batch are left in the stream: the events near the end (live,
the newest) wait for smaller writes, so the read model is less far behind them."""
STANDING = 2
"""Batches' worth of pull credits kept outstanding: the next events arrive while a batch is written.

The consumer acks nothing (:func:`~planexe_ax.bus.topology.projector_consumer`): these credits are all that
bounds the events delivered and not yet committed.
"""
IDLE_S = 0.5
"""How long the loop waits for events before it looks at ``stop`` again (and :meth:`run_until_idle` returns).

After each such wait with nothing to write the loop also looks for the first event stored after the checkpoint;
one found by two looks in a row was delivered and lost (see :meth:`Projector._lost_at_the_end`)."""
DECODE_SLICE = 100
"""Events decoded between two turns of the event loop, in which the batch before them goes on being written."""
GATHER_S = 0.01
"""How long the loop waits for more events, with a batch not yet full, before it looks whether the write has ended."""
LINGER_S = 0.1
"""How long the first event of a batch not yet full waits for others when no write is in progress.

A slow stream (a chain of tasks, one event at a time) is then written ten times a second instead of once per
event: each write costs the same whatever it holds, and on a machine whose cores the coordinator and the agents
share with the projector, a write at each event takes a core from the services deciding and doing the next step
(a chain's hop: 4.4 against 7.3 ms with the projector paused). 0.1 s against 0.02 (``bench/compare.py``, two
cores): the projector's CPU per hop of a chain 0.35-0.40 against 0.45-0.51 ms, the hop 10 % shorter. The read
model is at most this much later on a slow stream; a busy one fills its batches without waiting.

A shorter ``linger_s`` waits longer after a slow write (:data:`LINGER_PER_WRITE`, up to :data:`LINGER_MAX_S`).
"""
LINGER_PER_WRITE = 4.0
"""After a write that took ``w`` seconds, the first event of the next batch not yet full waits ``4 w`` (between
``linger_s`` and :data:`LINGER_MAX_S`): writing then takes at most about a fifth of the time while events trickle.

A write costs about 4.5 ms of CPU whatever it holds (``bench/projector.py --batch 50`` against ``--batch 4000``):
in a chain of tasks, where a few events come at each hop, writes every 20 ms made the projector the busiest
process of the four on two cores, slowing the hops it does not take part in. A write takes longer on a busy
machine, and the projector then waits longer, giving the cores to the services on the hop's path.
"""
LINGER_MAX_S = 0.1
"""The longest a batch not yet full waits for others (unless ``linger_s`` is longer): the read model's delay on a
slow stream."""


@dataclass(slots=True)
class _Item:
    msg: Msg
    seq: int
    event: Event | None = None
    error: str = ""
    data: str | None = None
    """The event's JSON as received, when it is what the bus writes (:func:`~planexe_ax.bus.codec.stored_as_sent`)."""


@dataclass(slots=True)
class _Folded:
    """A batch folded in its transaction, before it is written: the rows the next batch may be folded on."""

    batch: Batch
    top: int
    """The checkpoint its transaction writes."""


@dataclass(slots=True)
class _Ahead:
    """A batch folded while the one before it was written (:meth:`Projector._fold_ahead`)."""

    batch: Batch
    base: _Folded
    """The batch it was folded on: it holds only if that one is the last committed, with its checkpoint."""
    applied: int


@dataclass
class _Outcome:
    top: int = 0
    settled: set[int] = field(default_factory=set)  # seqs already dead-lettered: never a second letter


class Projector(HoldsLease):
    """Keep the read model in step with AX_EVENTS, idempotently.

    Each batch is projected in one transaction that also writes the checkpoint ``(durable, stream_seq)``, and
    sequences at or below the checkpoint are skipped, so restarts never apply an event twice. The checkpoint is
    the only position: the durable acks nothing (:func:`~planexe_ax.bus.topology.projector_consumer`) and is
    recreated to deliver from the event after it whenever a term begins, and whenever pulling starts again after
    an error. An event delivered and never received (lost in flight when a node goes down, or with a pull given
    up) is never delivered again by that durable: a batch that jumps over an event it lacks is not projected,
    and an event after the checkpoint that does not come while the loop waits (:data:`IDLE_S`, twice) is
    looked for; either way the consumer is put back at the checkpoint.

    Any number of projectors may run on one read model: the one holding the durable's key in the leases
    bucket writes (``create``, then ``update`` with the last revision, as the coordinator's lease), the others
    stand by and take over when it stops renewing. The new writer starts from the checkpoint in the database,
    so a take-over loses nothing; the checkpoint row is locked by each batch's transaction, so a deposed writer
    that still finishes a batch cannot make the new one apply an event twice.

    Args:
        bus: A connected bus.
        database_url: Async SQLAlchemy URL of the read model.
        durable: Durable consumer on AX_EVENTS; a name other than the default is created on :meth:`start`
            (a fresh one replays the whole stream, e.g. into an empty database).
        batch: Largest number of events per transaction, while the stream holds at least as many more.
        live_batch: Largest number of events per transaction otherwise (at most ``batch``).
        linger_s: How long the first event of a batch not yet full waits for others at least (:data:`LINGER_S`;
            longer after a slow write, see :meth:`linger`).
        lease: Write only while holding the lease (False: write as if alone, e.g. a one-off replay).
        holder: The name stored in the lease; default host, process id and a random suffix.
    """

    def __init__(
        self,
        bus: Bus,
        database_url: str,
        durable: str = Subjects.PROJECTOR_EVENTS,
        *,
        batch: int = BATCH,
        live_batch: int = LIVE_BATCH,
        linger_s: float = LINGER_S,
        lease: bool = True,
        holder: str | None = None,
    ) -> None:
        self.bus = bus
        self.database_url = database_url
        self.durable = durable
        self.engine = make_engine(database_url)
        self.sessions = make_session_factory(self.engine)
        self.last_seq = 0
        self.projected = 0
        self.dead_lettered = 0
        self.batches = 0
        self.quiet = False
        """Events trickle: they wait at the server while a batch lingers, one drain takes them (:meth:`_consume`)."""
        self._pull: StandingPull | None = None
        """The pull of the round in progress."""
        self.folded_ahead = 0  # batches written as folded while the one before them was written (PostgreSQL)
        self.known = Known()  # the rows the last batches committed: the next one need not read them
        self.agents = AgentWatcher(bus, self.sessions)
        self.plans = PlanWatcher(bus, self.sessions)
        self._caught_up = asyncio.Condition()
        self.batch = batch
        self.live_batch = min(batch, live_batch)
        self.linger_s = linger_s
        self._last_write_s = 0.0
        """How long the last batch took to write (wall time): the next batch not yet full waits in proportion."""
        self._look_up_ids = False
        """Whether a batch looks its event ids up before it is written: only after one held an event stored already
        (see :meth:`_project_batch`), until a batch finds none."""
        self._folded: asyncio.Future[_Folded | None] | None = None
        """The batch being written, once folded (None: it was not folded, e.g. it failed first)."""
        self._committed: Batch | None = None
        """The batch the last transaction committed (None: it was not a folded batch, or it failed)."""
        self._fresh = False  # True from a term's start until its first round: the durable is at the checkpoint
        self._before: asyncio.Task[None] | None = None  # the write the last batch handed on waits for
        self._folds_ahead = self.engine.dialect.name == "postgresql"  # see _write_then
        self._suspect: int | None = None  # the first event after the checkpoint the last idle look found
        self._errors = ErrorsOnce(durable=durable).about("consume loop error")
        self._started = False
        self.lease = LeaderLease(bus, Subjects.projector_lease(durable), holder or default_holder()) if lease else None
        self._lead = Terms(self.lease, self._begin, f"projector {durable}")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Migrate the read model to head; then write at once when nobody else does, else stand by."""
        await upgrade(self.database_url)
        self._started = True
        if not await self._lead.try_lead():
            holder = self.lease.holder if self.lease else ""
            log.info("projector standing by", extra={"durable": self.durable, "holder": holder})

    async def run(self, stop: asyncio.Event) -> None:
        """Project events and mirror agent cards and uploaded plans while leading, until ``stop`` is set."""
        if not self._started:
            await self.start()
        await self._lead.run(stop, lambda ended: [self._consume(ended), self.agents.run(ended), self.plans.run(ended)])

    async def run_until_idle(self) -> None:
        """Project every event available now, then return (burst mode, for tests and catch-up)."""
        if not self._started:
            await self.start()
        if not self.leading:
            await self._lead.campaign(asyncio.Event())
        # Every event stored now, however slowly a consumer just made on a healing cluster starts to deliver.
        await self._consume(asyncio.Event(), until_seq=await events_last_seq(self.bus))

    async def wait_for_seq(self, seq: int, timeout: float) -> None:  # noqa: ASYNC109 - callers pass one number, not a context
        """Wait until every event up to stream sequence ``seq`` is projected and committed.

        Args:
            seq: A stream sequence, e.g. ``(await bus.publish_event(e)).seq``.
            timeout: Seconds to wait at most.

        Raises:
            TimeoutError: The projection did not reach ``seq`` in time.
        """
        async with self._caught_up:
            await asyncio.wait_for(self._caught_up.wait_for(lambda: self.last_seq >= seq), timeout)

    async def close(self) -> None:
        """Give up the lease and release the database connections; safe to call twice."""
        await self._lead.step_down()
        await self.engine.dispose()

    async def _begin(self) -> None:
        """A term begins from the checkpoint in the database."""
        self.known.clear()  # another writer may have written since
        self._committed = None
        async with self.sessions() as session:
            checkpoint = await load_checkpoint(session, self.durable)
        async with self._caught_up:
            self.last_seq = max(self.last_seq, checkpoint)
            self._caught_up.notify_all()
        await self._position()
        self._fresh = True
        log.info("projector writes", extra={"durable": self.durable, "checkpoint": self.last_seq})

    async def _position(self) -> None:
        """Deliver from the event after the checkpoint on: the checkpoint in the database is the only position.

        Recreating the durable also replaces one an earlier version made with explicit acks (a consumer's ack
        policy cannot be changed in place), and drops what a dead projector's pulls had delivered.
        """
        await reposition(self.bus, projector_consumer(self.bus.subjects, self.durable), self.last_seq)
        self._suspect = None

    def _rewind(self, missing: int) -> Rewound:
        """The error that ends a round because ``missing``, an event after the checkpoint, was delivered and lost.

        The round's events are set aside, and the next round recreates the durable at the checkpoint: it
        delivers ``missing`` and what follows it again, in order.
        """
        log.warning(
            "an event delivered to the projector never arrived; reading again from the checkpoint",
            extra={"durable": self.durable, "stream_seq": missing, "after_seq": self.last_seq},
        )
        return Rewound(
            f"{self.durable}: event {missing} never arrived; the consumer delivers again after {self.last_seq}"
        )

    async def _lost_at_the_end(self) -> int | None:
        """The first event after the checkpoint when two idle looks in a row found it (None: nothing lost).

        The loop looks after a wait of :data:`IDLE_S` that brought nothing, with nothing left to write. An event
        stored just before a look may still be on its way; one that the next look, a whole wait later, finds
        again (the checkpoint has not passed it) was delivered and lost: no later event shows the jump, and the
        durable never delivers it again.
        """
        found = await next_event_seq(self.bus, self.last_seq + 1)
        suspect, self._suspect = self._suspect, found
        return found if found is not None and found == suspect else None

    async def _consume(self, stop: asyncio.Event, until_seq: int | None = None) -> None:
        """Project batches until ``stop`` is set, or with ``until_seq`` until it is projected and nothing comes.

        With ``until_seq``, the loop ends at the first wait of ``IDLE_S`` without events once every event up to
        that stream sequence is projected.

        While events trickle (the last batch did not fill within its linger), the loop is *quiet*: one pull
        credit stays outstanding, the event it brings starts the batch's linger, the events stored meanwhile wait at
        the server, and one ``no_wait`` pull (:meth:`StandingPull.drain`) takes them when the linger is over. A
        chain of tasks (a few events a hop, a hop a millisecond or two) then wakes the projector once a batch, not
        at every delivery. A drain that brings as many as it asked for, or a batch that fills, ends the quiet.

        Otherwise pull credits stay outstanding (:class:`StandingPull`), so events arrive while a batch is written; and
        they are decoded while the batch before them is written (in a task of its own): a batch is handed on
        when it is full, or when that write has ended and its first event has waited :meth:`linger` (events that
        come before then join it). Batches are thus still written one at a time and in stream order, and a
        write's error ends the round as a handler's would (the loop starts again from the checkpoint).
        """
        backoff = Backoff()

        async def consume(stop: asyncio.Event) -> None:
            # Every round pulls from the event after the checkpoint: what the durable delivered to a round that
            # ended (on an error, or a run that returned) is gone with that round's subscription.
            if not self._fresh:
                await self._position()
            self._fresh = False
            pull = StandingPull(self.bus, self.bus.subjects.events_stream, self.durable, acks=False)
            await pull.start()
            writing: asyncio.Task[None] | None = None  # the last batch handed on (see _write_after)
            self._before, self._folded = None, None
            items: list[_Item] = []  # decoded, not yet handed on
            end = 0  # the stream's last sequence, as the last message received said
            loop = asyncio.get_running_loop()
            due = 0.0  # when the items not handed on are written, the write before them done (loop time)
            self.quiet = False
            self._pull = pull

            async def absorb(msgs: list[Msg]) -> None:
                """Decode ``msgs`` into the batch; hand on every batch that is full."""
                nonlocal items, writing, end, due
                self._suspect = None
                last = msgs[-1].metadata
                end = max(end, last.sequence.stream + last.num_pending)
                if not items:
                    due = loop.time() + self.linger()
                for first in range(0, len(msgs), DECODE_SLICE):
                    items.extend(self._decode(msg) for msg in msgs[first : first + DECODE_SLICE])
                    await asyncio.sleep(0)  # a turn for the write in progress
                    while items and len(items) >= (size := self.batch_size(items[0].seq, end)):
                        writing = await self._write_after(writing, items[:size])
                        items = items[size:]
                        self.quiet = False  # events come faster than batches fill: credits stay outstanding

            try:
                while not stop.is_set():
                    idle = not items and (writing is None or writing.done())
                    gather = 1  # events that end the wait before its time: the first, while idle or writing
                    quiet_credits = 0  # quiet: events stored while a batch gathers wait at the server
                    if not items:
                        wait, quiet_credits = IDLE_S, 1  # quiet: the first event wakes the loop, no other
                    elif writing is not None and not writing.done():
                        wait = GATHER_S
                    else:  # lingering: woken when its time is up or the batch would be full, not at each event
                        wait = max(0.0, due - loop.time())
                        gather = self.batch_size(items[0].seq, end) - len(items)
                    credits = quiet_credits if self.quiet else STANDING * self.batch
                    msgs = await pull.take(functools.partial(int, credits), wait, gather)  # credits as asked now
                    if stop.is_set():  # the take was interrupted (or ended as the stop came): what it brought is not
                        break  # decoded, and the next term reads it again from the checkpoint
                    if not msgs and not items and until_seq is not None and self.last_seq >= until_seq:
                        break
                    if not msgs and idle and (lost := await self._lost_at_the_end()) is not None:
                        raise self._rewind(lost)
                    if msgs:
                        await absorb(msgs)
                    if items and (writing is None or writing.done()) and loop.time() >= due:
                        if self.quiet:  # what gathered at the server while the batch lingered, in one burst
                            asked = self.batch_size(items[0].seq, end) - len(items)
                            if drained := await pull.drain(asked, IDLE_S):
                                await absorb(drained)
                            self.quiet = len(drained) < asked
                        else:
                            self.quiet = True  # the batch did not fill within its linger: events trickle
                        if items:
                            writing = await self._write_after(writing, items)
                            items = []
                    if msgs:
                        backoff.reset()
                if items:  # decoded before stop was set: written as they would have been
                    writing = await self._write_after(writing, items)
                if writing is not None:
                    await writing
            finally:
                if writing is not None:  # the round ends on another error: let the writes finish (or fail)
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await writing
                with contextlib.suppress(Exception):  # the connection may already be closed
                    await pull.close()

        with on_set(stop, self._interrupt):  # a stop ends the wait in progress, not its IDLE_S
            await supervise(stop, consume, self.durable, on_error=self._errors, backoff=backoff)

    def _interrupt(self) -> None:
        if self._pull is not None:
            self._pull.interrupt()

    def linger(self) -> float:
        """How long the first event of a batch not yet full waits for others.

        ``linger_s``, or longer after a slow write: :data:`LINGER_PER_WRITE` times its duration, at most
        :data:`LINGER_MAX_S`.
        """
        return max(self.linger_s, min(LINGER_MAX_S, LINGER_PER_WRITE * self._last_write_s))

    def batch_size(self, first: int, end: int) -> int:
        """How many events the batch from stream sequence ``first`` on takes at most, the stream ending at ``end``.

        ``batch`` when a batch that full leaves at least as many events after it (catching up, replaying), else
        ``live_batch``: an event with fewer than ``batch`` stored after it is written in a small batch.
        """
        return self.batch if end - (first + self.batch - 1) >= self.batch else self.live_batch

    async def _write_after(self, writing: asyncio.Task[None] | None, items: list[_Item]) -> asyncio.Task[None]:
        """Hand ``items`` on, to be written when ``writing`` (the last batch handed on) has been.

        Returns at once unless a batch is already waiting for the write in progress: it then waits for that write
        (whose error ends the round: these events come again). So the loop goes on decoding the next events
        while the database writes a batch and the one after it waits (and, on PostgreSQL, is folded meanwhile:
        :meth:`_write_then`).
        """
        if self._before is not None:
            await self._before
        self._before = writing
        folded: asyncio.Future[_Folded | None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._write_then(writing, self._folded, folded, items))
        self._folded = folded
        return task

    async def _write_then(
        self,
        before: asyncio.Task[None] | None,
        before_folded: asyncio.Future[_Folded | None] | None,
        folded: asyncio.Future[_Folded | None],
        items: list[_Item],
    ) -> None:
        """Write ``items`` once ``before`` is written; its error is this batch's too (nothing after it is written).

        On PostgreSQL, which writes in a process of its own, ``items`` are folded while ``before`` is written,
        once it is folded (:meth:`_fold_ahead`): this process has its next batch to fold while the database
        works, where it waited about a quarter of a replay. On SQLite the database works in this process (a
        thread of it, which binds every value under the interpreter's lock): folding ahead only shared that
        lock, and cost more than it saved.
        """
        ahead = None
        try:
            if before is not None and before_folded is not None and self._folds_ahead and not before.done():
                either: set[asyncio.Future[Any]] = {before_folded, before}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if before_folded.done() and (base := before_folded.result()) is not None:
                    ahead = await self._fold_ahead(items, base)
            if before is not None:
                await before
            await self._handle_batch(items, ahead, folded)
        finally:
            if not folded.done():
                folded.set_result(None)

    async def _fold_ahead(self, items: list[_Item], base: _Folded) -> _Ahead | None:
        """Fold ``items`` on the rows ``base`` leaves, without the database (None: they need the database).

        ``base`` is still being written: the rows it read and changed are in :attr:`known` already, and every
        other row is taken to be absent; the batch's transaction confirms that (:meth:`Batch.confirm`) and
        checks that ``base`` committed as it was folded, else folds the batch again from the database. The fold
        yields to the loop every :data:`DECODE_SLICE` events, so that ``base``'s write goes on meanwhile.
        """
        todo = [item for item in items if item.seq > base.top and item.event is not None]
        if self._look_up_ids or any(
            isinstance(item.event, ExecutionCreated) and item.event.plan is None for item in todo
        ):
            return None  # ids to look up in the database, or a plan to read from the bus first
        batch = Batch(_pairs(todo), self.known, look_up_ids=False)
        if not batch.load_known():
            return None
        applied = 0
        for first in range(0, len(todo), DECODE_SLICE):
            applied += self._apply(batch, todo[first : first + DECODE_SLICE])
            await asyncio.sleep(0)  # a turn for the write in progress
        return _Ahead(batch, base, applied)

    async def _handle_batch(
        self, items: list[_Item], ahead: _Ahead | None = None, folded: asyncio.Future[_Folded | None] | None = None
    ) -> None:
        """Write one decoded batch: plans read, undecodable events dead-lettered, one transaction with the checkpoint.

        Nothing is acked (:func:`~planexe_ax.bus.topology.projector_consumer`): the committed checkpoint is the
        position. A batch that jumps over an event it lacks is not written (:meth:`_rewind`).

        ``ahead``: the batch folded already (:meth:`_fold_ahead`), used if it holds. ``folded``: set to the batch
        once folded in its transaction, for the next batch to be folded on while this one is written.
        """
        self.batches += 1
        began = time.perf_counter()
        missing = await first_missing(self.bus, self.last_seq, (item.seq for item in items))
        if missing is not None:
            raise self._rewind(missing)
        for item in items:
            await self._read_plan(item)
        outcome = _Outcome()
        for item in items:
            if item.event is None and item.seq > self.last_seq:
                await self._dead_letter(item, outcome)
        try:
            await self._project_batch(items, outcome, ahead, folded)
        except Exception as exc:
            if _is_transient(exc):  # the round ends; the next one pulls again from the checkpoint
                raise
            log.warning("batch failed; projecting event by event", extra={"durable": self.durable, "error": repr(exc)})
            await self._project(items, outcome, isolate=True)
        self._last_write_s = time.perf_counter() - began
        async with self._caught_up:
            self.last_seq = max(self.last_seq, outcome.top)
            self._caught_up.notify_all()

    async def _project_batch(
        self,
        items: list[_Item],
        outcome: _Outcome,
        ahead: _Ahead | None = None,
        folded: asyncio.Future[_Folded | None] | None = None,
    ) -> None:
        """Project the batch in one transaction, its event ids not looked up first while no event comes twice.

        Each batch would otherwise read which of its events are stored already: one query more per batch, for
        events that seldom come twice (a decision published again after the stream's de-duplication window, a
        read model another durable wrote). An event stored already fails the batch on the unique index instead;
        the batch is then written again with the look-up, and so are the next ones until one finds none.
        """
        if not self._look_up_ids:
            try:
                await self._project(items, outcome, isolate=False, look_up_ids=False, ahead=ahead, folded=folded)
                return
            except IntegrityError:  # rolled back; any other failure shows again below
                self._look_up_ids = True
        await self._project(items, outcome, isolate=False, look_up_ids=True, folded=folded)

    def _decode(self, msg: Msg) -> _Item:
        item = _Item(msg=msg, seq=stream_seq(msg))
        try:
            item.event = decode_event_on(self.bus.subjects, msg.subject, msg.data)
            if stored_as_sent(item.event):
                item.data = msg.data.decode()
        except ValueError as exc:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
            item.error = str(exc)
        return item

    async def _read_plan(self, item: _Item) -> None:
        """Put the plan into an ``execution_created`` that refers to it: the read model keeps it with the event."""
        if not isinstance(item.event, ExecutionCreated) or item.event.plan is not None or item.seq <= self.last_seq:
            return
        try:
            item.event = await with_plan(self.bus, item.event)
        except PlanUnavailable as exc:  # dead-lettered with the reason, as an event that does not decode
            item.event, item.error = None, str(exc)

    async def _dead_letter(self, item: _Item, outcome: _Outcome) -> None:
        """Publish the event to ``ax.dlq.projector`` with the reason (once: its id is the stream sequence's).

        Not terminated: the consumer takes no acks, and the checkpoint passes the event like the others.
        """
        await self.bus.dead_letter(DLQ_SOURCE, item.msg, item.error, term=False)
        outcome.settled.add(item.seq)
        self.dead_lettered += 1

    async def _project(
        self,
        items: list[_Item],
        outcome: _Outcome,
        *,
        isolate: bool,
        look_up_ids: bool = True,
        ahead: _Ahead | None = None,
        folded: asyncio.Future[_Folded | None] | None = None,
    ) -> None:
        """Project ``items`` in one transaction with the checkpoint; on any failure forget the rows kept.

        The batch's rows are kept (:attr:`known`) as soon as it is folded, before it is written, so that the
        next batch can be folded meanwhile; a batch that fails takes them back (``known`` cleared).
        """
        batch = None
        try:
            async with self.sessions.begin() as session:
                done = await load_checkpoint(session, self.durable, lock=True)
                if done > self.last_seq:
                    log.warning(
                        "checkpoint moved by another writer", extra={"durable": self.durable, "checkpoint": done}
                    )
                    self.known.clear()
                todo = [item for item in items if item.seq > done and item.event is not None]
                outcome.top = max(done, *(item.seq for item in items))
                if isolate:
                    applied = sum([await self._apply_isolated(session, item, outcome) for item in todo])
                else:
                    batch, applied = await self._fold(session, todo, look_up_ids, ahead, done)
                    self.known.keep(batch.rows)
                    if folded is not None and not folded.done():
                        folded.set_result(_Folded(batch, outcome.top))
                    await batch.write(session)
                await save_checkpoint(session, self.durable, outcome.top)
        except BaseException:
            self.known.clear()  # the batch rolled back (or its commit is in doubt): what was kept may be ahead
            self._committed = None
            raise
        self._committed = batch
        if batch is not None and look_up_ids and not batch.stored_ids:
            self._look_up_ids = False
        self.projected += applied
        log.debug("batch projected", extra={"durable": self.durable, "events": applied, "stream_seq": outcome.top})

    async def _fold(
        self, session: AsyncSession, todo: list[_Item], look_up_ids: bool, ahead: _Ahead | None, done: int
    ) -> tuple[Batch, int]:
        """The batch folded: ``ahead`` when it holds, else one read per table and each event in memory."""
        if (
            ahead is not None
            and not look_up_ids
            and ahead.base.top == done
            and ahead.base.batch is self._committed
            and await ahead.batch.confirm(session)
        ):
            self.folded_ahead += 1
            return ahead.batch, ahead.applied
        batch = Batch(_pairs(todo), self.known, look_up_ids=look_up_ids)
        await batch.load(session)
        return batch, self._apply(batch, todo)

    def _apply(self, batch: Batch, todo: list[_Item]) -> int:
        """Fold ``todo``'s events into ``batch``'s rows, in stream order, inside their process spans when tracing."""
        with contextlib.ExitStack() as spans:
            if tracing_enabled():
                for execution_id, items in _by_execution(todo).items():
                    spans.enter_context(self._span(execution_id, items))
            return sum(batch.apply(item.event, item.seq, item.data) for item in todo if item.event is not None)

    def _span(self, execution_id: str, items: list[_Item]) -> AbstractContextManager[Span]:
        """The process span of an execution's events in one batch: the event's own when it is alone.

        A span per event would cost a busy projector about as much as the write itself (some 40 µs to make and
        15 to export each): a batch's events of one execution share one span, linked to what they carry.
        """
        if len(items) == 1:
            template = self.bus.subjects.template(items[0].msg.subject)
            return process_span(template, items[0].msg, self.durable, execution_id)
        template = self.bus.subjects.template(self.bus.subjects.events_of(execution_id))
        return batch_process_span(template, [item.msg for item in items], self.durable, execution_id)

    async def _apply_isolated(self, session: AsyncSession, item: _Item, outcome: _Outcome) -> int:
        assert item.event is not None
        try:
            async with session.begin_nested():
                applied = await apply_event(session, item.event, item.seq)
        except Exception as exc:
            if _is_transient(exc):
                raise
            item.error = f"projection failed: {exc!r}"
            log.exception("event not projected", extra={"durable": self.durable, "stream_seq": item.seq})
            if item.seq not in outcome.settled:
                await self._dead_letter(item, outcome)
            return 0
        return int(applied)


def _by_execution(items: list[_Item]) -> dict[str, list[_Item]]:
    """The items that decoded, by execution, in stream order."""
    grouped: dict[str, list[_Item]] = {}
    for item in items:
        if item.event is not None:
            grouped.setdefault(item.event.execution_id, []).append(item)
    return grouped


def _pairs(items: list[_Item]) -> list[tuple[int, Event]]:
    """``(stream_seq, event)`` of the items that decoded, as :class:`Batch` takes them."""
    return [(item.seq, item.event) for item in items if item.event is not None]


def _is_transient(exc: BaseException) -> bool:
    """A lost connection or an unavailable database: worth retrying the same batch later."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError)
