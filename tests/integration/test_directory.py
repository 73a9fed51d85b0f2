"""The coordinator's view of online agents: a heartbeat that changes nothing costs nothing."""

import asyncio
import json

import pytest

from planexe_ax.bus import Bus, utcnow
from planexe_ax.coordinator.directory import AgentDirectory
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats


def card(agent_id: str, action: str) -> bytes:
    now = utcnow().isoformat()
    return json.dumps({"agent_id": agent_id, "name": "n", "capabilities": [{"action": action}],
                       "started_at": now, "heartbeat_at": now}).encode()  # fmt: skip


class CountingDirectory(AgentDirectory):
    """Counts the rebuilds of the online map."""

    rebuilds = 0

    async def _publish_if_changed(self) -> None:
        self.rebuilds += 1
        await super()._publish_if_changed()


async def test_heartbeats_that_change_nothing_do_not_rebuild_the_online_map(bus: Bus) -> None:
    kv = await bus.agents_kv()
    seen: list[dict[str, frozenset[str]]] = []

    async def on_change(online: dict[str, frozenset[str]]) -> None:
        seen.append(online)

    stop = asyncio.Event()
    directory = CountingDirectory(bus, on_change, poll_s=8)  # no age check between the heartbeats below
    running = asyncio.create_task(directory.run(stop))
    try:
        await kv.put("a-1", card("a-1", "echo"))
        await eventually(lambda: _async(seen == [{"a-1": frozenset({"echo"})}]))
        before = directory.rebuilds
        for _ in range(50):
            await kv.put("a-1", card("a-1", "echo"))
        await kv.put("a-1", card("a-1", "other"))  # what it offers changed: that counts
        await eventually(lambda: _async(len(seen) == 2))
        assert seen[1] == {"a-1": frozenset({"other"})}
        assert directory.rebuilds - before == 1
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)


async def _async(value: bool) -> bool:
    return value
