"""Plans too large for a message travel by reference to the plan object store, checked by SHA-256 on read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from planexe_ax.bus import (
    Bus,
    CommandRejected,
    ExecutionCreated,
    ExecutionStatus,
    Plan,
    PlanRef,
    StartExecution,
    Subjects,
    connect,
    load_plan,
    new_id,
    plan_store,
    store_plan,
)
from planexe_ax.bus.client import command_verdict, follow, start_execution
from planexe_ax.bus.partitions import partition_of
from planexe_ax.bus.plan_store import digest
from planexe_ax.bus.replay import last_event
from planexe_ax.config import Settings
from planexe_ax.errors import PlanUnavailable
from planexe_ax.projector import Projector
from planexe_ax.readmodel import execution_status
from planexe_ax.readmodel.audit import verify
from tests.helpers.agents import agent, dead_letters, echo
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan
from tests.helpers.inprocess import agent_running, coordinator

pytestmark = pytest.mark.nats


def wide_plan(n: int, pad: int = 0, chain: bool = False) -> Plan:
    """``n`` one-subtask tasks (independent, or each after the one before), each description ``pad`` characters."""
    tasks = [
        {
            "task_id": f"t{i}",
            "title": f"T{i}",
            "description": "x" * pad,
            "prerequisites": [f"t{i - 1}"] if chain and i else [],
            "subtasks": [{"subtask_id": f"s{i}", "action": "echo", "params": {"text": "x"}}],
        }
        for i in range(n)
    ]
    return Plan.model_validate(
        {"plan_id": "wide", "goal": "many", "phases": [{"phase_id": "p", "name": "P", "tasks": tasks}]}
    )


async def last_raw(bus: Bus, stream: str, subject: str) -> dict[str, Any]:
    msg = await bus.js.get_last_msg(stream, subject)
    raw: dict[str, Any] = json.loads(msg.data or b"")
    return raw


async def test_a_stored_plan_reads_back_and_a_missing_or_rewritten_one_is_a_clear_error(bus: Bus) -> None:
    plan = make_plan(["t1", "t2"])
    ref = await store_plan(bus, plan)
    assert ref.sha256 == digest(plan.model_dump_json(by_alias=True).encode())
    assert await load_plan(bus, ref) == plan

    missing = PlanRef(plan_id="p1", sha256="0" * 64, size=10)
    with pytest.raises(PlanUnavailable, match="is not there: it expired or was deleted"):
        await load_plan(bus, missing)

    other = make_plan(["t1", "t3"]).model_dump_json(by_alias=True).encode()
    await (await bus.js.object_store(bus.subjects.plan_objects_bucket)).put(ref.sha256, other)  # an admin's rewrite
    with pytest.raises(PlanUnavailable, match="was tampered with"):
        await load_plan(bus, ref)


async def test_a_plan_of_many_chunks_is_pulled_back_whole_and_one_missing_a_chunk_is_a_clear_error(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are pulled by a consumer of the read's own, which is gone after it."""
    plan = wide_plan(40, pad=20_000)  # about 800 KB of JSON: seven chunks of 128 KiB
    ref = await store_plan(bus, plan)
    stream = bus.subjects.plan_objects_stream
    assert (await bus.js.stream_info(stream)).state.messages > 5
    assert await load_plan(bus, ref) == plan
    assert await bus.js.consumers_info(stream) == [], "the read leaves no consumer behind"

    info = await (await bus.js.object_store(bus.subjects.plan_objects_bucket)).get_info(ref.sha256)
    chunk = await bus.js.get_msg(stream, seq=1, subject=bus.subjects.plan_object_chunks(info.nuid or ""), next=True)
    await bus.js.delete_msg(stream, int(chunk.seq or 0) + 2)  # a chunk in the middle is lost
    monkeypatch.setattr(plan_store, "CHUNKS_WAIT_S", 0.5)
    with pytest.raises(PlanUnavailable, match=r"is incomplete: its chunks did not all come within 0\.5 s"):
        await load_plan(bus, ref)
    assert await bus.js.consumers_info(stream) == []


