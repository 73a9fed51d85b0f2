"""Reading a KV bucket in batches with direct gets: everything first, then what changed, in few requests."""

import asyncio
from collections.abc import AsyncGenerator

import pytest
from nats.js.api import KeyValueConfig

from planexe_ax.bus import Bus, connect, ensure_topology
from planexe_ax.bus.kv_reads import DirectBatches, DirectGetRefused, agent_changes, kv_changes, read_since
from planexe_ax.bus.leader import _coordinator_keys_watched, coordinator_keys
from planexe_ax.config import Settings

pytestmark = pytest.mark.nats


async def test_a_read_returns_every_entry_stored_after_it_in_batches(bus: Bus) -> None:
    kv, bucket = await bus.agents_kv(), bus.subjects.agents_bucket
    for i in range(5):
        await kv.put(f"k-{i}", f"v{i}".encode())
    await kv.delete("k-1")
    reader = DirectBatches(bus, f"KV_{bucket}")
    try:
        entries, last = await asyncio.wait_for(read_since(reader, f"$KV.{bucket}.", 0, batch=2), 5)
        assert [(e.key, e.value, e.removed) for e in entries] == [
            ("k-0", b"v0", False), ("k-2", b"v2", False), ("k-3", b"v3", False), ("k-4", b"v4", False),
            ("k-1", b"", True),
        ]  # fmt: skip
        assert last == entries[-1].revision
        assert all(e.created is not None for e in entries)
        await kv.put("k-2", b"again")
        again, after = await asyncio.wait_for(read_since(reader, f"$KV.{bucket}.", last), 5)
        assert [(e.key, e.value) for e in again] == [("k-2", b"again")]
        assert await asyncio.wait_for(read_since(reader, f"$KV.{bucket}.", after), 5) == ([], after)
    finally:
        await reader.close()


async def test_changes_come_as_one_batch_per_read_and_empty_ones_in_between(bus: Bus) -> None:
    kv, stop = await bus.agents_kv(), asyncio.Event()
    await kv.put("a-1", b"one")
    batches = kv_changes(bus, bus.subjects.agents_bucket, stop, poll_s=0.05)
    assert isinstance(batches, AsyncGenerator)
    first = await asyncio.wait_for(anext(batches), 5)
    assert [e.key for e in first] == ["a-1"]
    assert await asyncio.wait_for(anext(batches), 5) == []
    for value in (b"two", b"three"):
        await kv.put("a-1", value)
    async with asyncio.timeout(5):
        async for batch in batches:
            if batch:
                assert [e.value for e in batch] == [b"three"]  # the bucket keeps a key's last put only
                break
    stop.set()
    await batches.aclose()


async def test_a_stream_without_direct_gets_is_refused_by_name(bus: Bus) -> None:
    reader = DirectBatches(bus, "NO_SUCH_STREAM")
    try:
        with pytest.raises(DirectGetRefused, match="NO_SUCH_STREAM"):
            await asyncio.wait_for(read_since(reader, "$KV.none.", 0), 5)
    finally:
        await reader.close()


async def test_coordinator_keys_leave_out_released_keys(bus: Bus) -> None:
    kv = await bus.leases_kv()
    await kv.put("coordinator.member.c-1", b"c-1")
    await kv.put("coordinator.member.c-2", b"c-2")
    await kv.put("coordinator.partition.3", b"c-1")
    await kv.put("coordinator.partition.4", b"c-2")
    await kv.delete("coordinator.partition.4")
    await kv.delete("coordinator.member.c-2")
    await kv.put("coordinator.partition.5", b"c-1")
    members, taken = await asyncio.wait_for(coordinator_keys(bus), 5)
    assert (members, taken) == ({"c-1"}, {3, 5})
    watched = await asyncio.wait_for(_coordinator_keys_watched(bus), 5)  # a server before 2.11
    assert watched == {"coordinator.member.c-1", "coordinator.partition.3", "coordinator.partition.5"}


@pytest.mark.parametrize("batched", [True, False])
async def test_agent_changes_begin_with_every_card_in_one_batch(bus: Bus, batched: bool) -> None:
    kv, stop = await bus.agents_kv(), asyncio.Event()
    for key in ("a-1", "a-2", "a-3"):
        await kv.put(key, key.encode())
    changes = agent_changes(bus, stop, poll_s=0.05, batched=batched)
    assert isinstance(changes, AsyncGenerator)
    first = await asyncio.wait_for(anext(changes), 5)
    assert sorted(e.key for e in first) == ["a-1", "a-2", "a-3"]
    await kv.put("a-2", b"changed")
    async with asyncio.timeout(5):
        async for batch in changes:
            if batch:
                assert [(e.key, e.value) for e in batch] == [("a-2", b"changed")]
                break
    stop.set()
    await changes.aclose()


async def test_provisioning_lets_an_old_agents_bucket_answer_direct_gets(nats_url: str, settings: Settings) -> None:
    """A bucket made by an earlier version did not allow direct gets: provisioning updates it."""
    admin = await connect(settings, nats_url, "test", provision=False, role="admin")
    try:
        bucket = admin.subjects.agents_bucket
        await admin.js.create_key_value(KeyValueConfig(bucket=bucket, history=1, ttl=settings.agent_ttl_s))
        assert not (await admin.js.stream_info(f"KV_{bucket}")).config.allow_direct
        await ensure_topology(admin.js, admin.subjects, settings)
        assert (await admin.js.stream_info(f"KV_{bucket}")).config.allow_direct
        await (await admin.agents_kv()).put("a-1", b"one")
        changes = agent_changes(admin, asyncio.Event(), poll_s=0.05, batched=True)
        assert isinstance(changes, AsyncGenerator)
        assert [e.key for e in await asyncio.wait_for(anext(changes), 5)] == ["a-1"]
        await changes.aclose()
    finally:
        await admin.close()
