"""What a user-facing command does against the bus: start an execution, follow it, control it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, NoKeysError
from pydantic import ValidationError

from planexe_ax.bus import (
    TERMINAL_EXECUTION,
    AgentCard,
    Backoff,
    Bus,
    CancelExecution,
    CancelTask,
    CommandRejected,
    Event,
    ExecutionState,
    ExecutionStatus,
    PauseExecution,
    PauseTask,
    Plan,
    Reassign,
    ResumeExecution,
    ResumeTask,
    StartExecution,
    decode_event,
    new_id,
)
from planexe_ax.bus.errors import BusClosed
from planexe_ax.bus.leader import PASSING
from planexe_ax.bus.messages import CommandBase, facts
from planexe_ax.bus.replay import ExecutionEvents, StoredEvent, execution_events
from planexe_ax.bus.tracing import start_span

log = logging.getLogger(__name__)
REOPEN_QUIET_S = 10.0
"""How long :func:`follow` waits without an event before it opens its consumer afresh."""


@dataclass(frozen=True)
class Outcome:
    """How a followed execution ended: its final status (None when its start was rejected).

    ``skipped`` counts the messages on the execution's subjects that did not decode as events.
    """

    status: ExecutionStatus | None
    stream_seq: int
    reason: str
    skipped: int = 0


def decoded(stored: StoredEvent) -> Event | None:
    """The event ``stored``, or None (logged) when it does not decode: a reader skips it and goes on."""
    try:
        return decode_event(stored.data)
    except ValueError as exc:  # json's and pydantic's errors both subclass it
        extra = {"subject": stored.subject, "stream_seq": stored.seq, "error": str(exc)[:300]}
        log.warning("undecodable message skipped", extra=extra)
        return None


async def start_execution(bus: Bus, plan: Plan, pins: dict[str, str] | None = None) -> str:
    """Send the start command for ``plan`` and return the new execution id."""
    execution_id = new_id()
    with start_span(execution_id, "cli"):
        await bus.send_command(StartExecution(execution_id=execution_id, plan=plan, pins=pins or {}))
    return execution_id


async def control(bus: Bus, execution_id: str, action: str, reason: str = "") -> None:
    """Send pause, resume or cancel for an execution."""
    kinds = {"pause": PauseExecution, "resume": ResumeExecution, "cancel": CancelExecution}
    await bus.send_command(kinds[action](execution_id=execution_id, reason=reason))


async def control_task(bus: Bus, args: Any) -> None:
    """Send pause-task, resume-task, cancel-task or reassign (``args`` from the command line)."""
    common = {"execution_id": args.execution_id, "task_id": args.task_id}
    if args.exec_command == "reassign":
        await bus.send_command(Reassign(agent_id=args.agent_id, **common))
        return
    kinds = {"pause-task": PauseTask, "resume-task": ResumeTask, "cancel-task": CancelTask}
    await bus.send_command(kinds[args.exec_command](reason=args.reason, **common))


async def follow(
    bus: Bus,
    execution_id: str,
    on_event: Callable[[Event], None] | None = None,
    timeout_s: float | None = None,
    kinds: Iterable[str] | None = None,
) -> Outcome:
    """Read the execution's events from its first until it ends.

    A consumer that cannot be made (the stream electing a leader, its node away) is made again after a
    short wait; one silent for ``REOPEN_QUIET_S`` is made afresh after the last event read.

    Args:
        bus: The connection.
        execution_id: The execution to follow.
        on_event: Called with every event in stream order (a ``task_state`` that rides in a ``subtask_state``
            after it, on its own).
        timeout_s: Give up after this long.
        kinds: Read only events of these types (None: every event). The execution's ``execution_state`` and
            ``command_rejected`` are always read: they say when it ends.

    Raises:
        TimeoutError: when the execution has not ended within ``timeout_s``.
    """
    last_seq = skipped = 0
    retry, never = Backoff(0.1, 2.0), asyncio.Event()
    kinds = None if kinds is None else {*kinds, "execution_state", "command_rejected"}
    subjects = None if kinds is None or "task_state" not in kinds else {*kinds, "subtask_state"}  # where it may ride
    async with asyncio.timeout(timeout_s):
        while True:
            since = bus.reconnected_at
            try:
                async with execution_events(bus, execution_id, last_seq, subjects or kinds) as events:
                    quiet_s = 0.0
                    while bus.reconnected_at == since:  # a server restart loses the consumer: start again after it
                        stored = await events.next(timeout_s=1.0)
                        if stored is None:
                            quiet_s += 1.0
                            if quiet_s >= REOPEN_QUIET_S:
                                break  # an ordered consumer whose reset failed (its stream changed leader) is silent
                            continue
                        quiet_s = 0.0
                        retry.reset()
                        if stored.seq <= last_seq:
                            continue
                        last_seq = stored.seq
                        event = decoded(stored)
                        if event is None:
                            skipped += 1
                            continue
                        if on_event:
                            for fact in facts(event):  # a task's move that rides in its subtask's: on its own
                                if kinds is None or fact.type in kinds:
                                    on_event(fact)
                        if isinstance(event, ExecutionState) and event.status in TERMINAL_EXECUTION:
                            return Outcome(event.status, stored.seq, event.reason, skipped)
                        if isinstance(event, CommandRejected) and event.command == "start":
                            return Outcome(None, stored.seq, event.reason, skipped)
            except BusClosed:
                raise
            except PASSING as exc:  # the stream electing a leader, a node away: open again
                log.warning("following the execution failed; opening again", extra={"error": repr(exc)})
                await retry.wait(never)


async def first_event(
    events: ExecutionEvents, match: Callable[[Event], bool], timeout_s: float
) -> tuple[Event, int] | None:
    """The first event of ``events`` that ``match`` accepts, with its stream sequence; None after ``timeout_s``.

    A ``task_state`` that rides in a ``subtask_state`` is looked at on its own, after it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        stored = await events.next(timeout_s=left)
        if stored is None:
            return None
        event = decoded(stored)
        for fact in facts(event) if event is not None else ():
            if match(fact):
                return fact, stored.seq
    return None


