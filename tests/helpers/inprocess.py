"""Services run in the test's own process, each on its own connection, as `serve <service>` runs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from planexe_ax.agents import Agent, AgentRuntime
from planexe_ax.bus import connect
from planexe_ax.config import Settings
from planexe_ax.coordinator import Coordinator


@asynccontextmanager
async def coordinator(settings: Settings, url: str, name: str = "coordinator") -> AsyncIterator[Coordinator]:
    """A started, running coordinator; stopped (and its connection closed) on exit."""
    bus = await connect(settings, url, name, role="coordinator")
    service, stop = Coordinator(bus), asyncio.Event()
    await service.start()
    running = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await service.close()
        await bus.close()


@asynccontextmanager
async def agent_running(settings: Settings, url: str, agent: Agent) -> AsyncIterator[AgentRuntime]:
    """``agent`` working offers until the block ends."""
    bus = await connect(settings, url, agent.agent_id, role="builtin-agents")
    stop = asyncio.Event()
    runtime = AgentRuntime(bus, agent)
    running = asyncio.create_task(runtime.run(stop))
    try:
        yield runtime
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await bus.close()
