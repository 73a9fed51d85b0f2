"""Coordinators sharing the partitions on a real nats-server: the server's hashing, shares, hand-overs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from planexe_ax.bus import Bus, Subjects, connect
from planexe_ax.bus.client import start_execution
from planexe_ax.bus.leader import LeaderLease
from planexe_ax.bus.partitions import partition_of
from planexe_ax.config import Settings
from planexe_ax.coordinator import PartitionedCoordinator
from planexe_ax.errors import ConfigError
from tests.helpers.cluster import lease_holder, partition_key
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan

pytestmark = pytest.mark.nats
PARTITIONS = 8


async def test_the_commands_stream_files_each_command_under_the_partition_the_coordinators_compute(bus: Bus) -> None:
    ids = [f"exec-{i}" for i in range(40)] + ["Mixed_Case-ID", "x", "0f3c9e2a-77b1-4c1e-9d55-0a4e6f1b2c3d"]
    for execution_id in ids:
        await bus.js.publish(bus.subjects.command(execution_id), b"{}")
    info = await bus.js.stream_info(bus.subjects.commands_stream, subjects_filter=bus.subjects.all_commands)
    stored = set(info.state.subjects or {})
    count = bus.settings.partitions
    expected = {bus.subjects.partitioned_command(x, count) for x in ids}
    assert (
        bus.subjects.partitioned_command("x", count) == f"{bus.subjects.namespace}.ax.cmd.{partition_of('x', count)}.x"
    )
    assert stored == expected
    assert len({partition_of(x, count) for x in ids}) > count // 2, "the ids spread over the partitions"


@asynccontextmanager
async def running(settings: Settings, url: str, holder: str) -> AsyncIterator[PartitionedCoordinator]:
    """A started coordinator among others, running until the block ends (then it hands its share over)."""
    bus = await connect(settings, url, f"coordinator-{holder}", role="coordinator")
    coordinator, stop = PartitionedCoordinator(bus, holder=holder), asyncio.Event()
    try:
        await coordinator.start()
        task = asyncio.create_task(coordinator.run(stop))
        try:
            yield coordinator
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    finally:
        await bus.close()


async def test_a_process_with_another_partition_count_is_refused_with_the_reason(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    other = settings.model_copy(update={"partitions": bus.settings.partitions * 2})
    with pytest.raises(ConfigError, match="the same PLANEXE_PARTITIONS"):
        await connect(other, nats_url, "coordinator-x", role="coordinator")


async def test_coordinators_share_the_partitions_each_decides_its_own_and_a_stopping_one_hands_over(
    nats_url: str, settings: Settings
) -> None:
    shared = settings.model_copy(update={"partitions": PARTITIONS, "leader_ttl_s": 6.0})
    every = set(range(PARTITIONS))
    bus = await connect(shared, nats_url, "operator", role="admin")
    try:
        await share_and_hand_over(shared, nats_url, bus, every)
    finally:
        await bus.close()


async def share_and_hand_over(shared: Settings, nats_url: str, bus: Bus, every: set[int]) -> None:
    async with running(shared, nats_url, "a") as a:
        assert a.held == every, "the first coordinator holds every partition"
        async with running(shared, nats_url, "b") as b:

            async def halves() -> bool:
                return len(a.held) == len(b.held) == PARTITIONS // 2 and not a.held & b.held

            await eventually(halves, timeout=30)
            plan = make_plan({"t1": 1})
            ids = [await start_execution(bus, plan) for _ in range(12)]

            async def each_decided_by_its_holder() -> bool:
                for execution_id in ids:
                    holder = a if partition_of(execution_id, PARTITIONS) in a.held else b
                    other = b if holder is a else a
                    if execution_id not in holder.current.engine.runs or execution_id in other.current.engine.runs:
                        return False
                return True

            await eventually(each_decided_by_its_holder, timeout=30)
            assert {await lease_holder(bus, partition_key(bus, x)) for x in ids} == {"a", "b"}
            assert any(partition_of(x, PARTITIONS) in b.held for x in ids), "b decides some of them"
            of_b = [x for x in ids if partition_of(x, PARTITIONS) in b.held]

        async def all_back() -> bool:  # b deleted its keys on stopping: a takes them without waiting for a TTL
            return a.held == every and all(x in a.current.engine.runs for x in of_b)

        await eventually(all_back, timeout=5.0)  # sooner than the lease TTL (6 s)


async def test_a_coordinator_whose_decision_the_stream_refuses_begins_again_with_a_fresh_state(
    nats_url: str, settings: Settings
) -> None:
    shared = settings.model_copy(update={"partitions": 4, "leader_ttl_s": 6.0})
    bus = await connect(shared, nats_url, "operator", role="admin")
    try:
        async with running(shared, nats_url, "a") as a:
            first = a.current
            # Each partition gets a newer term behind a's back (as when a holder paused past its lease is replaced).
            for partition in range(4):
                fence = bus.subjects.partition_fence(partition)
                await LeaderLease(bus, Subjects.partition_lease(partition), "newer", fence).fence()
            execution_id = await start_execution(bus, make_plan({"t1": 1}))  # a's decisions on it are refused

            async def fresh_and_deciding() -> bool:
                return a.current is not first and a.held == {0, 1, 2, 3} and execution_id in a.current.engine.runs

            await eventually(fresh_and_deciding, timeout=60)  # the start comes back to it after ack_wait
            assert a.terms == 2
            assert execution_id not in first.engine.runs or first.held == set(), "the refused state was dropped"
    finally:
        await bus.close()
