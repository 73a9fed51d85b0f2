"""The coordinator process: rebuild from AX_EVENTS, then turn events and commands into effects on the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from pydantic import ValidationError

from planexe_ax.bus import (
    Bus,
    Command,
    Deposed,
    Event,
    ExecutionCreated,
    Msg,
    PubAck,
    Publication,
    PullLoop,
    StartExecution,
    Subjects,
    decode_command,
    decode_event_on,
    event_ids,
    needs_plan,
    permanent_publish_error,
    stream_seq,
    with_plan,
)
from planexe_ax.bus.audit_chain import signing_key
from planexe_ax.bus.consumer import Backoff
from planexe_ax.bus.leader import (
    close_coordinator_events,
    default_holder,
    ensure_partition_commands,
    open_coordinator_events,
)
from planexe_ax.bus.partitions import partition_of
from planexe_ax.bus.replay import (
    DeliveryGaps,
    StoredEvent,
    next_report_seq,
    replay_present,
    rewind_if_skipped,
    stored_at,
)
from planexe_ax.bus.topology import coordinator_events_consumer
from planexe_ax.bus.tracing import TRACEPARENT, annotate, decision_span, fail_current, internal_span
from planexe_ax.bus.tracing import enabled as tracing_enabled
from planexe_ax.bus.work import HeldAcks
from planexe_ax.config import Settings
from planexe_ax.coordinator.audit import ChainKeeper
from planexe_ax.coordinator.carry import carry_task_moves
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.directory import AgentDirectory
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, GoOn, Offer, WakeAt
from planexe_ax.errors import PlanUnavailable

log = logging.getLogger(__name__)
DLQ_SOURCE = "coordinator"
EVENTS_BATCH = 256
"""Most events decided on in one round, and the pull credits kept outstanding on the events consumer."""
LINK_SLICE = 2000
"""Most decisions linked into an audit chain in one step: the end of a 50,000-subtask plan read behind its
backlog links over 100,000 at once (about 8 µs each), which would hold the event loop for a second and more."""
COMMANDS_IDLE_S = 5.0
"""How long one pull of a partition's commands waits: a coordinator holding 32 partitions makes about 6 pulls a
second while no command comes (a stop cancels the pulls, so it does not wait for them)."""


def _now() -> datetime:
    return datetime.now(UTC)


def core_config(settings: Settings) -> CoreConfig:
    """The core's policy from the settings."""
    return CoreConfig(
        lag_scale_s=settings.lag_scale_s,
        default_max_attempts=settings.default_max_attempts,
        backoff_initial_s=settings.backoff_initial_s,
        backoff_max_s=settings.backoff_max_s,
        schedule_to_start_s=settings.schedule_to_start_s,
        start_to_close_s=settings.start_to_close_s,
        no_agent_grace_s=settings.no_agent_grace_s,
        agent_ttl_s=settings.agent_ttl_s,
        duplicate_window_s=settings.duplicate_window_s,
        blocked_max_wait_s=settings.blocked_max_wait_s,
        review_threshold=settings.review_threshold,
        approval_actions=frozenset(settings.approval_actions),
        dispatch_slice=settings.dispatch_slice,
    )