async def test_a_start_whose_plan_object_is_missing_is_rejected_with_the_reason(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    ref = PlanRef(plan_id="gone", sha256="1" * 64, size=100)
    async with coordinator(settings, nats_url):
        event, _ = await command_verdict(bus, StartExecution(execution_id=new_id(), plan_ref=ref), timeout_s=20)
    assert isinstance(event, CommandRejected)
    assert "plan gone" in event.reason
    assert "is not there" in event.reason


async def test_the_projector_keeps_a_referred_plan_and_dead_letters_one_it_cannot_read(
    bus: Bus, sqlite_url: str
) -> None:
    plan = make_plan(["t1", "t2"])
    ref = await store_plan(bus, plan)
    await bus.publish_event(ExecutionCreated(execution_id="x1", plan_ref=ref))
    lost = PlanRef(plan_id="p1", sha256="2" * 64, size=5)
    await bus.publish_event(ExecutionCreated(execution_id="x2", plan_ref=lost))
    async with Projector(bus, sqlite_url) as projector:
        await projector.run_until_idle()
        assert await execution_status(projector.sessions, "x1") == "CREATED"
        assert await execution_status(projector.sessions, "x2") is None
        report = await verify(bus, projector.sessions, "x1")
        assert report.ok, report.problems
    letters = await dead_letters(bus)
    assert [letter.source for letter in letters] == ["projector"]
    assert "is not there" in letters[0].reason


async def accepted(settings: Settings, nats_url: str, operator: Bus, plan: Plan) -> str:
    """Start ``plan`` with a coordinator that stops once it has accepted it; the execution id."""
    async with coordinator(settings, nats_url) as first:
        execution_id = await start_execution(operator, plan)

        async def created() -> bool:
            return execution_id in first.engine.runs

        await eventually(created, timeout=30)

        async def settled() -> bool:  # the start is acked: its decisions are all on the bus
            durable = Subjects.coordinator_commands(partition_of(execution_id, operator.settings.partitions))
            info = await operator.js.consumer_info(operator.subjects.commands_stream, durable)
            return not info.num_pending and not info.num_ack_pending

        await eventually(settled, timeout=30)
    return execution_id


async def test_a_5000_subtask_plan_of_more_than_1_mb_starts_and_a_restarted_coordinator_reads_it_back(
    nats_url: str, settings: Settings
) -> None:
    """On a nats-server with the default 1 MB max_payload; the new coordinator rebuilds the plan from its object.

    A chain, so that starting it offers one subtask: the test is about the plan's way, not 5,000 runs.
    """
    plan = wide_plan(5000, pad=120, chain=True)
    size = len(plan.model_dump_json(by_alias=True).encode())
    operator = await connect(settings, nats_url, "operator", role="operator")
    try:
        assert size > operator.nc.max_payload >= 1024 * 1024
        execution_id = await accepted(settings, nats_url, operator, plan)
        s = operator.subjects
        stored = s.partitioned_command(execution_id, settings.partitions)
        start = await last_raw(operator, s.commands_stream, stored)
        created = await last_raw(operator, s.events_stream, s.event(execution_id, "execution_created"))
        for message in (start, created):
            assert message["plan"] is None
            assert message["plan_ref"] == {"plan_id": "wide", "sha256": start["plan_ref"]["sha256"], "size": size}
        async with coordinator(settings, nats_url) as second:

            async def rebuilt() -> int:
                run = second.engine.runs.get(execution_id)
                return len(run.subtasks) if run else 0

            assert await eventually(rebuilt, timeout=30) == 5000
            assert second.engine.runs[execution_id].plan == plan
    finally:
        await operator.close()


async def test_a_plan_sent_by_reference_completes_across_a_coordinator_restart(
    nats_url: str, settings: Settings, sqlite_url: str
) -> None:
    by_reference = settings.model_copy(update={"plan_inline_bytes": 0})
    operator = await connect(by_reference, nats_url, "operator", role="operator")
    try:
        execution_id = await accepted(by_reference, nats_url, operator, wide_plan(20))
        stored = operator.subjects.partitioned_command(execution_id, settings.partitions)
        start = await last_raw(operator, operator.subjects.commands_stream, stored)
        assert start["plan"] is None
        async with coordinator(by_reference, nats_url), agent_running(by_reference, nats_url, agent(echo)):
            outcome = await follow(operator, execution_id, timeout_s=60)

            async def end_signed() -> bytes | None:  # the coordinator signs the chain once it reads the end back
                return await last_event(operator, execution_id, "audit_checkpoint")

            await eventually(end_signed)
        assert outcome.status == ExecutionStatus.COMPLETED, outcome
        projecting = await connect(by_reference, nats_url, "projector", role="projector")
        try:
            async with Projector(projecting, sqlite_url) as projector, asyncio.timeout(30):
                await projector.run_until_idle()  # the read model reads the plan object too
                assert await execution_status(projector.sessions, execution_id) == "COMPLETED"
                assert (await verify(projecting, projector.sessions, execution_id)).ok
        finally:
            await projecting.close()
    finally:
        await operator.close()
