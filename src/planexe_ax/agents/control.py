"""Follow the coordinator's decisions about one execution and pass pause and cancel on to running work.

While an agent works on subtasks of an execution, an :class:`ExecutionWatch` holds core NATS
subscriptions on that execution's ``execution_state`` and ``task_paused`` events, and, once an attempt
there lasts, on its ``subtask_state`` events, and updates the :class:`~planexe_ax.agents.sdk.TaskContext`
of each attempt it runs:

* ``execution_state`` PAUSED pauses every attempt of the execution, RUNNING resumes them, and a final
  state (CANCELLED, FAILED, COMPLETED) cancels them;
* ``task_paused`` pauses or resumes the attempts of one task;
* ``subtask_state`` cancels an attempt when the coordinator has taken it away: a later attempt of the
  same subtask was decided (re-dispatched, reassigned), or the attempt's subtask left the states in
  which an agent holds it (cancelled, failed, timed out into RETRY_WAIT, handed to a person).

The runtime keeps one watch per execution it works on (:class:`ExecutionWatches`): kept between offers, so
the next offer of a chain finds it ready, and stopped once idle for a while or once its execution ended.

``subtask_state`` is followed only once an attempt of the execution lasts: when its ``subtask_started`` is
announced (:meth:`ExecutionWatch.follow_subtasks`, called by the runtime just before), and from then on for the
watch's life. The subscription gets every ``subtask_state`` of the execution (two or three per subtask), nearly
all about subtasks other agents hold; an attempt that ends within ``started_after_s`` (most of a plan of quick
steps) never needs them, and an agent process is not woken by them. What was decided before the subscription
is read back from the stream, from the offer's ``issued_at`` on, so a decision that took the attempt away
meanwhile (a reassignment right after the dispatch) still cancels it. Events about other subtasks are told
apart by the bytes of their ``subtask_id`` and not decoded (:func:`about_other_subtask`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Container
from datetime import datetime, timedelta

from planexe_ax.agents.sdk import TaskContext
from planexe_ax.bus import (
    TERMINAL_EXECUTION,
    TERMINAL_TASK,
    Bus,
    Event,
    ExecutionState,
    ExecutionStatus,
    SubtaskState,
    TaskPaused,
    TaskStatus,
    decode_event,
)
from planexe_ax.bus.consumer import ErrorsOnce
from planexe_ax.bus.replay import Listening, last_event, listen, stored_since

log = logging.getLogger(__name__)

HELD = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.BLOCKED})
"""Subtask states in which the agent that took the attempt still holds it."""
KINDS = ("execution_state", "task_paused")
"""What a watch follows from its start; ``subtask_state`` too once an attempt lasts (see ``follow_subtasks``)."""
LOOK_BACK_S = 1.0
"""How far before an offer's ``issued_at`` (the coordinator's clock) the stream is read back for decisions about
it: room for the clocks of the coordinator and the server that stored the decisions to differ."""
LOOK_BACK_MOST = 5000
"""The most ``subtask_state`` events read back when an execution's subtasks are first followed (one get each)."""

WATCH_LINGER_S = 30.0
"""How long an execution's watch outlives its last attempt here: the next offer of a chain finds it ready."""
SWEEP_EVERY_S = 1.0
"""How often the watches that have lingered long enough are looked for, at most."""


ErrorFn = Callable[[str, BaseException], None]
"""Told of an error: what failed, and the exception."""
SUBTASK_KEY = b'"subtask_id":"'


def about_other_subtask(data: bytes, subtask_ids: Container[str]) -> bool:
    """True when the event in ``data`` is certainly about none of ``subtask_ids`` (it need not be decoded).

    That is when the JSON has one ``"subtask_id":"<id>"`` key, written compactly (as the coordinator writes
    events), with an id not among ``subtask_ids``. Ids are letters, digits, ``_`` and ``-``, which JSON writes
    as they are. Anything else (no such key, the key twice, e.g. once more in an output) is False: decode it.
    """
    at = data.find(SUBTASK_KEY)
    if at < 0:
        return False
    start = at + len(SUBTASK_KEY)
    end = data.find(b'"', start)
    if end < 0 or data.find(SUBTASK_KEY, end) >= 0:
        return False
    return data[start:end].decode("ascii", "replace") not in subtask_ids