class Coordinator:
    """The only writer of the state of the executions of the partitions it holds.

    Alone (:meth:`start`) it holds every partition; among others, :class:`~planexe_ax.coordinator.partitions.
    PartitionedCoordinator` gives it the partitions whose leases it took (:meth:`take`) and takes them back
    (:meth:`drop`). It reads every event through a consumer of its own and skips those of executions whose
    partition it does not hold; it reads each held partition's commands through that partition's durable, so
    a partition's unanswered commands move with it.

    Args:
        bus: A connected bus (topology provisioned).
        config: Retry and lag policy; by default from the bus settings.
        holder: This process's name (its events consumer is named after it); default host, pid and a suffix.
    """

    def __init__(self, bus: Bus, config: CoreConfig | None = None, holder: str | None = None) -> None:
        self.bus = bus
        self.holder = holder or default_holder()
        self.partitions = bus.settings.partitions
        self.held: set[int] = set()
        """The partitions whose executions this coordinator decides."""
        self._rebuilt_to: dict[int, int] = {}
        """By held partition, the last event its rebuild read: the consumer's copies up to there are skipped."""
        self._command_loops: dict[int, asyncio.Task[None]] = {}
        self._lost: set[int] = set()
        """Partitions whose leases ran out and that are not dropped yet."""
        self._deposed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Set (as an exception) when a timer or a commands loop had a decision refused: it ends :meth:`run`."""
        self._running = False
        self.engine = CoordinatorCore(config or core_config(bus.settings))
        self.directory = AgentDirectory(bus, self._on_agents)
        settings = bus.settings
        key = signing_key(settings.effective_audit_key_file)
        self.audit = ChainKeeper(key, settings.audit_checkpoint_every)
        self._lock = asyncio.Lock()
        self._timers: dict[str, tuple[datetime, asyncio.Task[None]]] = {}
        self._going_on: dict[str, asyncio.Task[None]] = {}
        """Executions with a round of their backlog asked for (``GoOn``) and not taken yet."""
        self._stop = asyncio.Event()
        self.rebuilt_events = 0
        self.rebuild_skipped = 0
        """Events the rebuild could not apply (dead-lettered when they were first read): skipped, never fatal."""
        self.dead_lettered = 0
        self._events = coordinator_events_consumer(bus.subjects, self.holder, bus.settings)
        self._read_to = 0
        """The last report of the events consumer handled: a batch after a delivery that never came rewinds here."""
        self._acks = HeldAcks()
        """Acks of reports whose decisions are stored: they leave in the same write as the next round's publishes."""
        self._gaps = DeliveryGaps()
        """Where the events consumer's deliveries jump (a report lost in flight)."""

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Alone: hold every partition, unfenced (:meth:`open`, then :meth:`take` of them all)."""
        await self.open()
        await self.take(set(range(self.partitions)))
        extra = {"rebuilt_events": self.rebuilt_events, "executions": len(self.engine.runs)}
        log.info("coordinator ready", extra=extra)

    async def open(self) -> None:
        """Make this process's events consumer, delivering every event stored from now on.

        Whatever was stored before is read by the rebuild of each partition taken (which reads to the
        stream's end, so it overlaps the consumer: the consumer's copies of what a rebuild read are skipped).
        """
        self._read_to = await open_coordinator_events(self.bus, self.holder)
        self._gaps.reset()

    async def close(self) -> None:
        """Remove this process's events consumer (a crashed process's goes a day after its last use)."""
        await close_coordinator_events(self.bus, self.holder)

    def holds(self, execution_id: str) -> bool:
        """Whether the execution's partition is one this coordinator decides."""
        return partition_of(execution_id, self.partitions) in self.held

    async def take(self, partitions: set[int]) -> None:
        """Decide ``partitions`` from now on: rebuild their executions, then decide what is due and read their commands.

        The rebuild reads to the stream's end, not only to what the previous holder decided on: the events
        after that (its own last decisions, the reports they answered) are state too, and deciding on a state
        without them takes decisions that contradict them (a subtask COMPLETED in the stream sent to
        RETRY_WAIT again because its agent's heartbeat lapsed meanwhile). Reports folded by the rebuild and
        not decided on yet are taken by the decision round that follows it, and the offers of subtasks
        DISPATCHED within the duplicate window are sent again (the stream drops the copy of one stored; one
        the previous holder could not store before it stopped reaches an agent now).
        """
        new = set(partitions) - self.held
        if not new:
            return
        async with self._lock:
            last = await self._rebuild(new)
            await asyncio.gather(*(ensure_partition_commands(self.bus, p) for p in new))
            self.held |= new
            self._rebuilt_to.update(dict.fromkeys(new, last))
            if self._running:
                for partition in new:
                    self._read_commands(partition)
            now = _now()
            mine = [x for x in self.engine.runs if partition_of(x, self.partitions) in new]
            await self._carry_out(self.engine.reoffers(now, mine) + self.engine.tick_all(now, mine), "decide on start")
        extra = {"partitions": sorted(new), "held": len(self.held), "executions": len(mine), "rebuilt_to": last}
        log.info("partitions taken", extra=extra)

    async def drop(self, partitions: set[int]) -> None:
        """Stop deciding ``partitions``: forget their executions; their commands wait for the next holder."""
        async with self._lock:
            gone = set(partitions) & self.held
            self.held -= gone
            self._lost -= set(partitions)
            for partition in gone:
                self._rebuilt_to.pop(partition, None)
                loop = self._command_loops.pop(partition, None)
                if loop is not None:
                    loop.cancel()  # unacked, a command it was reading goes to the next holder
            for execution_id in [x for x in self.engine.runs if partition_of(x, self.partitions) in gone]:
                self.engine.forget(execution_id)
                self.audit.drop(execution_id)
                timer = self._timers.pop(execution_id, None)
                if timer is not None:
                    timer[1].cancel()
        if gone:
            log.info("partitions dropped", extra={"partitions": sorted(gone), "held": len(self.held)})

    def _read_commands(self, partition: int) -> None:
        stream, durable = self.bus.subjects.commands_stream, Subjects.coordinator_commands(partition)
        loop = PullLoop(self.bus, stream, durable, self._on_commands, idle_timeout_s=COMMANDS_IDLE_S)
        self._command_loops[partition] = asyncio.create_task(self._commands(loop))

    async def _commands(self, loop: PullLoop) -> None:
        with self._ends_run_when_deposed():
            await loop.run(self._stop)

    async def _rebuild(self, partitions: set[int]) -> int:
        """Fold every stored event of the executions of ``partitions``; return the sequence of the last event read."""
        last = 0
        count, execution_of = self.partitions, self.bus.subjects.execution_of
        async for stored in replay_present(self.bus):
            last = stored.seq
            if partition_of(execution_of(stored.subject), count) in partitions:
                await self._refold(stored)
        self.audit.rebuilt()
        if self.rebuild_skipped:
            log.warning("rebuild skipped events it cannot apply", extra={"skipped": self.rebuild_skipped})
        return last

    async def _refold(self, stored: StoredEvent) -> None:
        try:
            event = decode_event_on(self.bus.subjects, stored.subject, stored.data)
        except (ValidationError, ValueError):
            self.rebuild_skipped += 1  # undecodable: it was dead-lettered when it was first read
            return
        self.audit.rebuild(stored.seq, event)
        try:
            event = await self._with_plan(event)
        except PlanUnavailable as exc:
            self.rebuild_skipped += 1
            log.error("rebuild skipped an execution whose plan cannot be read", extra={"error": str(exc)})
            return
        try:
            self.engine.fold(event)
        except Exception as exc:  # an event the core cannot apply must not stop every later start
            self.rebuild_skipped += 1
            log.debug("rebuild skipped an event", extra={"event_id": event.event_id, "error": repr(exc)})
            return
        self.rebuilt_events += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Consume events and the held partitions' commands until ``stop`` is set."""
        self._stop = stop
        subjects = self.bus.subjects
        durable = Subjects.coordinator_events(self.holder)
        events = PullLoop(
            self.bus, subjects.events_stream, durable, self._on_events, batch=EVENTS_BATCH, standing=EVENTS_BATCH
        )
        self._running = True
        for partition in self.held:
            self._read_commands(partition)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(events.run(stop))
                group.create_task(self.directory.run(stop))
                ended = group.create_task(self._until_deposed())
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not ended.done():
                    ended.cancel()
        finally:
            self._running = False
            await self._acks.close()
            loops = list(self._command_loops.values())
            self._command_loops.clear()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for _, timer in self._timers.values():
                timer.cancel()
            for going_on in self._going_on.values():
                going_on.cancel()

    # -- handlers ----------------------------------------------------------------------------------
    async def _on_events(self, msgs: list[Msg]) -> None:
        """Decide on a batch of agents' reports, publish every effect of the batch at once, then ack the batch.

        Decisions are applied in memory as they are taken, so the batch decides as one event at a time
        would; waiting for the stream's acks once per batch instead of once per event is what makes a
        busy coordinator fast. A crash before the acks redelivers the batch: its decisions are taken
        again with the same ids, and the stream's de-duplication drops the copies.
        """
        seqs = [stream_seq(msg) for msg in msgs]
        # Lost in flight, a report would come back only after ack_wait, behind newer ones, and the audit chain
        # would link past it: put the consumer back after the last report handled (raises Rewound).
        await rewind_if_skipped(self.bus, self._events, self._read_to, msgs, self._gaps)
        taken: list[Msg] = []
        touched: dict[str, list[Msg]] = {}
        async with self._lock:
            for msg, seq in zip(msgs, seqs, strict=True):
                if not self._mine(msg, seq):
                    taken.append(msg)  # another coordinator's partition, or read by this one's rebuild
                    continue
                await self._fold(msg, seq, touched, taken)
            effects, carried = await self._decide_touched(touched, taken)
            await self._carry_out(effects, "decide on events", carried)
        for msg in taken:  # acked once their decisions are stored: with the next round's publishes, or soon
            self._acks.add(msg)
        self._read_to = max(self._read_to, *seqs)

    def _mine(self, msg: Msg, seq: int) -> bool:
        """Whether the event stored at ``seq`` is this coordinator's to fold: of a held partition, after its rebuild."""
        partition = partition_of(self.bus.subjects.execution_of(msg.subject), self.partitions)
        rebuilt_to = self._rebuilt_to.get(partition)
        return rebuilt_to is not None and seq > rebuilt_to

    async def _fold(self, msg: Msg, seq: int, touched: dict[str, list[Msg]], taken: list[Msg]) -> None:
        """Fold the event in ``msg`` into its execution; note what it touched (its decision span is per batch)."""
        event = await self._decode_known(msg, seq)
        if event is None:
            return
        try:
            execution_id = self.engine.fold_reported(event)
        except Exception as exc:  # a bad event must not stop the coordinator: set it aside
            await self._give_up(msg, f"cannot apply {event.type} {event.event_id}: {exc!r}")
            return
        if execution_id is not None:
            touched.setdefault(execution_id, []).append(msg)
        taken.append(msg)

    async def _decide_touched(
        self, touched: dict[str, list[Msg]], taken: list[Msg]
    ) -> tuple[list[Effect], dict[int, str]]:
        """One decision round per execution the batch changed; a round that fails sets its events aside.

        Returns the effects and, by effect ``id``, the trace context each carries: the round's span, a
        child of the last event that led to it, linked to the others (one span per round, not per message).
        """
        effects: list[Effect] = []
        carried: dict[int, str] = {}
        now = _now()
        for execution_id, msgs in touched.items():
            contexts = [(msg.headers or {}).get(TRACEPARENT) for msg in msgs] if tracing_enabled() else []
            with decision_span("decide on events", execution_id, contexts) as traceparent:
                try:
                    decided = self.engine.decide_folded(execution_id, now)
                except Exception as exc:
                    fail_current(f"cannot decide: {exc!r}")
                    for msg in msgs:
                        taken.remove(msg)
                        await self._give_up(msg, f"cannot decide on execution {execution_id}: {exc!r}")
                    continue
            if traceparent:
                carried.update((id(effect), traceparent) for effect in decided)
            effects += decided
        return effects, carried

    async def _decode_known(self, msg: Msg, seq: int) -> Event | None:
        """The event in ``msg``, or None after dead-lettering it (undecodable, or naming nothing we know)."""
        try:
            event = decode_event_on(self.bus.subjects, msg.subject, msg.data)
        except (ValidationError, ValueError) as exc:
            await self._give_up(msg, f"invalid event: {exc}")
            return None
        self.audit.read(seq, event)
        if not self.engine.knows(event):
            what = f"{event.execution_id}/{event.task_id or '-'}/{event.subtask_id or '-'}"
            await self._give_up(msg, f"event for an unknown execution, task or subtask: {what}")
            return None
        try:
            return await self._with_plan(event)
        except PlanUnavailable as exc:
            await self._give_up(msg, str(exc))
            return None

    async def _with_plan(self, event: Event) -> Event:
        """``event`` with its plan read from the plan object store, when it refers to one this core lacks."""
        if isinstance(event, ExecutionCreated) and needs_plan(event) and event.execution_id not in self.engine.runs:
            return await with_plan(self.bus, event)
        return event

    async def _start_with_plan(self, command: Command) -> Command:
        """``command`` with its plan read from the plan object store, when it is a new start that refers to one."""
        if isinstance(command, StartExecution) and needs_plan(command) and command.execution_id not in self.engine.runs:
            return await with_plan(self.bus, command)
        return command

    async def _give_up(self, msg: Msg, reason: str) -> None:
        """Dead-letter ``msg``; when even that fails it stays unacked and comes back later."""
        try:
            await self.bus.dead_letter(DLQ_SOURCE, msg, reason)
            self.dead_lettered += 1
        except Exception as exc:  # the DLQ is unreachable now: the redelivery will try again
            log.error("dead-lettering failed", extra={"subject": msg.subject, "error": repr(exc)})

    async def _on_commands(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                command = decode_command(msg.data)
            except (ValidationError, ValueError) as exc:
                await self._give_up(msg, f"invalid command: {exc}")
                continue
            annotate(command)
            if not self.holds(command.execution_id):  # its partition was dropped while this was read
                await msg.nak()
                continue
            try:
                command = await self._start_with_plan(command)
            except PlanUnavailable as exc:
                async with self._lock:
                    await self._carry_out(self.engine.refuse(command, _now(), str(exc)))
                await msg.ack()
                continue
            async with self._lock:
                if not self.holds(command.execution_id):
                    await msg.nak()
                    continue
                try:
                    effects = self.engine.on_command(command, _now())
                except Exception as exc:  # a command the core cannot carry out must not block those after it
                    await self._give_up(msg, f"cannot carry out {command.type} {command.command_id}: {exc!r}")
                    continue
                await self._carry_out(effects, "decide on command")
            await msg.ack()

    async def _on_agents(self, online: dict[str, frozenset[str]]) -> None:
        async with self._lock:
            await self._carry_out(self.engine.set_agents(online, _now()), "decide on agents")

    async def _carry_out(
        self, effects: list[Effect], why: str = "decide", carried: dict[int, str] | None = None
    ) -> None:
        """Publish offers and decision events, and arm timers.

        The publishes are sent in order on one connection (an offer before its DISPATCHED event), in one
        pipelined call (:meth:`Bus.publish_many`): one round trip per window of acks instead of one per
        effect, and no task per effect. Each carries the trace context it was decided in (``carried``, by
        effect ``id``); those without one carry a span named ``why`` of their execution (or the current
        span: a command's, a timer's). The engine holds these
        decisions already, so they must reach the stream: a publish that fails (the server is restarting)
        is sent again, all of them, until the stream has them; its de-duplication drops the copies. A
        publish that no retry can cure (a subject that cannot be built, a message too large) goes to the
        DLQ instead, and the others go on. Nothing else is decided meanwhile (the caller holds the lock),
        which keeps the order. A task's move decided with one of its subtask's goes out inside that subtask's
        decision (:func:`~planexe_ax.coordinator.carry.carry_task_moves`).
        """
        carried = dict(carried or {})
        effects = self.audit.stamp(carry_task_moves(effects, carried), carried)
        for effect in effects:
            if isinstance(effect, WakeAt):
                self._arm(effect)
            elif isinstance(effect, GoOn):
                self._go_on(effect)
        publishes = [e for e in effects if isinstance(e, Offer | Emit)]
        if not publishes:
            return
        if tracing_enabled():
            self._trace_rest(publishes, why, carried)
        await self._acks.release()  # the reports' acks held leave in the same write as these decisions
        await self._publish_all(publishes, carried, Backoff(most_s=2.0))
        await self._settle_chains()

    @staticmethod
    def _trace_rest(publishes: list[Offer | Emit], why: str, carried: dict[int, str]) -> None:
        """Give every publish without a context one: a ``why`` span per execution (or the current span)."""
        rest: dict[str, list[Offer | Emit]] = {}
        for effect in publishes:
            if id(effect) not in carried:
                message = effect.offer if isinstance(effect, Offer) else effect.event
                rest.setdefault(message.execution_id, []).append(effect)
        for execution_id, group in rest.items():
            with decision_span(why, execution_id) as traceparent:
                if traceparent:
                    carried.update((id(effect), traceparent) for effect in group)

    async def _publish_all(self, publishes: list[Offer | Emit], carried: dict[int, str], backoff: Backoff) -> None:
        while publishes:
            failed = await self._publish_round(publishes, carried)
            if not failed:
                return
            if self._stop.is_set():
                raise failed[0][1]  # unacked, the batch comes back after a restart and is decided again
            self._check_not_lost(failed)
            # A lost connection or a timeout: the same ids are safe to send again.
            error = repr(failed[0][1])
            log.warning("publishing decisions failed; trying again", extra={"n": len(failed), "error": error})
            publishes = [effect for effect, _ in failed]
            await backoff.wait(self._stop)

    def _check_not_lost(self, failed: list[tuple[Offer | Emit, Exception]]) -> None:
        """Give up a decision round whose partition's lease ran out while it could not be published (cut off).

        The round's decisions are applied in memory and no longer owed by this coordinator: its whole state
        is suspect, so it ends as a deposed one does (and begins again fresh); the next holder decides again.
        """
        for effect, _ in failed:
            message = effect.offer if isinstance(effect, Offer) else effect.event
            if partition_of(message.execution_id, self.partitions) in self._lost:
                why = f"the lease of execution {message.execution_id}'s partition ran out with decisions unpublished"
                raise Deposed(why)

    def lost(self, partitions: set[int]) -> None:
        """The leases of ``partitions`` ran out: decisions about them that cannot be published are given up.

        Called at once (no lock), before :meth:`drop`, which waits for the decision round under way.
        """
        self._lost |= partitions

    async def _publish_round(
        self, publishes: list[Offer | Emit], carried: dict[int, str]
    ) -> list[tuple[Offer | Emit, Exception]]:
        """Publish every effect; dead-letter those no retry can publish; return the others that failed."""
        sent: list[Offer | Emit] = []
        publications: list[Publication] = []
        outcomes: list[tuple[Offer | Emit, PubAck | Exception]] = []
        for effect in publishes:
            try:
                publications.append(self._publication(effect, carried.get(id(effect))))
                sent.append(effect)
            except Exception as exc:  # a subject that cannot be built: dead-lettered below
                outcomes.append((effect, exc))
        try:
            acks = await self.bus.publish_many(publications)
        except Exception as exc:  # the connection is gone: every one of them is tried again
            acks = [exc] * len(publications)
        outcomes += zip(sent, acks, strict=True)
        failed: list[tuple[Offer | Emit, Exception]] = []
        for effect, outcome in outcomes:
            if isinstance(outcome, PubAck):
                if isinstance(effect, Emit):
                    await self._stored(outcome, effect.event)
                continue
            if permanent_publish_error(outcome):
                await self._dead_letter_effect(effect, outcome)
            else:
                failed.append((effect, outcome))
        return failed

    async def _stored(self, ack: PubAck, event: Event) -> None:
        """Give the audit chain a decision the stream stored; when it kept an earlier copy, that copy."""
        if ack.duplicate and ack.seq > self.audit.linked_to(event.execution_id):
            event = await self._stored_copy(ack.seq, event)  # a former leader's: other ts and prev_hash
        self.audit.stored(ack.seq, event)

    async def _stored_copy(self, seq: int, ours: Event) -> Event:
        """The event the stream holds at ``seq``, read until it can be (the chain must hash what is stored)."""
        backoff = Backoff(most_s=2.0)
        while True:
            try:
                stored = await stored_at(self.bus, seq)
                return decode_event_on(self.bus.subjects, stored.subject, stored.data)
            except (ValidationError, ValueError) as exc:  # not an event: nothing to hash in its place
                log.error("a stored copy of a decision does not decode", extra={"seq": seq, "error": str(exc)})
                return ours
            except Exception as exc:
                if self._stop.is_set():
                    raise
                log.warning("reading a stored decision failed; trying again", extra={"seq": seq, "error": repr(exc)})
                await backoff.wait(self._stop)

    async def _settle_chains(self) -> None:
        """Link the decisions that owe a checkpoint once no report can come before them; publish the checkpoints.

        One read of the stream per execution that owes one (every ``audit_checkpoint_every`` events, and at its
        end): its first report stored after the linked part of its chain.
        """
        unsettled = self.audit.unsettled()
        for execution_id, after in unsettled:
            try:
                next_report = await next_report_seq(self.bus, execution_id, after + 1)
            except Exception as exc:  # the stream is unreachable now: the next round settles it
                log.warning("settling an audit chain failed", extra={"execution_id": execution_id, "error": repr(exc)})
                continue
            # A long backlog in slices: the lease keeper and the heartbeats run between them (the lock is held).
            settled = self.audit.settle(execution_id, next_report, most=LINK_SLICE)
            while not settled:
                await asyncio.sleep(0)
                settled = self.audit.settle(execution_id, next_report, most=LINK_SLICE)
        if unsettled:
            await self._carry_out([], "decide on checkpoints")  # the checkpoints linking made due

    def _publication(self, effect: Offer | Emit, traceparent: str | None) -> Publication:
        if isinstance(effect, Offer):
            return self.bus.offer_publication(effect.offer, effect.agent_id, traceparent)
        return self.bus.event_publication(effect.event, traceparent)

    async def _dead_letter_effect(self, effect: Offer | Emit, exc: Exception) -> None:
        """A decision no retry can publish goes to the DLQ, under a stable id, and the coordinator goes on."""
        message = effect.offer if isinstance(effect, Offer) else effect.event
        msg_id = effect.offer.msg_id if isinstance(effect, Offer) else effect.event.event_id
        kind = f"offer {msg_id}" if isinstance(effect, Offer) else f"{effect.event.type} {msg_id}"
        reason = f"cannot publish {kind}: {type(exc).__name__}: {exc}"
        try:
            data = message.model_dump_json().encode()
            await self.bus.dead_letter_data(DLQ_SOURCE, kind, data, reason, event_ids.unpublished(DLQ_SOURCE, msg_id))
            self.dead_lettered += 1
        except Exception as again:  # logged, not retried: the decision is lost, the coordinator is not
            log.error("dead-lettering a decision failed", extra={"decision": kind, "error": repr(again)})

    def _arm(self, wake: WakeAt) -> None:
        current = self._timers.get(wake.execution_id)
        if current and current[0] <= wake.at and not current[1].done():
            return
        if current:
            current[1].cancel()
        self._timers[wake.execution_id] = (wake.at, asyncio.create_task(self._fire(wake)))

    async def _fire(self, wake: WakeAt) -> None:
        await asyncio.sleep(max(0.0, (wake.at - _now()).total_seconds()))
        async with self._lock:
            self._timers.pop(wake.execution_id, None)
            with internal_span("decide on time", wake), self._ends_run_when_deposed():
                await self._carry_out(self.engine.tick(wake.execution_id, _now()), "decide on time")

    def _go_on(self, go_on: GoOn) -> None:
        """Take the execution's next slice of ready work once what is decided now is published.

        The round waits for the lock behind the rounds already waiting (events, commands): a large start
        goes out slice by slice, and the reports on the first slices are decided between them.
        """
        if go_on.execution_id not in self._going_on:
            self._going_on[go_on.execution_id] = asyncio.create_task(self._next_slice(go_on))

    async def _next_slice(self, go_on: GoOn) -> None:
        async with self._lock:
            self._going_on.pop(go_on.execution_id, None)
            if not self.holds(go_on.execution_id):
                return
            with internal_span("decide on backlog", go_on), self._ends_run_when_deposed():
                await self._carry_out(self.engine.go_on(go_on.execution_id, _now()), "decide on backlog")

    @contextlib.contextmanager
    def _ends_run_when_deposed(self) -> Iterator[None]:
        """In a task of its own (a timer, a partition's commands): a refused decision ends :meth:`run`."""
        try:
            yield
        except Deposed as refused:
            if not self._deposed.done():
                self._deposed.set_exception(refused)

    async def _until_deposed(self) -> None:
        await self._deposed  # raises the Deposed a timer or a commands loop met
