"""No message stops the coordinator: poison events and commands go to the DLQ and work goes on, also after a restart."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from planexe_ax.agents import Agent
from planexe_ax.bus import Bus, DeadLetter, ExecutionState, ExecutionStatus, utcnow
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.config import Settings
from planexe_ax.coordinator.directory import AgentDirectory
from planexe_ax.coordinator.state import Emit
from tests.helpers.agents import dead_letters, echo
from tests.helpers.eventually import eventually
from tests.helpers.factories import echo_plan, make_plan
from tests.helpers.inprocess import agent_running, coordinator

pytestmark = pytest.mark.nats

POISON_IDS = ["a.b.c", "x.>", "z" * 300]


def raw_created(execution_id: str) -> bytes:
    """An `execution_created` as a compromised (or older) coordinator could publish it."""
    plan = make_plan(["a"]).model_dump(mode="json", by_alias=True)
    return json.dumps({"type": "execution_created", "execution_id": execution_id, "plan": plan}).encode()


async def publish_raw(bus: Bus, execution_id: str, kind: str, data: bytes) -> None:
    """Publish under the subject the id would give, built by hand: the subject builder refuses such ids."""
    subject = bus.subjects.all_events.removesuffix(">") + f"{execution_id}.{kind}"
    await bus.js.publish(subject, data, headers={"Nats-Msg-Id": f"poison-{len(data)}-{kind}-{execution_id[:20]}"})


async def run_once(bus: Bus, timeout_s: float = 30) -> Any:
    execution_id = await start_execution(bus, echo_plan())
    return await follow(bus, execution_id, timeout_s=timeout_s)


async def publish_report(bus: Bus, execution_token: str, data: bytes) -> None:
    """Publish a report under an execution token built by hand, as agent ``echo-1``."""
    subject = bus.subjects.all_events.removesuffix(">") + f"{execution_token}.subtask_result.echo-1"
    await bus.js.publish(subject, data, headers={"Nats-Msg-Id": f"poison-report-{len(data)}-{execution_token[:20]}"})


def raw_result(execution_id: str) -> bytes:
    return json.dumps({"type": "subtask_result", "execution_id": execution_id, "task_id": "a", "subtask_id": "a_s0",
                       "attempt": 1, "agent_id": "echo-1", "ok": True}).encode()  # fmt: skip


async def test_poison_reports_are_dead_lettered_and_poison_decisions_skipped_and_work_goes_on(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    """Reports that do not decode, name an unsafe id or an execution nobody started go to the DLQ. Decisions only a
    coordinator may publish, which the coordinator does not read back live: its rebuild skips the poison ones."""
    async with agent_running(settings, nats_url, Agent("echo-1", "Echo", capabilities=[echo])):
        async with coordinator(settings, nats_url, "coordinator-1") as first:
            for poison in POISON_IDS:
                await publish_raw(bus, poison, "execution_created", raw_created(poison))
            await publish_report(bus, "z" * 300, raw_result("z" * 300))
            await publish_report(bus, "ok1", b'{"no": "type"}')
            await publish_report(bus, "ok2", raw_result("a.b.c"))
            await publish_report(bus, "nobody", raw_result("nobody"))

            async def all_dead_lettered() -> list[DeadLetter]:
                letters = await dead_letters(bus)
                return letters if len(letters) == 4 else []

            letters = await eventually(all_dead_lettered, timeout=20)
            assert {letter.source for letter in letters} == {"coordinator"}
            assert ["invalid event" in letter.reason for letter in letters] == [True, True, True, False]
            assert "execution_id" in letters[0].reason
            assert "event for an unknown execution" in letters[3].reason
            assert not any(p in first.engine.runs for p in POISON_IDS)
            outcome = await run_once(bus)
            assert outcome.status == ExecutionStatus.COMPLETED, outcome

        async with coordinator(settings, nats_url, "coordinator-2") as second:
            assert second.rebuilt_events > 0
            assert second.rebuild_skipped >= len(POISON_IDS)
            assert not any(p in second.engine.runs for p in POISON_IDS)
            outcome = await run_once(bus)
            assert outcome.status == ExecutionStatus.COMPLETED, outcome
        assert len(await dead_letters(bus)) == 4, "a restart dead-letters nothing again"


async def test_a_decision_the_core_cannot_apply_is_skipped_by_the_rebuild(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    """A well-formed `execution_created` whose plan names a task it does not have (no start would pass it)."""
    plan = make_plan(["a"]).model_dump(mode="json", by_alias=True)
    plan["dependencies"] = [{"from": "a", "to": "ghost", "type": "finish_to_start"}]
    data = json.dumps({"type": "execution_created", "execution_id": "broken", "plan": plan}).encode()
    await publish_raw(bus, "broken", "execution_created", data)
    async with (
        agent_running(settings, nats_url, Agent("echo-1", "Echo", capabilities=[echo])),
        coordinator(settings, nats_url, "coordinator-1") as first,
    ):
        assert "broken" not in first.engine.runs
        assert first.rebuild_skipped == 1
        assert (await run_once(bus)).status == ExecutionStatus.COMPLETED
        await publish_report(bus, "broken", raw_result("broken"))  # a report about it: nobody started it
        letters = await eventually(lambda: dead_letters(bus), timeout=20)
        assert "event for an unknown execution" in letters[0].reason
        assert (await run_once(bus)).status == ExecutionStatus.COMPLETED


async def test_a_decision_that_cannot_be_published_is_dead_lettered(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    """A decision no retry can publish (its subject cannot be built) goes to the DLQ; the next one goes out."""
    unpublishable = ExecutionState.model_construct(
        event_id="bad-decision", execution_id="a.b.c", status=ExecutionStatus.RUNNING, type="execution_state"
    )
    fine = ExecutionState(event_id="good-decision", execution_id="fine", status=ExecutionStatus.RUNNING)
    async with coordinator(settings, nats_url, "coordinator-1") as service:
        await asyncio.wait_for(service._carry_out([Emit(unpublishable), Emit(fine)]), 10)
        letters = await dead_letters(bus)
        assert [letter.reason.split(":")[0] for letter in letters] == ["cannot publish execution_state bad-decision"]
        assert "execution id 'a.b.c'" in letters[0].reason
        stored = await bus.js.get_last_msg(bus.subjects.events_stream, bus.subjects.event("fine", "execution_state"))
        assert b"good-decision" in (stored.data or b"")


async def test_agent_cards_that_do_not_name_a_safe_agent_under_their_own_key_are_ignored(bus: Bus) -> None:
    """A card under a key that is not an id, or for another agent than its key, could route work nowhere."""
    kv = await bus.agents_kv()
    now = utcnow().isoformat()

    def card(agent_id: str) -> bytes:
        return json.dumps({"agent_id": agent_id, "name": "n", "capabilities": [{"action": "echo"}],
                           "started_at": now, "heartbeat_at": now}).encode()  # fmt: skip

    await kv.put("good-1", card("good-1"))
    await kv.put("a.b", card("a.b"))
    await kv.put("other-1", card("good-2"))
    seen: list[dict[str, frozenset[str]]] = []
    stop = asyncio.Event()

    async def on_change(online: dict[str, frozenset[str]]) -> None:
        seen.append(online)
        stop.set()

    await asyncio.wait_for(AgentDirectory(bus, on_change).run(stop), 10)
    assert seen == [{"good-1": frozenset({"echo"})}]