def takes_attempt_away(event: SubtaskState, attempt: int) -> bool:
    """True when ``event`` (about the subtask of ``attempt``) means the attempt's work is over.

    A later attempt, whatever its state, supersedes this one; for this attempt, any state other than
    DISPATCHED, RUNNING or BLOCKED ends it. Earlier attempts' news is ignored; an event without an
    attempt number ends the work only when the subtask is final.
    """
    if event.attempt is None:
        return event.status in TERMINAL_TASK
    if event.attempt != attempt:
        return event.attempt > attempt
    return event.status not in HELD


class ExecutionWatch:
    """The decision events of one execution, applied to the agent's attempts in it.

    Args:
        bus: The connection.
        execution_id: The execution to follow.
        on_error: Called with a description and the exception when an event cannot be read.
    """

    def __init__(self, bus: Bus, execution_id: str, on_error: ErrorFn) -> None:
        self.bus = bus
        self.execution_id = execution_id
        self.on_error = on_error
        self.contexts: list[TaskContext] = []
        self._subtasks: Counter[str] = Counter()
        """The subtask ids of :attr:`contexts` (how many contexts of each)."""
        self._subtask_subject = ""
        self.cancelled = ""
        self._execution_paused: str | None = None
        self._paused_tasks: dict[str, str] = {}
        self._seen_execution_state = False
        self._listening: Listening | None = None
        self._subtask_listening: Listening | None = None
        self._subtask_lock = asyncio.Lock()
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe, make sure the server has the interest, then read the execution's latest state.

        The latest ``execution_state`` is read after subscribing, so an execution paused or ended before
        the offer was picked up is seen and no later change falls between the two.
        """
        subjects = [self.bus.subjects.event(self.execution_id, kind) for kind in KINDS]
        self._subtask_subject = self.bus.subjects.event(self.execution_id, "subtask_state")
        try:
            self._listening = await listen(self.bus, subjects, self._on_msg)
            await self._catch_up()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Drop the subscriptions."""
        self._stopped = True
        for listening in (self._listening, self._subtask_listening):
            for exc in await listening.close() if listening else []:  # a closed connection has dropped them anyway
                self.on_error("unsubscribe failed", exc)
        self._listening = self._subtask_listening = None

    async def follow_subtasks(self, since: datetime) -> None:
        """Follow the execution's ``subtask_state`` from now on, and read back those stored from ``since``.

        Called before an attempt's ``subtask_started`` is sent (the attempt lasts); once per watch, later calls
        return at once. The subscription comes first, then the stream is read back (:func:`stored_since`) from
        ``since`` less :data:`LOOK_BACK_S`: no decision falls between the two. An error is told to ``on_error``;
        the attempt goes on (only a decision taking it away would not reach it).
        """
        if self._follows_subtasks():
            return
        async with self._subtask_lock:
            if self._follows_subtasks():  # another attempt's call did it meanwhile
                return
            try:
                listening = await listen(self.bus, [self._subtask_subject], self._on_msg)
                if self._stopped:  # stopped while subscribing: nothing to follow any more
                    await listening.close()
                    return
                self._subtask_listening = listening
                read = 0
                since = since - timedelta(seconds=LOOK_BACK_S)
                async for stored in stored_since(self.bus, self._subtask_subject, since, LOOK_BACK_MOST):
                    self._on_msg(stored.subject, stored.data)
                    read += 1
                if read >= LOOK_BACK_MOST:
                    log.warning(
                        "read back the first decisions only: one after them that took an attempt away is missed",
                        extra={"execution_id": self.execution_id, "events": read},
                    )
            except Exception as exc:
                self.on_error("cannot follow the execution's subtasks", exc)

    def _follows_subtasks(self) -> bool:
        """Whether ``subtask_state`` is followed already (or never will be: the watch is stopped)."""
        return self._subtask_listening is not None or self._stopped

    async def _catch_up(self) -> None:
        data = await last_event(self.bus, self.execution_id, "execution_state")
        if data is None or self._seen_execution_state:
            return  # none yet, or a live event came in meanwhile (it is at least as new)
        try:
            event = decode_event(data)
        except ValueError as exc:
            self.on_error("unreadable execution state", exc)
            return
        self.apply(event)

    # -- attempts -----------------------------------------------------------------------------------------
    def add(self, ctx: TaskContext) -> None:
        """Follow ``ctx``; it is paused or cancelled at once when the execution already is."""
        self.contexts.append(ctx)
        self._subtasks[ctx.subtask_id] += 1
        self._update(ctx)

    def remove(self, ctx: TaskContext) -> None:
        """Stop following ``ctx``."""
        if any(c is ctx for c in self.contexts):
            self.contexts = [c for c in self.contexts if c is not ctx]
            self._subtasks[ctx.subtask_id] -= 1
            if self._subtasks[ctx.subtask_id] <= 0:
                del self._subtasks[ctx.subtask_id]

    # -- events -------------------------------------------------------------------------------------------
    def _on_msg(self, subject: str, data: bytes) -> None:
        if subject == self._subtask_subject and (not self._subtasks or about_other_subtask(data, self._subtasks)):
            return  # news of subtasks no attempt here runs: it changes nothing here
        try:
            event = decode_event(data)
        except ValueError as exc:  # the coordinator and the projector dead-letter it; here it is skipped
            self.on_error(f"unreadable event on {subject}", exc)
            return
        self.apply(event)

    def apply(self, event: Event) -> None:
        """Apply one decision event of the execution to the attempts followed."""
        if event.execution_id != self.execution_id:
            return
        if isinstance(event, ExecutionState):
            self._seen_execution_state = True
            if event.status in TERMINAL_EXECUTION:
                self.cancelled = f"execution {event.status.value.lower()}" + (
                    f": {event.reason}" if event.reason else ""
                )
            elif event.status == ExecutionStatus.PAUSED:
                self._execution_paused = event.reason or "execution paused"
            elif event.status == ExecutionStatus.RUNNING:
                self._execution_paused = None
            for ctx in self.contexts:
                self._update(ctx)
        elif isinstance(event, TaskPaused) and event.task_id:
            if event.paused:
                self._paused_tasks[event.task_id] = "task paused" + (f" by {event.by}" if event.by else "")
            else:
                self._paused_tasks.pop(event.task_id, None)
            for ctx in self.contexts:
                if ctx.task_id == event.task_id:
                    self._update(ctx)
        elif isinstance(event, SubtaskState):
            for ctx in self.contexts:
                if ctx.subtask_id == event.subtask_id and takes_attempt_away(event, ctx.attempt):
                    why = f"subtask {event.status.value.lower()} (attempt {event.attempt})"
                    ctx.cancel(why + (f": {event.reason}" if event.reason else ""))

    def _update(self, ctx: TaskContext) -> None:
        if self.cancelled:
            ctx.cancel(self.cancelled)
            return
        reason = self._execution_paused or self._paused_tasks.get(ctx.task_id)
        if reason is not None:
            ctx.set_paused(True, reason)
        elif ctx.paused:
            ctx.set_paused(False)


