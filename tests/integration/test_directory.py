"""The coordinator's view of online agents: a heartbeat that changes nothing costs nothing."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest

from planexe_ax.bus import AgentCard, Bus, CapabilityCard, utcnow
from planexe_ax.coordinator.directory import AgentDirectory
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats
POLL_S = 0.05
STARTED = utcnow() - timedelta(hours=1)


def card(agent_id: str, action: str, heartbeat_at: datetime) -> bytes:
    caps = [CapabilityCard(action=action)]
    return AgentCard(agent_id=agent_id, name="n", capabilities=caps, started_at=STARTED,
                     heartbeat_at=heartbeat_at).model_dump_json().encode()  # fmt: skip


class CountingDirectory(AgentDirectory):
    """Counts the rebuilds of the online map and notes every online set it reports, with when."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, self._note, poll_s=POLL_S)
        self.rebuilds = 0
        self.seen: list[tuple[datetime, dict[str, frozenset[str]]]] = []

    async def _note(self, online: dict[str, frozenset[str]]) -> None:
        self.seen.append((utcnow(), online))

    async def _publish_if_changed(self) -> None:
        self.rebuilds += 1
        await super()._publish_if_changed()

    def reported(self, online: dict[str, frozenset[str]]) -> bool:
        return bool(self.seen) and self.seen[-1][1] == online


@asynccontextmanager
async def running(bus: Bus) -> AsyncIterator[CountingDirectory]:
    directory, stop = CountingDirectory(bus), asyncio.Event()
    task = asyncio.create_task(directory.run(stop))
    try:
        yield directory
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _async(value: bool) -> bool:
    return value


async def test_a_heartbeat_is_not_validated_again_and_keeps_its_agent_online(bus: Bus) -> None:
    kv, ttl = await bus.agents_kv(), timedelta(seconds=bus.settings.agent_ttl_s)
    first = utcnow() - ttl + timedelta(seconds=1)  # this card alone ages past the TTL a second from now
    async with running(bus) as directory:
        await kv.put("a-1", card("a-1", "echo", first))
        await eventually(lambda: _async(directory.reported({"a-1": frozenset({"echo"})})))
        fresh = utcnow()
        await kv.put("a-1", card("a-1", "echo", fresh))
        await eventually(lambda: _async(directory.known["a-1"].heartbeat_at == fresh))
        rebuilds = directory.rebuilds
        # The first card's age passes the TTL: the map is rebuilt, and the heartbeat keeps the agent online.
        await eventually(lambda: _async(directory.rebuilds > rebuilds), timeout=5)
        assert utcnow() > first + ttl
        assert directory.reported({"a-1": frozenset({"echo"})})
        assert directory.validated == 1
        await kv.put("a-1", card("a-1", "other", utcnow()))  # what it offers changed: that counts
        await eventually(lambda: _async(directory.reported({"a-1": frozenset({"other"})})))
        assert directory.validated == 2


async def test_a_silent_agent_goes_offline_once_its_heartbeat_is_older_than_the_ttl(bus: Bus) -> None:
    kv, ttl = await bus.agents_kv(), timedelta(seconds=bus.settings.agent_ttl_s)
    last = utcnow() - ttl + timedelta(seconds=0.5)
    async with running(bus) as directory:
        await kv.put("quiet-1", card("quiet-1", "echo", last))
        await eventually(lambda: _async(directory.reported({"quiet-1": frozenset({"echo"})})))
        await eventually(lambda: _async(directory.reported({})), timeout=5)
        went_offline = directory.seen[-1][0]
        assert last + ttl <= went_offline <= last + ttl + timedelta(seconds=1)


async def test_a_removed_card_takes_its_agent_offline_at_once(bus: Bus) -> None:
    kv = await bus.agents_kv()
    async with running(bus) as directory:
        await kv.put("gone-1", card("gone-1", "echo", utcnow()))
        await eventually(lambda: _async(directory.reported({"gone-1": frozenset({"echo"})})))
        await kv.delete("gone-1")
        await eventually(lambda: _async(directory.reported({})), timeout=2)
        assert "gone-1" not in directory.known
