"""Agents for tests, offers, and what the bus holds after them (shared by the agent test modules)."""

from __future__ import annotations

from typing import Any

from nats.js.errors import KeyNotFoundError
from pydantic import BaseModel

from planexe_ax.agents import Agent, CapabilityOutput, TaskContext, capability
from planexe_ax.bus import AgentCard, Bus, DeadLetter, Event, SubtaskResult, TaskOffer, decode_event
from planexe_ax.errors import PermanentError


class EchoParams(BaseModel):
    text: str
    times: int = 1


class WaitParams(BaseModel):
    seconds: float = 0.0


@capability("echo")
async def echo(params: EchoParams, ctx: TaskContext) -> CapabilityOutput:
    """Repeat the text."""
    await ctx.progress(50, "half way")
    return CapabilityOutput({"text": params.text * params.times, "delivered": ctx.delivered}, confidence=0.9)


@capability("fail_permanently")
async def fail_permanently(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
    """Always fails for good."""
    raise PermanentError("the prospect asked not to be contacted")


@capability("fail_transiently")
async def fail_transiently(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
    """Always fails in a way that may pass."""
    raise ConnectionError("calendar API unreachable")


def offer(action: str, params: dict[str, Any] | None = None, n: int = 1, attempt: int = 1) -> TaskOffer:
    return TaskOffer(
        execution_id="e1",
        plan_id="p1",
        task_id="t1",
        subtask_id=f"s{n}",
        attempt=attempt,
        action=action,
        params=params or {},
    )


async def events(bus: Bus) -> list[Event]:
    state = (await bus.js.stream_info(bus.subjects.events_stream)).state
    if state.messages == 0:
        return []
    fences = bus.subjects.all_fences.removesuffix(">")  # the coordinators' fence markers are not events
    stream = bus.subjects.events_stream
    stored = [await bus.js.get_msg(stream, seq) for seq in range(state.first_seq, state.last_seq + 1)]
    return [decode_event(msg.data or b"") for msg in stored if not (msg.subject or "").startswith(fences)]


async def pending_offers(bus: Bus) -> int:
    return (await bus.js.stream_info(bus.subjects.tasks_stream)).state.messages


async def results(bus: Bus) -> list[SubtaskResult]:
    return [e for e in await events(bus) if isinstance(e, SubtaskResult)]


async def card(bus: Bus, agent_id: str) -> AgentCard | None:
    try:
        entry = await (await bus.agents_kv()).get(agent_id)
    except KeyNotFoundError:
        return None
    return AgentCard.model_validate_json(entry.value or b"")


def agent(*caps: Any, agent_id: str = "tester-1") -> Agent:
    return Agent(agent_id, "Tester", role="tests", capabilities=caps or [echo])


# ------------------------------------------------------------------------------------------ reporting


def short_lease(bus: Bus, ack_wait_s: float = 1.0) -> Bus:
    """The same connection with a shorter offer lease, for tests of lease extension."""
    return Bus(
        nc=bus.nc, js=bus.js, subjects=bus.subjects, settings=bus.settings.model_copy(update={"ack_wait_s": ack_wait_s})
    )


async def dead_letters(bus: Bus) -> list[DeadLetter]:
    info = await bus.js.stream_info(bus.subjects.dlq_stream)
    if info.state.messages == 0:
        return []
    letters = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await bus.js.get_msg(bus.subjects.dlq_stream, seq)
        letters.append(DeadLetter.model_validate_json(raw.data or b""))
    return letters
