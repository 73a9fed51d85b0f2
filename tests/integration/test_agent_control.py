"""Rejections, BLOCKED reports, pause and cancel, against a real nats-server.

The coordinator's decisions are published by the tests themselves with ``bus.publish_event``, as the
coordinator would publish them, so the agent runtime is exercised alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from planexe_ax.agents import Agent, AgentRuntime, RejectOffer, TaskContext, WorkCancelled, capability
from planexe_ax.bus import (
    AGENT_REPORTS,
    Bus,
    Event,
    ExecutionState,
    ExecutionStatus,
    SubtaskBlocked,
    SubtaskProgress,
    SubtaskRejected,
    SubtaskResult,
    SubtaskState,
    TaskOffer,
    TaskPaused,
    TaskStatus,
)
from tests.helpers.agents import events, offer, pending_offers, results, short_lease
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats
log = logging.getLogger(__name__)

CANCEL_BOUND_S = 1.0  # the "told to stop within a second", asserted against the measured time


class Empty(BaseModel):
    pass


class CostParams(BaseModel):
    cost: float = 0.0


async def reports(bus: Bus) -> list[Event]:
    """The agent's own events (the stream also holds the decisions the tests publish)."""
    return [e for e in await events(bus) if e.type in AGENT_REPORTS]


@dataclass
class Running:
    """A runtime working in the background until the test ends it."""

    runtime: AgentRuntime
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture
async def start(bus: Bus) -> AsyncIterator[Any]:
    started: list[Running] = []

    def go(agent: Agent, **kwargs: Any) -> Running:
        runtime = AgentRuntime(bus, agent, **kwargs)
        stop = asyncio.Event()
        running = Running(runtime, stop, asyncio.create_task(runtime.run(stop)))
        started.append(running)
        return running

    yield go
    for running in started:
        running.stop.set()
    await asyncio.wait_for(asyncio.gather(*(r.task for r in started)), 20)


def state(work: TaskOffer, status: TaskStatus, attempt: int | None = None, **extra: Any) -> SubtaskState:
    """A ``subtask_state`` decision about ``work``'s subtask, as the coordinator publishes it."""
    return SubtaskState(
        execution_id=work.execution_id,
        task_id=work.task_id,
        subtask_id=work.subtask_id,
        attempt=work.attempt if attempt is None else attempt,
        action=work.action,
        status=status,
        **extra,
    )


# ------------------------------------------------------------------------------------------ rejection
async def test_capability_rejects_the_offer_with_a_reason_code(bus: Bus) -> None:
    @capability("needs_csv")
    async def needs_csv(params: Empty, ctx: TaskContext) -> dict[str, Any]:
        raise RejectOffer("missing_data", "no prospects CSV in the output folder")

    work = offer("needs_csv")
    await bus.publish_offer(work)
    await AgentRuntime(bus, Agent("picky-1", "Picky", capabilities=[needs_csv])).run_until_idle()
    got = await events(bus)
    assert [e.type for e in got] == ["subtask_rejected"], "rejected at once: no start was announced"
    rejected = got[-1]
    assert isinstance(rejected, SubtaskRejected)
    assert rejected.event_id.startswith(f"{work.msg_id}:rejected:")
    assert rejected.reason_code == "missing_data"
    assert rejected.reason == "no prospects CSV in the output folder"
    assert (rejected.subtask_id, rejected.attempt, rejected.agent_id) == ("s1", 1, "picky-1")
    assert await pending_offers(bus) == 0, "a rejected offer is acked"


