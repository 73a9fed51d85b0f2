"""A coordinator that takes over rebuilds from every stored event, not only from what its predecessor acked."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from nats.js.errors import NotFoundError

from planexe_ax.bus import (
    Bus,
    Event,
    ExecutionStatus,
    StartExecution,
    Subjects,
    TaskStatus,
    connect,
    decode_event_on,
    utcnow,
)
from planexe_ax.bus.audit_chain import link
from planexe_ax.bus.messages import AuditCheckpoint
from planexe_ax.bus.replay import replay_present
from planexe_ax.config import Settings
from planexe_ax.coordinator.carry import carry_task_moves
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.service import Coordinator
from planexe_ax.coordinator.state import CoreConfig, Emit
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan, result, started

pytestmark = pytest.mark.nats
X = "x-rebuild"


def history() -> list[Event]:
    """A whole run of one subtask as the stream holds it: decisions and the agent's reports, in order."""
    core = CoordinatorCore(CoreConfig(lag_scale_s=0))
    events: list[Event] = []
    effects = core.on_command(StartExecution(execution_id=X, plan=make_plan({"a": 1})), utcnow())
    events += [e.event for e in carry_task_moves(effects, {}) if isinstance(e, Emit)]  # as the coordinator sends them
    for report in (started(X, "a_s0"), result(X, "a_s0")):
        events.append(report)
        events += [e.event for e in carry_task_moves(core.on_event(report, utcnow()), {}) if isinstance(e, Emit)]
    assert core.runs[X].status == ExecutionStatus.COMPLETED
    return events


async def test_the_events_after_the_predecessors_ack_floor_are_state_before_anything_is_decided(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    # Regression: the rebuild stopped at the ack floor and decided at once (and on the first agent list) on a
    # state without the previous leader's last decisions; after a node kill a subtask COMPLETED in the stream
    # was sent to RETRY_WAIT again because its agent's heartbeat had lapsed meanwhile.
    events = history()
    for event in events:
        await bus.publish_event(event)
    stored = (await bus.js.stream_info(bus.subjects.events_stream)).state.last_seq

    coordinator_bus = await connect(settings, nats_url, "coordinator", role="coordinator")
    try:
        successor = Coordinator(coordinator_bus)
        await successor.start()
        run = successor.engine.runs[X]
        assert run.status == ExecutionStatus.COMPLETED
        assert run.subtasks["a_s0"].status == TaskStatus.COMPLETED
        assert successor.rebuilt_events == len(events)
        last = (await bus.js.stream_info(bus.subjects.events_stream)).state.last_seq
        added = [await bus.js.get_msg(bus.subjects.events_stream, seq) for seq in range(stored + 1, last + 1)]
        # nothing decided: at most the signed checkpoint of the ended execution's audit chain
        assert [json.loads(m.data or b"{}")["type"] for m in added] in ([], ["audit_checkpoint"])
    finally:
        await coordinator_bus.close()


async def test_an_event_lost_in_flight_is_read_again_in_its_place_and_the_audit_chain_holds_it(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    """A delivery that never reaches the coordinator (its node went down) comes back only after ack_wait, behind
    newer reports: the coordinator reads again from the last report it handled instead of linking past it."""
    events = history()
    created = next(i for i, e in enumerate(events) if e.type == "subtask_started")
    for event in events[:created]:
        await bus.publish_event(event)
    coordinator_bus = await connect(settings, nats_url, "coordinator", role="coordinator")
    stop = asyncio.Event()
    runner: asyncio.Task[None] | None = None

    async def checkpoint() -> AuditCheckpoint | None:
        try:
            stored = await bus.js.get_last_msg(bus.subjects.events_stream, bus.subjects.event(X, "audit_checkpoint"))
        except NotFoundError:
            return None
        signed = AuditCheckpoint.model_validate_json(stored.data or b"")
        return signed if signed.count > created else None  # the end's, not the rebuild's

    try:
        coordinator = Coordinator(coordinator_bus)
        await coordinator.start()  # rebuilt from what is stored; its consumer delivers what comes after
        reports = [e for e in events[created:] if e.type in ("subtask_started", "subtask_result")]
        for event in reports:
            await bus.publish_event(event)
        durable = Subjects.coordinator_events(coordinator.holder)
        stolen = await bus.js.pull_subscribe_bind(durable, stream=bus.subjects.events_stream)
        [lost] = await stolen.fetch(1, timeout=10)  # delivered elsewhere and never acked: lost in flight
        assert json.loads(lost.data)["type"] == "subtask_started"
        runner = asyncio.create_task(coordinator.run(stop))
        signed = await eventually(checkpoint, timeout=20)
        assert coordinator.engine.runs[X].status == ExecutionStatus.COMPLETED
        head, count = "", 0
        async for stored in replay_present(bus):
            if stored.seq <= signed.up_to_seq and bus.subjects.execution_of(stored.subject) == X:
                head, count = link(head, decode_event_on(bus.subjects, stored.subject, stored.data)), count + 1
        assert (signed.count, signed.head_hash) == (count, head), "every event linked, in stream order"
        assert count == len(events), "the run's events, the lost report among them, up to its end"
    finally:
        stop.set()
        if runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner, 20)
        await coordinator_bus.close()
