"""A coordinator acks the reports it decided on after their decisions are stored, in its next write."""

from __future__ import annotations

import asyncio

import pytest

from planexe_ax.bus import Bus, Subjects, connect
from planexe_ax.bus.client import start_execution
from planexe_ax.bus.codec import decode_event
from planexe_ax.bus.messages import ExecutionStatus
from planexe_ax.bus.replay import execution_events
from planexe_ax.config import Settings
from planexe_ax.coordinator.service import Coordinator
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan, result

pytestmark = pytest.mark.nats
HOLDER = "acks-test"


async def test_a_report_is_acked_after_its_decisions_are_stored_even_when_nothing_else_is_published(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    coordinator_bus = await connect(settings, nats_url, "coordinator", role="coordinator")
    coordinator, stop = Coordinator(coordinator_bus, holder=HOLDER), asyncio.Event()
    await coordinator.start()
    running = asyncio.create_task(coordinator.run(stop))
    durable = Subjects.coordinator_events(HOLDER)
    try:
        x = await start_execution(bus, make_plan({"a": 1}))

        async def offered() -> bool:
            return (await bus.js.stream_info(bus.subjects.tasks_stream)).state.messages == 1

        await eventually(offered)
        report = await bus.publish_event(result(x, "a_s0"))  # the last report: its round ends the execution

        async def acked() -> bool:
            info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
            return bool(info.ack_floor.stream_seq >= report.seq and info.num_ack_pending == 0)

        await eventually(acked)  # with no round after it, the held ack leaves on its own
        async with execution_events(bus, x, 0) as events:
            end = await events.last_stored()
            stored = [decode_event(m.data) async for m in events.through(end, timeout_s=10)]
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
        await coordinator_bus.close()
    ends = [e for e in stored if e.type == "execution_state" and e.status == ExecutionStatus.COMPLETED]
    assert len(ends) == 1, "the report's decisions were stored"
    info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
    assert info.num_redelivered == 0, "acked within its ack wait: never delivered again"