async def test_accept_hook_rejects_before_any_work(bus: Bus) -> None:
    ran: list[str] = []

    @capability("buy_ads")
    async def buy_ads(params: CostParams, ctx: TaskContext) -> dict[str, Any]:
        ran.append(ctx.subtask_id)
        return {"spent": params.cost}

    def within_budget(work: TaskOffer) -> RejectOffer | None:
        cost = float(work.params.get("cost", 0))
        return RejectOffer("over_budget", f"{cost:g} is over the budget of 100") if cost > 100 else None

    await bus.publish_offer(offer("buy_ads", {"cost": 500}, n=1))
    await bus.publish_offer(offer("buy_ads", {"cost": 40}, n=2))
    thrifty = Agent("thrifty-1", "Thrifty", capabilities=[buy_ads], accept=within_budget)
    await AgentRuntime(bus, thrifty, concurrency=1).run_until_idle()
    assert ran == ["s2"]
    by_subtask: dict[str, list[str]] = {}
    for e in await events(bus):
        by_subtask.setdefault(e.subtask_id or "", []).append(e.type)
    assert by_subtask == {"s1": ["subtask_rejected"], "s2": ["subtask_result"]}
    [rejected] = [e for e in await events(bus) if isinstance(e, SubtaskRejected)]
    assert rejected.reason_code == "over_budget"
    assert rejected.reason == "500 is over the budget of 100"
    assert await pending_offers(bus) == 0


# ------------------------------------------------------------------------------------------ blocked
async def test_blocked_is_reported_then_progress_says_it_runs_again(bus: Bus) -> None:
    short = short_lease(bus)
    deliveries: list[int] = []

    @capability("await_reply")
    async def await_reply(params: Empty, ctx: TaskContext) -> dict[str, Any]:
        deliveries.append(ctx.delivered)
        await ctx.blocked("waiting for the prospect's email reply", max_wait_s=3600)
        await asyncio.sleep(1.5)  # the outside wait under test: longer than the 1 s lease
        await ctx.progress(60, "reply arrived")
        return {"replied": True}

    work = offer("await_reply")
    await short.publish_offer(work)
    await AgentRuntime(short, Agent("mailer-1", "Mailer", capabilities=[await_reply])).run_until_idle()
    got = await events(bus)
    assert [e.type for e in got] == ["subtask_started", "subtask_blocked", "subtask_progress", "subtask_result"]
    blocked, progress, result = got[1], got[2], got[3]
    assert isinstance(blocked, SubtaskBlocked)
    assert blocked.event_id.startswith(f"{work.msg_id}:blocked:1:")
    assert blocked.reason == "waiting for the prospect's email reply"
    assert blocked.max_wait_s == 3600
    assert isinstance(progress, SubtaskProgress)
    assert progress.event_id.startswith(f"{work.msg_id}:progress:1:")
    assert isinstance(result, SubtaskResult)
    assert result.ok
    assert deliveries == [1], "the lease was extended while blocked"
    assert await pending_offers(bus) == 0


# ------------------------------------------------------------------------------------------ cancel
CANCELLING: dict[str, Callable[[TaskOffer], SubtaskState | ExecutionState]] = {
    "subtask cancelled": lambda w: state(w, TaskStatus.CANCELLED, reason="cancelled by ops"),
    "timed out into retry wait": lambda w: state(w, TaskStatus.RETRY_WAIT, reason="heartbeat timeout"),
    "re-dispatched as a later attempt": lambda w: state(w, TaskStatus.DISPATCHED, attempt=w.attempt + 1),
    "execution cancelled": lambda w: ExecutionState(execution_id=w.execution_id, status=ExecutionStatus.CANCELLED),
}


class Stuck:
    """A capability that never checks in: only a hard cancel ends it. Notes each context, its start and its end."""

    def __init__(self, action: str) -> None:
        self.began, self.stopped = asyncio.Event(), asyncio.Event()
        self.seen: list[TaskContext] = []
        self.stopped_at: list[float] = []

        @capability(action)
        async def stuck(params: Empty, ctx: TaskContext) -> dict[str, Any]:
            self.seen.append(ctx)
            self.began.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.stopped_at.append(asyncio.get_running_loop().time())
                self.stopped.set()
                raise
            return {}

        self.capability = stuck