async def command_verdict(bus: Bus, command: CommandBase, timeout_s: float) -> tuple[Event, int]:
    """Send ``command`` and wait for the coordinator's verdict: the first event it caused.

    Returns:
        That event (its effect, or ``command_rejected`` with the reason) and its stream sequence.

    Raises:
        TimeoutError: when no verdict came within ``timeout_s`` (is the coordinator running?).
    """
    async with execution_events(bus, command.execution_id) as events:  # subscribed before sending: nothing is missed
        await bus.send_command(command)
        verdict = await first_event(events, lambda event: event.causation_id == command.command_id, timeout_s)
    if verdict is None:
        raise TimeoutError(f"no answer from the coordinator within {timeout_s:g} s")
    return verdict


async def agent_cards(bus: Bus) -> list[AgentCard]:
    """The cards of the agents registered now (KV ``ax-agents``); unreadable cards are left out."""
    kv = await bus.agents_kv()
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    cards = []
    for key in keys:
        try:
            entry = await kv.get(key)
            cards.append(AgentCard.model_validate_json(entry.value or b""))
        except (KeyNotFoundError, ValidationError):
            continue  # gone since the listing, or not a card: it offers nothing to check against
    return cards


async def execution_known(bus: Bus, execution_id: str) -> bool:
    """Whether the bus has heard of the execution: an event of it, or a command for it (a start not yet taken)."""
    for stream, subject in (
        (bus.subjects.events_stream, bus.subjects.events_of(execution_id)),
        (bus.subjects.commands_stream, bus.subjects.stored_command(execution_id)),
    ):
        info = await bus.js.stream_info(stream, subjects_filter=subject)
        if info.state.subjects:
            return True
    return False


async def plans_stored(bus: Bus) -> int:
    """How many entries the plans bucket holds, deletes included: 0 for a catalog nothing was ever put in."""
    status = await (await bus.plans_kv()).status()
    return int(status.values)
