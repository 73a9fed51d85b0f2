"""The coordinator rebuilds from AX_EVENTS after a stop mid-run; the projector replays to the same tables."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from planexe_ax.agents import AgentRuntime, builtin_agents
from planexe_ax.bus import Bus, Event, Plan, SubtaskState, TaskStatus, connect, decode_event
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.bus.replay import last_event
from planexe_ax.config import Settings
from planexe_ax.coordinator import Coordinator
from planexe_ax.projector import Projector
from planexe_ax.readmodel import execution_report, table_dump
from planexe_ax.readmodel.audit import verify
from tests.helpers.checks import assert_completed
from tests.helpers.eventually import eventually

pytestmark = [pytest.mark.slow, pytest.mark.nats]


def wide_plan(tasks: int = 10, subtasks: int = 4) -> Plan:
    return Plan.model_validate(
        {
            "plan_id": "wide",
            "goal": "many documents",
            "phases": [
                {
                    "phase_id": "p",
                    "name": "Write",
                    "tasks": [
                        {
                            "task_id": f"t{i}",
                            "title": f"Task {i}",
                            "prerequisites": [f"t{i - 2}"] if i >= 2 else [],
                            "subtasks": [
                                {
                                    "subtask_id": f"t{i}_s{j}",
                                    "action": "draft_document",
                                    "params": {"template": "# Part {n}\n", "variables": {"n": j}},
                                }
                                for j in range(subtasks)
                            ],
                        }
                        for i in range(tasks)
                    ],
                }
            ],
        }
    )


async def stream_events(bus: Bus) -> list[Event]:
    sub = await bus.js.pull_subscribe(bus.subjects.all_events, stream=bus.subjects.events_stream)
    info = await bus.js.stream_info(bus.subjects.events_stream)
    out: list[Event] = []
    while len(out) < info.state.messages:
        for msg in await sub.fetch(min(256, info.state.messages - len(out)), timeout=5):
            assert msg.headers is not None
            assert msg.headers["traceparent"].startswith("00-"), "every message carries a W3C traceparent"
            out.append(decode_event(msg.data))
    await sub.unsubscribe()
    return out


@pytest.fixture
async def agents(nats_url: str, settings: Settings) -> AsyncIterator[None]:
    bus = await connect(settings, nats_url, "agents", role="builtin-agents")
    stop = asyncio.Event()
    runtimes = [AgentRuntime(bus, agent) for agent in builtin_agents(settings, "t")]
    tasks = [asyncio.create_task(r.run(stop)) for r in runtimes]
    yield
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await bus.close()


async def test_coordinator_restarted_mid_run_rebuilds_and_completes_once(
    nats_url: str, settings: Settings, bus: Bus, sqlite_url: str, agents: None
) -> None:
    settings = settings.model_copy(update={"audit_checkpoint_every": 25})  # checkpoints before the restart too
    coordinator_bus = await connect(settings, nats_url, "coordinator-1", role="coordinator")
    first, stop_first = Coordinator(coordinator_bus), asyncio.Event()
    await first.start()
    running = asyncio.create_task(first.run(stop_first))
    plan = wide_plan()
    execution_id = await start_execution(bus, plan)

    completed = 0
    halfway = asyncio.Event()

    def count(event: Event) -> None:
        nonlocal completed
        if isinstance(event, SubtaskState) and event.status == TaskStatus.COMPLETED:
            completed += 1
            if completed == 15:
                halfway.set()

    follower = asyncio.create_task(follow(bus, execution_id, count, timeout_s=90))
    await asyncio.wait_for(halfway.wait(), 60)
    stop_first.set()
    await asyncio.wait_for(running, 30)
    await coordinator_bus.close()

    second_bus = await connect(settings, nats_url, "coordinator-2", role="coordinator")
    second, stop_second = Coordinator(second_bus), asyncio.Event()
    await second.start()
    assert second.rebuilt_events > 0
    assert execution_id in second.engine.runs
    running = asyncio.create_task(second.run(stop_second))
    outcome = await asyncio.wait_for(follower, 90)
    assert outcome.status is not None
    assert outcome.status.value == "COMPLETED"

    async def end_signed() -> bool:
        data = await last_event(bus, execution_id, "audit_checkpoint")
        ended = await last_event(bus, execution_id, "execution_state")
        return data is not None and ended is not None and decode_event(data).ts >= decode_event(ended).ts

    await eventually(end_signed)
    stop_second.set()
    await asyncio.wait_for(running, 30)
    await second_bus.close()

    events = await stream_events(bus)
    done = Counter(e.subtask_id for e in events if isinstance(e, SubtaskState) and e.status == TaskStatus.COMPLETED)
    assert len(done) == 40
    assert set(done.values()) == {1}, "a subtask completed twice"
    assert len({e.event_id for e in events}) == len(events), "an event id was stored twice"

    projector = Projector(bus, sqlite_url)
    await projector.start()
    await projector.run_until_idle()
    report = await execution_report(projector.sessions, execution_id)
    assert report is not None
    assert_completed(report.model_dump())
    audited = await verify(bus, projector.sessions, execution_id)
    assert audited.problems == [], "the chain the restarted coordinator went on with holds, and its checkpoints"
    # one checkpoint after each 25 events, and the checkpoints are among the events: at least one per 26
    assert audited.checkpoints >= len(events) // 26
    await projector.close()


async def test_replaying_a_real_run_gives_identical_tables(
    nats_url: str, settings: Settings, bus: Bus, database_url: str, tmp_path: Path, agents: None
) -> None:
    coordinator_bus = await connect(settings, nats_url, "coordinator", role="coordinator")
    coordinator, stop = Coordinator(coordinator_bus), asyncio.Event()
    await coordinator.start()
    running = asyncio.create_task(coordinator.run(stop))
    execution_id = await start_execution(bus, wide_plan(4, 2))
    outcome = await follow(bus, execution_id, timeout_s=60)
    assert outcome.status is not None
    stop.set()
    await asyncio.wait_for(running, 30)
    await coordinator_bus.close()

    live = Projector(bus, database_url)
    await live.start()
    await live.run_until_idle()
    fresh = Projector(bus, f"sqlite+aiosqlite:///{tmp_path / 'replay.sqlite3'}", durable="replay-check")
    await fresh.start()
    await fresh.run_until_idle()
    assert fresh.last_seq == live.last_seq
    assert await table_dump(fresh.sessions) == await table_dump(live.sessions)
    await live.close()
    await fresh.close()