@pytest.mark.parametrize("decision", list(CANCELLING))
async def test_cancel_stops_a_stuck_capability_within_a_second(bus: Bus, start: Any, decision: str) -> None:
    loop = asyncio.get_running_loop()
    stuck = Stuck("stuck")
    work = offer("stuck")
    await bus.publish_offer(work)
    agent = start(Agent("stuck-1", "Stuck", capabilities=[stuck.capability]))
    await asyncio.wait_for(stuck.began.wait(), 10)
    assert agent.runtime.watching == ["e1"]
    published_at = loop.time()
    await bus.publish_event(CANCELLING[decision](work))
    await asyncio.wait_for(stuck.stopped.wait(), 10)
    elapsed = stuck.stopped_at[0] - published_at
    log.info("cancel latency (%s): %.3f s", decision, elapsed)
    assert elapsed < CANCEL_BOUND_S
    assert stuck.seen[0].cancelled
    await eventually(lambda: _acked(bus))
    assert [e.type for e in await reports(bus)] == ["subtask_started"], "no result after a cancel"
    await eventually(lambda: _true(agent.runtime.watching == []))


async def test_an_attempt_taken_away_before_the_agent_took_its_offer_is_cancelled_once_it_lasts(
    bus: Bus, start: Any
) -> None:
    """A subtask's decisions are followed from its announced start, and read back from the offer's issue on."""
    slow = Stuck("slow")
    work = offer("slow")
    await bus.publish_offer(work)
    await bus.publish_event(state(work, TaskStatus.DISPATCHED, attempt=work.attempt + 1))  # before it is taken
    running = start(Agent("slow-1", "Slow", capabilities=[slow.capability]), started_after_s=1.0)
    await asyncio.wait_for(slow.began.wait(), 10)
    watch = running.runtime._watches._watches["e1"]
    assert watch._subtask_listening is None, "the attempt has not lasted yet: its subtask is not followed"
    await asyncio.wait_for(slow.stopped.wait(), 10)
    assert slow.seen[0].stop_reason == f"subtask dispatched (attempt {work.attempt + 1})"
    await eventually(lambda: _acked(bus))
    assert [e.type for e in await reports(bus)] == ["subtask_started"], "no result for an attempt taken away"


async def test_quick_attempts_leave_the_subtasks_of_their_execution_unfollowed(bus: Bus, start: Any) -> None:
    """Attempts that end within ``started_after_s`` never need the decisions about subtasks."""

    @capability("quick")
    async def quick(params: Empty, ctx: TaskContext) -> dict[str, Any]:
        return {"done": ctx.subtask_id}

    works = [offer("quick", n=i) for i in range(3)]
    for work in works:
        await bus.publish_offer(work)
    running = start(Agent("quick-1", "Quick", capabilities=[quick]), started_after_s=30)
    await eventually(lambda: _results_at_least(bus, len(works)))
    watch = running.runtime._watches._watches["e1"]
    assert watch._listening is not None, "the execution's pause and cancel are followed"
    assert watch._subtask_listening is None
    assert [e.type for e in await reports(bus)] == ["subtask_result"] * len(works)


async def _results_at_least(bus: Bus, n: int) -> bool:
    return len(await results(bus)) >= n


async def test_checkpoint_loop_stops_cleanly_on_cancel(bus: Bus, start: Any) -> None:
    loop = asyncio.get_running_loop()
    running, stopped = asyncio.Event(), asyncio.Event()
    seen: list[TaskContext] = []
    outcome: list[tuple[str, float]] = []

    @capability("loop")
    async def loop_cap(params: Empty, ctx: TaskContext) -> dict[str, Any]:
        seen.append(ctx)
        steps = 0
        try:
            while True:
                await ctx.checkpoint()
                steps += 1
                if steps == 3:
                    running.set()
                await asyncio.sleep(0.01)  # one step of the work
        except WorkCancelled as exc:
            outcome.append((str(exc), loop.time()))
            stopped.set()
            return {"steps": steps}
        except asyncio.CancelledError:
            outcome.append(("hard-cancelled", loop.time()))
            stopped.set()
            raise

    work = offer("loop", attempt=2)
    await bus.publish_offer(work)
    start(Agent("looper-1", "Looper", capabilities=[loop_cap]), started_after_s=0)
    await asyncio.wait_for(running.wait(), 10)
    # news that does not concern this attempt, on the same subject and so delivered before the cancel
    await bus.publish_event(state(work, TaskStatus.CANCELLED, attempt=1, reason="an earlier attempt"))
    await bus.publish_event(state(work, TaskStatus.RUNNING, reason="this attempt runs"))
    await bus.publish_event(state(offer("loop", n=9), TaskStatus.CANCELLED, reason="another subtask"))
    published_at = loop.time()
    await bus.publish_event(state(work, TaskStatus.CANCELLED, reason="cancelled by ops"))
    await asyncio.wait_for(stopped.wait(), 10)
    [(how, at)] = outcome
    log.info("cancel latency (checkpoint loop): %.3f s", at - published_at)
    assert how == "subtask cancelled (attempt 2): cancelled by ops", "only the last decision ends this attempt"
    assert at - published_at < CANCEL_BOUND_S
    assert seen[0].stop_reason == how
    await eventually(lambda: _acked(bus))
    assert [e.type for e in await reports(bus)] == ["subtask_started"]


