"""A partition's leadership on a real nats-server: a KV lease (compare-and-set), a fence the stream enforces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from planexe_ax.bus import Bus, Deposed, ExecutionState, ExecutionStatus, connect
from planexe_ax.bus.leader import LeaderLease
from planexe_ax.bus.partitions import partition_of
from planexe_ax.bus.subjects import Subjects
from planexe_ax.config import Settings
from planexe_ax.coordinator import PartitionedCoordinator
from tests.helpers.cluster import lease_holder
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats


@pytest.fixture
async def two(nats_url: str, settings: Settings) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two coordinator connections (the coordinator identity), with a 1 s lease."""
    short = settings.model_copy(update={"leader_ttl_s": 1.0})
    first = await connect(short, nats_url, "coordinator-a", role="coordinator")
    second = await connect(short, nats_url, "coordinator-b", role="coordinator")
    yield first, second
    await first.close()
    await second.close()


def decision(n: int, execution_id: str = "e1") -> ExecutionState:
    return ExecutionState(execution_id=execution_id, status=ExecutionStatus.RUNNING, reason=f"decision {n}")


def lease_of(bus: Bus, holder: str, execution_id: str = "e1") -> tuple[int, LeaderLease]:
    """The lease of the execution's partition, as a candidate ``holder``; the bus fences its decisions."""
    partition = partition_of(execution_id, bus.settings.partitions)
    fence = bus.subjects.partition_fence(partition)
    if bus.fences is None:
        bus.fences = {}
    return partition, LeaderLease(bus, Subjects.partition_lease(partition), holder, fence)


async def test_one_holder_at_a_time_and_a_deposed_leaders_decision_is_refused_by_the_stream(
    two: tuple[Bus, Bus],
) -> None:
    bus_a, bus_b = two
    (partition, a), (_, b) = lease_of(bus_a, "a"), lease_of(bus_b, "b")
    assert await a.try_acquire()
    first_epoch = await a.fence()
    assert bus_a.fences is not None
    assert bus_b.fences is not None
    bus_a.fences[partition] = a.headers
    assert not await b.try_acquire(), "a second candidate took a lease that is held"
    await bus_a.publish_event(decision(1))  # the leader's decisions pass

    # a stops renewing (paused, cut off): its entry expires and b takes over and fences a off
    await eventually(b.try_acquire, timeout=10.0, every=0.1)
    assert await b.fence() > first_epoch
    bus_b.fences[partition] = b.headers
    with pytest.raises(Deposed, match="newer leader"):
        await bus_a.publish_event(decision(2))
    assert not await a.renew(), "the deposed leader renewed a lease another holds"
    await bus_b.publish_event(decision(3))

    stored = await bus_b.js.get_last_msg(bus_b.subjects.events_stream, bus_b.subjects.event("e1", "execution_state"))
    assert b"decision 3" in (stored.data or b"")
    info = await bus_b.js.stream_info(bus_b.subjects.events_stream)
    assert info.state.messages == 4, "two fence markers and two decisions: the refused one is not stored"


async def test_a_released_lease_is_taken_at_once(two: tuple[Bus, Bus]) -> None:
    bus_a, bus_b = two
    (_, a), (_, b) = lease_of(bus_a, "a"), lease_of(bus_b, "b")
    assert await a.try_acquire()
    await a.fence()
    await a.release()
    assert await b.try_acquire(), "a released lease was not free"
    assert a.headers == {}, "a released term forgets its fence"


async def test_a_lapsed_lease_is_taken_back_unless_a_newer_term_fenced(two: tuple[Bus, Bus]) -> None:
    bus_a, bus_b = two
    (_, a), (_, b) = lease_of(bus_a, "a"), lease_of(bus_b, "b")
    assert await a.try_acquire()
    await a.fence()
    kv = await bus_a.js.key_value(bus_a.subjects.leases_bucket)
    await kv.delete(a.role)  # as if a was too busy to renew within the TTL, and nobody took it
    assert await a.renew(), "a lapsed lease that nobody took or fenced was not taken back"
    assert not await b.try_acquire(), "the lease taken back was free for another"

    await kv.delete(a.role)
    assert await b.try_acquire()
    await b.fence()  # a newer term began (and ended) while a's lease had lapsed
    await b.release()
    assert not await a.renew(), "a holder took back a lease after a newer term fenced it off"
    assert await b.try_acquire(), "the key a created to check the fence was not given back"


async def test_a_fenced_decision_about_a_partition_not_held_is_refused_before_it_is_sent(
    two: tuple[Bus, Bus],
) -> None:
    bus_a, _ = two
    bus_a.fences = {}  # fencing, holding nothing
    before = (await bus_a.js.stream_info(bus_a.subjects.events_stream)).state.messages
    with pytest.raises(Deposed, match="not held"):
        await bus_a.publish_event(decision(1))
    with pytest.raises(Deposed, match="not held"):
        await bus_a.publish_many([bus_a.event_publication(decision(2))])
    assert (await bus_a.js.stream_info(bus_a.subjects.events_stream)).state.messages == before


async def test_the_lease_is_kept_from_the_moment_it_is_taken_through_the_rebuild(
    nats_url: str, settings: Settings
) -> None:
    # Regression: the lease was renewed only once the coordinator ran, after its rebuild. A rebuild longer
    # than the TTL (a loaded machine, a long stream) let it lapse: the term ended as it began, for ever.
    short = settings.model_copy(update={"leader_ttl_s": 0.5, "partitions": 4})
    bus = await connect(short, nats_url, "coordinator-a", role="coordinator")
    candidate = PartitionedCoordinator(bus, holder="a")
    keys = [Subjects.partition_lease(p) for p in range(4)]
    try:
        await candidate.start()
        assert candidate.held == {0, 1, 2, 3}, "the first coordinator holds every partition"
        await asyncio.sleep(2.0)  # four TTLs pass before run() is called: the leases must still be ours
        assert [await lease_holder(bus, key) for key in keys] == ["a"] * 4
        stop = asyncio.Event()
        stop.set()
        await candidate.run(stop)  # stopped at once: stops keeping the leases and releases them
        assert [await lease_holder(bus, key) for key in keys] == [None] * 4
    finally:
        await bus.close()
