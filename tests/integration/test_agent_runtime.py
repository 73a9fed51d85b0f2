"""The agent runtime against a real nats-server: offers in, reports out, acks, leases, the agent card."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from planexe_ax.agents import AgentRuntime, TaskContext, builtin_agents, capability
from planexe_ax.bus import AgentCard, Bus, DeadLetter, SubtaskRejected, SubtaskResult, event_ids, utcnow
from tests.helpers.agents import (
    WaitParams,
    agent,
    card,
    echo,
    events,
    fail_permanently,
    fail_transiently,
    offer,
    pending_offers,
    results,
    short_lease,
)
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats


async def test_offer_is_worked_reported_and_acked(bus: Bus) -> None:
    work = offer("echo", {"text": "ab", "times": 2})
    await bus.publish_offer(work)
    runtime = AgentRuntime(bus, agent(), started_after_s=60)
    await runtime.run_until_idle()
    got = await events(bus)
    # its progress report announced the start first, long before started_after_s
    assert [e.type for e in got] == ["subtask_started", "subtask_progress", "subtask_result"]
    kinds = ["started", "progress:1", "result"]
    assert [e.event_id for e in got] == [event_ids.report(bus.report_key, work.msg_id, "tester-1", k) for k in kinds]
    assert all(
        (e.execution_id, e.task_id, e.subtask_id, e.attempt, e.agent_id) == ("e1", "t1", "s1", 1, "tester-1")
        for e in got
    )
    result = got[-1]
    assert isinstance(result, SubtaskResult)
    assert result.ok
    assert result.output == {"text": "abab", "delivered": 1}
    assert result.confidence == 0.9
    assert result.started_at is None, "the start was announced"
    assert await pending_offers(bus) == 0
    assert runtime.handled == 1


@capability("quick")
async def quick(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
    return {"done": True}


async def test_a_quick_capability_is_reported_by_its_result_alone_which_says_when_it_began(bus: Bus) -> None:
    await bus.publish_offer(offer("quick"))
    before = utcnow()
    await AgentRuntime(bus, agent(quick)).run_until_idle()
    [result] = await events(bus)
    assert isinstance(result, SubtaskResult)
    assert (result.ok, result.output) == (True, {"done": True})
    assert result.started_at is not None
    assert before <= result.started_at <= result.ts
    assert await pending_offers(bus) == 0


async def test_a_capability_that_lasts_has_its_start_announced_then_its_result(bus: Bus) -> None:
    go = asyncio.Event()

    @capability("lasting")
    async def lasting(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        await go.wait()
        return {}

    await bus.publish_offer(offer("lasting"))
    runtime = AgentRuntime(bus, agent(lasting), started_after_s=0.05)
    running = asyncio.create_task(runtime.run_until_idle())
    await eventually(lambda: _has(bus, ["subtask_started"]))  # while the capability still waits
    go.set()
    await asyncio.wait_for(running, 20)
    got = await events(bus)
    assert [e.type for e in got] == ["subtask_started", "subtask_result"]
    assert isinstance(got[-1], SubtaskResult)
    assert got[-1].started_at is None, "the started said when it began"


async def _has(bus: Bus, types: list[str]) -> bool:
    return [e.type for e in await events(bus)] == types


async def test_started_after_s_is_not_negative(bus: Bus) -> None:
    with pytest.raises(ValueError, match="started_after_s"):
        AgentRuntime(bus, agent(), started_after_s=-1)


async def test_a_redone_attempt_reports_once(bus: Bus) -> None:
    work = offer("echo", {"text": "x"})
    await bus.publish_offer(work)
    # the same attempt stored a second time stands in for a redelivery after a lost ack
    await bus.publish(bus.subjects.task("echo"), work, msg_id="replayed")
    runtime = AgentRuntime(bus, agent())
    await runtime.run_until_idle()
    assert runtime.handled == 2
    assert await pending_offers(bus) == 0
    assert [e.type for e in await events(bus)] == ["subtask_started", "subtask_progress", "subtask_result"]


async def test_failures_are_reported_with_their_retryability(bus: Bus) -> None:
    await bus.publish_offer(offer("fail_permanently", n=1))
    await bus.publish_offer(offer("fail_transiently", n=2))
    await AgentRuntime(bus, agent(fail_permanently, fail_transiently)).run_until_idle()
    by_subtask = {r.subtask_id: r for r in await results(bus)}
    assert not by_subtask["s1"].ok
    assert not by_subtask["s1"].retryable
    assert by_subtask["s1"].error == "PermanentError: the prospect asked not to be contacted"
    assert not by_subtask["s2"].ok
    assert by_subtask["s2"].retryable
    assert by_subtask["s2"].error == "ConnectionError: calendar API unreachable"
    assert await pending_offers(bus) == 0


async def test_invalid_params_give_a_final_failure(bus: Bus) -> None:
    await bus.publish_offer(offer("echo", {"times": "many"}))
    await AgentRuntime(bus, agent()).run_until_idle()
    got = await events(bus)
    assert [e.type for e in got] == ["subtask_result"]
    [result] = await results(bus)
    assert not result.ok
    assert not result.retryable
    assert result.error is not None
    assert result.error.startswith("invalid params for echo: ")
    assert "text" in result.error
    assert "times" in result.error
    assert await pending_offers(bus) == 0


async def test_garbage_offer_is_dead_lettered(bus: Bus) -> None:
    await bus.js.publish(bus.subjects.task("echo"), b"{not json")
    await AgentRuntime(bus, agent()).run_until_idle()
    assert await pending_offers(bus) == 0
    assert await events(bus) == []
    dlq = await bus.js.stream_info(bus.subjects.dlq_stream)
    assert dlq.state.messages == 1
    letter = DeadLetter.model_validate_json(
        (await bus.js.get_msg(bus.subjects.dlq_stream, dlq.state.last_seq)).data or b""
    )
    assert letter.source == "agents"
    assert letter.reason.startswith("not a TaskOffer")
    assert base64.b64decode(letter.data_b64) == b"{not json"


async def test_direct_offer_reaches_its_agent_and_one_it_cannot_do_is_rejected(bus: Bus) -> None:
    await bus.publish_offer(offer("echo", {"text": "pinned"}), agent_id="tester-1")
    await bus.publish_offer(offer("fail_permanently", n=2), agent_id="tester-1")
    await AgentRuntime(bus, agent()).run_until_idle()
    [result] = await results(bus)
    assert result.subtask_id == "s1"
    assert result.ok
    assert result.output["text"] == "pinned"
    [rejected] = [e for e in await events(bus) if isinstance(e, SubtaskRejected)]
    assert rejected.subtask_id == "s2"
    assert rejected.reason_code == "missing_tool"
    assert rejected.reason == "agent tester-1 does not offer fail_permanently"
    assert await pending_offers(bus) == 0


# ------------------------------------------------------------------------------------------ leases and sharing
async def test_lease_is_extended_while_a_capability_runs_longer_than_ack_wait(bus: Bus) -> None:
    short = short_lease(bus)
    deliveries: list[int] = []

    @capability("slow")
    async def slow(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        deliveries.append(ctx.delivered)
        await asyncio.sleep(params.seconds)  # the work under test: longer than the 1 s lease
        return {"slept": params.seconds}

    await short.publish_offer(offer("slow", {"seconds": 2.5}))
    await AgentRuntime(short, agent(slow), concurrency=4).run_until_idle()
    assert deliveries == [1]
    [result] = await results(bus)
    assert result.ok
    assert result.output == {"slept": 2.5}
    assert await pending_offers(bus) == 0


async def test_two_runtimes_share_one_capability(bus: Bus) -> None:
    seen: dict[str, list[str]] = {}
    both_busy = asyncio.Event()

    @capability("share")
    async def share(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        seen.setdefault(ctx.agent_id, []).append(ctx.subtask_id)
        if len(seen) == 2:
            both_busy.set()
        await asyncio.wait_for(both_busy.wait(), 10)
        return {}

    for n in range(10):
        await bus.publish_offer(offer("share", n=n))
    first = AgentRuntime(bus, agent(share, agent_id="sharer-a"), concurrency=1)
    second = AgentRuntime(bus, agent(share, agent_id="sharer-b"), concurrency=1)
    await asyncio.gather(first.run_until_idle(), second.run_until_idle())
    handled = [s for subtasks in seen.values() for s in subtasks]
    assert sorted(handled) == sorted(f"s{n}" for n in range(10)), "each offer handled exactly once"
    assert set(seen) == {"sharer-a", "sharer-b"}
    assert len(await results(bus)) == 10
    assert await pending_offers(bus) == 0


async def test_an_agent_takes_as_many_offers_as_it_has_room_for_and_reports_each_in_order(bus: Bus) -> None:
    running: set[str] = set()
    most = 0
    six_at_once = asyncio.Event()

    @capability("batch")
    async def batch(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        nonlocal most
        await asyncio.sleep(0)  # it waits on something: with started_after_s=0 its start is announced
        running.add(ctx.subtask_id)
        most = max(most, len(running))
        if most == 6:
            six_at_once.set()
        await asyncio.wait_for(six_at_once.wait(), 10)
        running.discard(ctx.subtask_id)
        return {}

    for n in range(12):
        await bus.publish_offer(offer("batch", n=n))
    runtime = AgentRuntime(bus, agent(batch, agent_id="batcher"), concurrency=6, started_after_s=0)
    await runtime.run_until_idle()
    assert most == 6, "never more offers at once than its concurrency, and as many as that"
    assert runtime.handled == 12
    order = [(e.subtask_id, e.type) for e in await events(bus)]
    for n in range(12):
        mine = [kind for subtask, kind in order if subtask == f"s{n}"]
        assert mine == ["subtask_started", "subtask_result"], (n, mine)
    await eventually(lambda: _none_pending(bus))


async def _none_pending(bus: Bus) -> bool:
    return await pending_offers(bus) == 0


async def test_an_ack_held_for_the_next_reports_leaves_alone_when_none_come(bus: Bus) -> None:
    stop = asyncio.Event()
    runtime = AgentRuntime(bus, agent(echo), ack_hold_s=0.05)
    running = asyncio.create_task(runtime.run(stop))
    await bus.publish_offer(offer("echo", {"text": "a"}))
    await eventually(lambda: _none_pending(bus))  # acked while the runtime runs on, nothing else sent
    assert [r.subtask_id for r in await results(bus)] == ["s1"]
    stop.set()
    await asyncio.wait_for(running, 15)


async def test_held_acks_leave_with_the_next_reports_and_at_stop(bus: Bus) -> None:
    stop = asyncio.Event()
    runtime = AgentRuntime(bus, agent(echo), ack_hold_s=600)
    running = asyncio.create_task(runtime.run(stop))
    await bus.publish_offer(offer("echo", {"text": "a"}, n=1))
    await eventually(lambda: _results_of(bus, 1))
    assert await pending_offers(bus) == 1, "the ack waits for the next reports"
    await bus.publish_offer(offer("echo", {"text": "b"}, n=2))
    await eventually(lambda: _results_of(bus, 2))
    await eventually(lambda: _pending_is(bus, 1))  # the first offer's ack left with the second's reports
    stop.set()
    await asyncio.wait_for(running, 15)
    assert await pending_offers(bus) == 0, "a stop sends the acks held"
    assert runtime.handled == 2


async def _results_of(bus: Bus, n: int) -> bool:
    return len(await results(bus)) == n


async def _pending_is(bus: Bus, n: int) -> bool:
    return await pending_offers(bus) == n


# ------------------------------------------------------------------------------------------ card and shutdown
async def test_card_heartbeat_and_graceful_stop(bus: Bus) -> None:
    gate = asyncio.Event()

    @capability("gated")
    async def gated(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        await asyncio.wait_for(gate.wait(), 10)
        return {"done": True}

    stop = asyncio.Event()
    runtime = AgentRuntime(bus, agent(echo, gated), grace_s=10)
    running = asyncio.create_task(runtime.run(stop))
    first = await eventually(lambda: card(bus, "tester-1"))
    assert [c.action for c in first.capabilities] == ["echo", "gated"]
    assert first.capabilities[0].params_schema["required"] == ["text"]
    await bus.publish_offer(offer("gated", n=7))

    async def busy_card() -> AgentCard | None:
        now = await card(bus, "tester-1")
        return now if now and now.current == ["s7"] and now.heartbeat_at > first.heartbeat_at else None

    await eventually(busy_card)
    stop.set()
    gate.set()
    await asyncio.wait_for(running, 15)
    [result] = await results(bus)
    assert result.ok
    assert result.output == {"done": True}
    assert await pending_offers(bus) == 0
    assert await card(bus, "tester-1") is None


async def test_builtin_researcher_builds_prospects(bus: Bus) -> None:
    researcher = builtin_agents(bus.settings, suffix="it")[0]
    steps = [
        ("search_google_maps", {"query": "dog breeder", "location": "Hampton, CT"}),
        ("manage_csv", {"operation": "import_json"}),
        ("analyze_website", {}),
    ]
    for n, (action, params) in enumerate(steps, start=1):  # one after the other, as the coordinator would
        await bus.publish_offer(offer(action, params, n=n))
        await AgentRuntime(bus, researcher).run_until_idle()
    by_subtask = {r.subtask_id: r for r in await results(bus)}
    assert by_subtask["s1"].ok
    assert by_subtask["s1"].output["simulator"] is True
    assert by_subtask["s2"].ok
    assert by_subtask["s2"].output["rows"] == by_subtask["s1"].output["found"]
    assert by_subtask["s3"].ok
    assert by_subtask["s3"].output["analyzed"] == by_subtask["s2"].output["rows"]
    assert (bus.settings.outputs_dir / "e1" / "PROSPECTS_QUALIFIED.csv").exists()


async def test_stop_hands_back_work_that_outlives_the_grace_period(bus: Bus) -> None:
    gate = asyncio.Event()
    deliveries: list[int] = []

    @capability("stuck")
    async def stuck(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        deliveries.append(ctx.delivered)
        await asyncio.wait_for(gate.wait(), 30)
        return {"delivered": ctx.delivered}

    await bus.publish_offer(offer("stuck"))
    stop = asyncio.Event()
    running = asyncio.create_task(AgentRuntime(bus, agent(stuck), concurrency=1, grace_s=0.2).run(stop))

    async def busy() -> bool:
        now = await card(bus, "tester-1")
        return now is not None and now.current == ["s1"]

    await eventually(busy)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert await results(bus) == []
    assert await pending_offers(bus) == 1
    assert await card(bus, "tester-1") is None
    # the cancelled attempt was nak'ed: a new runtime gets it at once, not after ack_wait (5 s)
    gate.set()
    await AgentRuntime(bus, agent(stuck)).run_until_idle()
    assert deliveries == [1, 2]
    [result] = await results(bus)
    assert result.ok
    assert result.output == {"delivered": 2}


async def test_a_busy_agent_holds_at_most_one_offer_it_cannot_start_and_leaves_the_rest(bus: Bus) -> None:
    gate = asyncio.Event()
    ran: dict[str, list[str]] = {}

    @capability("hold")
    async def hold(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
        ran.setdefault(ctx.agent_id, []).append(ctx.subtask_id)
        await asyncio.wait_for(gate.wait(), 20)
        return {}

    for n in range(8):
        await bus.publish_offer(offer("hold", n=n))
    stop = asyncio.Event()
    first = AgentRuntime(bus, agent(hold, agent_id="holder-a"), concurrency=2)
    second = AgentRuntime(bus, agent(hold, agent_id="holder-b"), concurrency=2)
    running = [asyncio.create_task(first.run(stop))]

    async def busy(runtime: AgentRuntime) -> bool:
        return len(runtime.current) == 2

    await eventually(lambda: busy(first))
    durable = bus.subjects.capability_consumer("hold")
    delivered = (await bus.js.consumer_info(bus.subjects.tasks_stream, durable)).num_ack_pending
    assert delivered <= 3, "two running and at most one waiting for a permit; the others stay on the stream"
    running.append(asyncio.create_task(second.run(stop)))
    await eventually(lambda: busy(second))
    gate.set()

    async def all_handled() -> bool:
        return first.handled + second.handled == 8

    await eventually(all_handled)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*running), 15)
    handled = [s for subtasks in ran.values() for s in subtasks]
    assert sorted(handled) == sorted(f"s{n}" for n in range(8)), "each offer handled exactly once"
    assert len(await results(bus)) == 8
    await eventually(lambda: _none_pending(bus))