async def test_offer_of_an_ended_execution_is_acked_without_work(bus: Bus) -> None:
    ran: list[str] = []

    @capability("late")
    async def late(params: Empty, ctx: TaskContext) -> dict[str, Any]:
        ran.append(ctx.subtask_id)
        return {}

    await bus.publish_event(ExecutionState(execution_id="e1", status=ExecutionStatus.CANCELLED, reason="by ops"))
    await bus.publish_offer(offer("late"))
    runtime = AgentRuntime(bus, Agent("late-1", "Late", capabilities=[late]))
    await runtime.run_until_idle()
    assert ran == []
    assert await reports(bus) == []
    assert await pending_offers(bus) == 0
    assert runtime.watching == []


# ------------------------------------------------------------------------------------------ pause
async def test_pause_then_resume_makes_checkpoint_wait_then_continue(bus: Bus, start: Any) -> None:
    started, go = asyncio.Event(), [asyncio.Event(), asyncio.Event()]
    entered, passed = [asyncio.Event(), asyncio.Event()], [asyncio.Event(), asyncio.Event()]
    markers: list[str] = []
    seen: list[TaskContext] = []

    @capability("pausable")
    async def pausable(params: Empty, ctx: TaskContext) -> dict[str, Any]:
        seen.append(ctx)
        started.set()
        for phase in (0, 1):
            await go[phase].wait()
            markers.append(f"enter {phase}")
            entered[phase].set()
            await ctx.checkpoint()
            markers.append(f"passed {phase}")
            passed[phase].set()
        return {"phases": 2}

    work = offer("pausable")
    await bus.publish_offer(work)
    start(Agent("pausable-1", "Pausable", capabilities=[pausable]))
    await asyncio.wait_for(started.wait(), 10)
    [ctx] = seen

    # phase 0: the whole execution is paused, then resumed
    await bus.publish_event(ExecutionState(execution_id="e1", status=ExecutionStatus.PAUSED, reason="ops pause"))
    await eventually(lambda: _true(ctx.paused))
    assert ctx.stop_reason == "ops pause"
    go[0].set()
    await asyncio.wait_for(entered[0].wait(), 10)
    markers.append("resume 0")
    await bus.publish_event(ExecutionState(execution_id="e1", status=ExecutionStatus.RUNNING))
    await asyncio.wait_for(passed[0].wait(), 10)
    assert not ctx.paused

    # phase 1: only this task is paused, then resumed
    await bus.publish_event(TaskPaused(execution_id="e1", task_id="t1", paused=True, by="ops"))
    await eventually(lambda: _true(ctx.paused))
    go[1].set()
    await asyncio.wait_for(entered[1].wait(), 10)
    markers.append("resume 1")
    await bus.publish_event(TaskPaused(execution_id="e1", task_id="t1", paused=False, by="ops"))
    await asyncio.wait_for(passed[1].wait(), 10)

    assert markers == ["enter 0", "resume 0", "passed 0", "enter 1", "resume 1", "passed 1"]
    [result] = await eventually(lambda: results(bus))
    assert result.ok
    assert result.output == {"phases": 2}
    assert not ctx.cancelled
    await eventually(lambda: _acked(bus))


async def _acked(bus: Bus) -> bool:
    return await pending_offers(bus) == 0


async def _true(value: bool) -> bool:
    return value
