"""The composition root: start NATS (embedded when no URL is set) and any set of services in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from planexe_ax.bus import Bus, EmbeddedNats, connect
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError

if TYPE_CHECKING:  # imported where a service starts: a command that starts none loads none of them
    from planexe_ax.agents import AgentRuntime
    from planexe_ax.coordinator import PartitionedCoordinator
    from planexe_ax.notifier import Notifier
    from planexe_ax.projector import Projector
    from planexe_ax.webhooks import WebhookService
    from planexe_ax.ws_gateway.server import GatewayServer

log = logging.getLogger(__name__)
SERVICES = ("coordinator", "projector", "agents", "webhooks", "notifier", "gateway")
ROLE_OF = {
    "coordinator": "coordinator",
    "projector": "projector",
    "agents": "builtin-agents",
    "webhooks": "webhooks",
    "notifier": "notifier",
    "gateway": "gateway",
}
"""The NATS identity (bus/permissions.py) each service connects with."""
BACKGROUND = ("coordinator", "projector", "agents")
"""What `run` and `exec` need: everything but the HTTP gateway."""


def _url_file(settings: Settings) -> Path:
    return settings.data_dir / "nats.url"


def running_embedded_url(settings: Settings) -> str | None:
    """The URL of an embedded nats-server that `planexe-ax up` runs on this data folder, if it is alive."""
    path = _url_file(settings)
    try:
        url, pid = path.read_text().split()
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return None
    return url


def resolve_nats_url(settings: Settings) -> str:
    """The NATS URL for commands that talk to running services.

    Raises:
        ConfigError: when neither PLANEXE_NATS_URL nor a running `planexe-ax up` gives one.
    """
    url = settings.nats_url or running_embedded_url(settings)
    if not url:
        raise ConfigError("no NATS to talk to: set PLANEXE_NATS_URL or start `planexe-ax up` in this folder")
    return url


@contextlib.asynccontextmanager
async def nats_server(settings: Settings) -> AsyncIterator[str]:
    """Yield the configured NATS URL, or start an embedded nats-server for the data folder and yield its URL."""
    if settings.nats_url:
        yield settings.nats_url
        return
    if other := running_embedded_url(settings):
        raise ConfigError(
            f"an embedded nats-server already serves {settings.data_dir} at {other} (`planexe-ax up`?): "
            "use `planexe-ax exec start`, or set PLANEXE_DATA_DIR to another folder"
        )
    server = EmbeddedNats(
        settings.data_dir / "nats", auth_dir=settings.nats_identities_dir, jetstream_bytes=settings.nats_storage_bytes
    )
    url = await server.start()
    marker = _url_file(settings)
    marker.write_text(f"{url} {os.getpid()}\n")
    try:
        yield url
    finally:
        marker.unlink(missing_ok=True)
        await server.stop()


@dataclass
class Services:
    """Services started in this process; ``run`` them with a stop event."""

    buses: list[Bus] = field(default_factory=list)
    coordinator: PartitionedCoordinator | None = None
    projector: Projector | None = None
    agents: list[AgentRuntime] = field(default_factory=list)
    webhooks: WebhookService | None = None
    notifier: Notifier | None = None
    gateway: GatewayServer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run every service until ``stop`` is set, then close the connections (drain)."""
        try:
            async with asyncio.TaskGroup() as group:
                if self.coordinator:
                    group.create_task(self.coordinator.run(stop))
                if self.projector:
                    group.create_task(self.projector.run(stop))
                for runtime in self.agents:
                    group.create_task(runtime.run(stop))
                if self.webhooks:
                    group.create_task(self.webhooks.run(stop))
                if self.notifier:
                    group.create_task(self.notifier.run(stop))
                if self.gateway:
                    group.create_task(self.gateway.run(stop))
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the gateway, close the read model and every connection; safe to call twice."""
        if self.gateway:
            await self.gateway.stop()
        if self.projector:
            await self.projector.close()
        if self.webhooks:
            await self.webhooks.close()
        for bus in self.buses:
            await bus.close()


def agent_suffix() -> str:
    """A suffix that keeps agent ids of side-by-side processes apart."""
    return f"{socket.gethostname()[:12]}-{os.getpid()}".lower().replace(".", "-")


async def start_services(
    settings: Settings, url: str, names: tuple[str, ...] = BACKGROUND, *, any_port: bool = False
) -> Services:
    """Connect and start the named services (coordinator rebuilds, projector migrates, agents register).

    The gateway starts last, once the read model is migrated; ``any_port`` lets it take a free port when
    the configured one is taken (``demo``), instead of failing.

    Raises:
        ConfigError: on an unknown service name, or when the gateway cannot listen on its address.
    """
    unknown = set(names) - set(SERVICES)
    if unknown:
        raise ConfigError(f"unknown service(s) {', '.join(sorted(unknown))}; expected {', '.join(SERVICES)}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services = Services()
    try:
        if "projector" in names:
            from planexe_ax.projector import Projector

            bus = await connect(settings, url, "planexe-ax-projector", role=ROLE_OF["projector"])
            services.buses.append(bus)
            services.projector = Projector(bus, settings.effective_database_url)
            await services.projector.start()
        if "coordinator" in names:
            from planexe_ax.coordinator import PartitionedCoordinator

            bus = await connect(settings, url, "planexe-ax-coordinator", role=ROLE_OF["coordinator"])
            services.buses.append(bus)
            services.coordinator = PartitionedCoordinator(bus)
            await services.coordinator.start()
        if "agents" in names:
            from planexe_ax.agents import AgentRuntime, builtin_agents

            bus = await connect(settings, url, "planexe-ax-agents", role=ROLE_OF["agents"])
            services.buses.append(bus)
            services.agents = [AgentRuntime(bus, agent) for agent in builtin_agents(settings, agent_suffix())]
        if "webhooks" in names:
            from planexe_ax.webhooks import WebhookService

            bus = await connect(settings, url, "planexe-ax-webhooks", role=ROLE_OF["webhooks"])
            services.buses.append(bus)
            services.webhooks = WebhookService(bus, settings)
            await services.webhooks.start()
        if "notifier" in names:
            from planexe_ax.notifier import Notifier

            bus = await connect(settings, url, "planexe-ax-notifier", role=ROLE_OF["notifier"])
            services.buses.append(bus)
            services.notifier = Notifier(bus, settings)
        if "gateway" in names:
            services.gateway = await _start_gateway(settings, url, any_port)
    except BaseException:
        await services.close()
        raise
    return services


async def _start_gateway(settings: Settings, url: str, any_port: bool) -> GatewayServer:
    from planexe_ax.ws_gateway.server import GatewayServer, port_free

    if any_port and not port_free(settings.http_host, settings.http_port):
        log.warning("http port taken; the gateway takes a free one", extra={"port": settings.http_port})
        server = GatewayServer(settings, url, port=0)
    else:
        server = GatewayServer(settings, url)
    try:
        await server.start()
    except (RuntimeError, OSError) as exc:
        raise ConfigError(
            f"the gateway cannot listen on {settings.http_host}:{settings.http_port} ({exc}); "
            "set --port / PLANEXE_HTTP_PORT"
        ) from exc
    return server
