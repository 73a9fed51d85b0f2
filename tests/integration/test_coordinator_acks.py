"""A coordinator acks the reports it decided on after their decisions are stored, in its next write."""

from __future__ import annotations

import pytest

from planexe_ax.bus import Bus, ExecutionState, Subjects
from planexe_ax.bus.client import start_execution
from planexe_ax.bus.messages import ExecutionStatus
from planexe_ax.config import Settings
from tests.helpers.agents import events, pending_offers
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan, result
from tests.helpers.inprocess import coordinator

pytestmark = pytest.mark.nats


async def test_a_report_is_acked_after_its_decisions_are_stored_even_when_nothing_else_is_published(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    async with coordinator(settings, nats_url) as running:
        durable = Subjects.coordinator_events(running.holder)
        x = await start_execution(bus, make_plan({"a": 1}))

        async def offered() -> bool:
            return await pending_offers(bus) == 1

        await eventually(offered)
        report = await bus.publish_event(result(x, "a_s0"))  # the last report: its round ends the execution

        async def acked() -> bool:
            info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
            return bool(info.ack_floor.stream_seq >= report.seq and info.num_ack_pending == 0)

        await eventually(acked)  # with no round after it, the held ack leaves on its own
        info = await bus.js.consumer_info(bus.subjects.events_stream, durable)
    assert info.num_redelivered == 0, "acked within its ack wait: never delivered again"
    ends = [e for e in await events(bus) if isinstance(e, ExecutionState) and e.status == ExecutionStatus.COMPLETED]
    assert len(ends) == 1, "the report's decisions were stored"
