"""People in the loop against real services: approval gate and human task answered with `planexe-ax inbox`."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from planexe_ax.bus import Bus, Event, ExecutionStatus, InboxOpened, Plan, SubtaskState, TaskStatus
from planexe_ax.bus.client import control, follow, start_execution
from planexe_ax.cli.services import Services, start_services
from planexe_ax.config import Settings
from tests.helpers.acli import acli

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres]


def gated_plan() -> Plan:
    doc = {"template": "# {n}\n", "variables": {"n": 1}}
    return Plan.model_validate(
        {
            "plan_id": "gated",
            "goal": "people in the loop",
            "phases": [
                {
                    "phase_id": "p",
                    "name": "Work",
                    "tasks": [
                        {
                            "task_id": "budget",
                            "title": "Allocate the budget",
                            "approval_required": True,
                            "subtasks": [{"subtask_id": "budget_doc", "action": "draft_document", "params": doc}],
                        },
                        {
                            "task_id": "call",
                            "title": "Call Carol",
                            "human_required": True,
                            "prerequisites": ["budget"],
                            "subtasks": [{"subtask_id": "call_carol", "action": "human_task"}],
                        },
                    ],
                }
            ],
        }
    )


@pytest.fixture
async def services(nats_url: str, settings: Settings, postgres_url: str) -> AsyncIterator[Services]:
    configured = settings.model_copy(update={"nats_url": nats_url, "database_url": postgres_url})
    started = await start_services(configured, nats_url)
    stop = asyncio.Event()
    runner = asyncio.create_task(started.run(stop))
    yield started
    stop.set()
    await asyncio.wait_for(runner, 30)


@pytest.fixture
def env(nats_url: str, settings: Settings, postgres_url: str) -> dict[str, str]:
    return {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATABASE_URL": postgres_url,
    }


async def next_item(queue: asyncio.Queue[InboxOpened], services: Services, seqs: dict[str, int]) -> InboxOpened:
    item = await asyncio.wait_for(queue.get(), 30)
    assert services.projector is not None
    await services.projector.wait_for_seq(seqs[item.item_id], timeout=30)
    return item


async def test_approval_and_human_task_answered_from_the_command_line(
    bus: Bus, services: Services, env: dict[str, str]
) -> None:
    queue: asyncio.Queue[InboxOpened] = asyncio.Queue()
    seqs: dict[str, int] = {}
    execution_id = await start_execution(bus, gated_plan())

    sub = await bus.js.subscribe(bus.subjects.event(execution_id, "inbox_opened"), ordered_consumer=True)

    async def feed() -> None:
        async for msg in sub.messages:
            item = InboxOpened.model_validate_json(msg.data)
            seqs[item.item_id] = msg.metadata.sequence.stream
            queue.put_nowait(item)

    feeder = asyncio.create_task(feed())
    outcome_task = asyncio.create_task(follow(bus, execution_id, timeout_s=90))

    approval = await next_item(queue, services, seqs)
    assert approval.kind == "approval"
    listed = await acli(["inbox", "list", "--json", "--execution", execution_id], env)
    assert listed.returncode == 0, listed.stderr
    assert [i["item_id"] for i in json.loads(listed.stdout)] == [approval.item_id]

    wrong = await acli(["inbox", "accept", approval.item_id], env)
    assert wrong.returncode == 2
    assert "cannot accept a approval item" in wrong.stderr

    approved = await acli(["inbox", "approve", approval.item_id, "--comment", "fits", "--by", "ann"], env)
    assert approved.returncode == 0, approved.stderr

    human = await next_item(queue, services, seqs)
    assert (human.kind, human.subtask_id) == ("human_task", "call_carol")
    done = await acli(["inbox", "complete", human.item_id, "--output", '{"reached": true}', "--by", "bob"], env)
    assert done.returncode == 0, done.stderr

    again = await acli(["inbox", "approve", approval.item_id], env)
    assert again.returncode == 2
    assert "already closed" in again.stderr

    outcome = await outcome_task
    assert outcome.status == ExecutionStatus.COMPLETED
    feeder.cancel()
    await sub.unsubscribe()

    status, history = await asyncio.gather(
        acli(["exec", "status", execution_id, "--json"], env),
        acli(["inbox", "list", "--all", "--json", "--execution", execution_id], env),
    )
    report = json.loads(status.stdout)
    call = report["tasks"][1]["subtasks"][0]
    assert (call["agent_id"], call["output"]) == ("person-bob", {"reached": True})
    closed = {i["item_id"]: i for i in json.loads(history.stdout)}
    assert closed[approval.item_id]["resolved_by"] == "ann"
    assert closed[approval.item_id]["comment"] == "fits"
    assert closed[approval.item_id]["closed_at"]


async def test_cancel_stops_dispatch_at_once(bus: Bus, services: Services) -> None:
    doc = {"template": "# {n}\n", "variables": {"n": 1}}
    chain: list[dict[str, Any]] = [
        {
            "task_id": f"t{i}",
            "title": f"T{i}",
            "prerequisites": [f"t{i - 1}"] if i else [],
            "subtasks": [{"subtask_id": f"s{i}", "action": "draft_document", "params": doc}],
        }
        for i in range(60)
    ]
    # a person's task at the end: however fast the chain runs, the execution is still open when the cancel lands
    chain.append(
        {
            "task_id": "call",
            "title": "Call Carol",
            "human_required": True,
            "prerequisites": ["t59"],
            "subtasks": [{"subtask_id": "call_carol", "action": "human_task"}],
        }
    )
    plan = Plan.model_validate(
        {"plan_id": "chain", "goal": "a long chain", "phases": [{"phase_id": "p", "name": "Chain", "tasks": chain}]}
    )
    execution_id = await start_execution(bus, plan)
    events: list[Event] = []
    third = asyncio.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, SubtaskState) and event.status == TaskStatus.COMPLETED and event.subtask_id == "s2":
            third.set()

    following = asyncio.create_task(follow(bus, execution_id, on_event, timeout_s=60))
    await asyncio.wait_for(third.wait(), 30)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await control(bus, execution_id, "cancel", "enough")
    outcome = await following
    latency = loop.time() - sent
    assert outcome.status == ExecutionStatus.CANCELLED
    assert latency < 2, f"cancel took {latency:.2f} s"
    end = next(i for i, e in enumerate(events) if getattr(e, "status", None) == ExecutionStatus.CANCELLED)
    assert not [e for e in events[end:] if isinstance(e, SubtaskState) and e.status == TaskStatus.DISPATCHED]
    assert outcome.reason == "enough"
