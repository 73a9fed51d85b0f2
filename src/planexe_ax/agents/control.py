"""Follow the coordinator's decisions about one execution and pass pause and cancel on to running work.

While an agent works on subtasks of an execution, an :class:`ExecutionWatch` holds core NATS
subscriptions on that execution's ``execution_state``, ``subtask_state`` and ``task_paused`` events
and updates the :class:`~planexe_ax.agents.sdk.TaskContext` of each attempt it runs:

* ``execution_state`` PAUSED pauses every attempt of the execution, RUNNING resumes them, and a final
  state (CANCELLED, FAILED, COMPLETED) cancels them;
* ``task_paused`` pauses or resumes the attempts of one task;
* ``subtask_state`` cancels an attempt when the coordinator has taken it away: a later attempt of the
  same subtask was decided (re-dispatched, reassigned), or the attempt's subtask left the states in
  which an agent holds it (cancelled, failed, timed out into RETRY_WAIT, handed to a person).

The watch receives every ``subtask_state`` of the execution (three per subtask as it runs), nearly all
about subtasks other agents hold: those are told apart by the bytes of their ``subtask_id`` and not
decoded (:func:`about_other_subtask`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Container

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
from planexe_ax.bus.replay import Listening, last_event, listen

log = logging.getLogger(__name__)

HELD = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.BLOCKED})
"""Subtask states in which the agent that took the attempt still holds it."""
KINDS = ("execution_state", "task_paused", "subtask_state")

ErrorFn = Callable[[str, BaseException], None]
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

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe, make sure the server has the interest, then read the execution's latest state.

        The latest ``execution_state`` is read after subscribing, so an execution paused or ended before
        the offer was picked up is seen and no later change falls between the two.
        """
        subjects = [self.bus.subjects.event(self.execution_id, kind) for kind in KINDS]
        self._subtask_subject = subjects[KINDS.index("subtask_state")]
        try:
            self._listening = await listen(self.bus, subjects, self._on_msg)
            await self._catch_up()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Drop the subscriptions."""
        listening, self._listening = self._listening, None
        for exc in await listening.close() if listening else []:  # a closed connection has dropped them anyway
            self.on_error("unsubscribe failed", exc)

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
    async def _on_msg(self, subject: str, data: bytes) -> None:
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