class ExecutionWatches:
    """The runtime's watches, one per execution it works on, kept between offers and stopped when idle.

    A watch outlives its execution's last attempt here by ``WATCH_LINGER_S`` (the next offer of a chain finds
    it ready) and is made afresh after a reconnect (events published while the connection was down were
    missed). Taking a watch that exists costs no lock and no await; starting and stopping watches does.

    Args:
        bus: The connection.
        on_error: Told when an execution cannot be followed or an event cannot be read.
    """

    def __init__(self, bus: Bus, on_error: ErrorsOnce) -> None:
        self.bus = bus
        self.on_error = on_error
        self._watches: dict[str, ExecutionWatch] = {}
        self._lock = asyncio.Lock()
        self._idle: dict[str, float] = {}
        """Executions whose watch has no work now, since when (loop time)."""
        self._since: dict[str, datetime | None] = {}
        """By execution, the reconnect its watch was made after (``Bus.reconnected_at``)."""
        self._next_sweep = 0.0
        """Loop time after which the next attempt to end looks for watches to stop (an ended execution's: at once)."""

    @property
    def watching(self) -> list[str]:
        """Ids of the executions followed for work in them now."""
        return sorted(execution_id for execution_id, watch in self._watches.items() if watch.contexts)

    @contextlib.asynccontextmanager
    async def following(self, ctx: TaskContext) -> AsyncIterator[ExecutionWatch]:
        """Follow the decisions about ``ctx``'s execution while the block runs; the block gets the watch."""
        execution_id = ctx.execution_id
        watch = self._watches.get(execution_id)
        if self._lock.locked() or watch is None or self._since.get(execution_id) != self.bus.reconnected_at:
            async with self._lock:
                watch = await self._watch(execution_id)
                watch.add(ctx)
        else:  # the watch is there and nothing awaits under the lock: taken without the lock (no await here)
            self._idle.pop(execution_id, None)
            watch.add(ctx)
        try:
            yield watch
        finally:
            if self._lock.locked():  # watches are being started or stopped: wait for that first
                async with self._lock:
                    if self._leave(watch, ctx):
                        await self._stop_idle()
            elif self._leave(watch, ctx):  # the bookkeeping does not await: no lock needed for it
                async with self._lock:
                    await self._stop_idle()

    async def close(self) -> None:
        """Stop every watch without work (the runtime is stopping: none has work any more)."""
        async with self._lock:
            await self._stop_idle(everything=True)

    def _leave(self, watch: ExecutionWatch, ctx: TaskContext) -> bool:
        """Stop following ``ctx``; True when the watches left idle should be looked at now (or its execution ended)."""
        watch.remove(ctx)
        now = asyncio.get_running_loop().time()
        if not watch.contexts:
            self._idle[ctx.execution_id] = now
        if now >= self._next_sweep or watch.cancelled:
            self._next_sweep = now + SWEEP_EVERY_S
            return True
        return False

    async def _watch(self, execution_id: str) -> ExecutionWatch:
        """The execution's watch: kept between offers (a chain's next offer finds it), new after a reconnect."""
        watch = self._watches.get(execution_id)
        self._idle.pop(execution_id, None)
        if watch is not None and self._since.get(execution_id) == self.bus.reconnected_at:
            return watch
        if watch is not None:  # events published while the connection was down were missed: follow afresh
            await watch.stop()
        watch = ExecutionWatch(self.bus, execution_id, self.on_error)
        try:
            await watch.start()
        except Exception as exc:  # the work can still be done, only pause and cancel would not reach it
            self.on_error("cannot follow the execution", exc, execution_id=execution_id)
        self._watches[execution_id] = watch
        self._since[execution_id] = self.bus.reconnected_at
        return watch

    async def _stop_idle(self, everything: bool = False) -> None:
        """Stop the watches without work that ended (cancelled, completed) or have been idle for a while."""
        now = asyncio.get_running_loop().time()
        for execution_id, since in list(self._idle.items()):
            watch = self._watches[execution_id]
            if everything or watch.cancelled or now - since > WATCH_LINGER_S:
                del self._watches[execution_id], self._idle[execution_id]
                self._since.pop(execution_id, None)
                await watch.stop()
