"""A whole stack in this process for gateway tests: coordinator, projector, built-in agents and the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from planexe_ax.cli import example_plan_path
from planexe_ax.cli.services import BACKGROUND, Services, start_services
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.context import Gateway
from planexe_ax.ws_gateway.server import GatewayServer
from planexe_ax.ws_gateway.tokens import Role, token_store


def example_document() -> dict[str, Any]:
    """The shipped example plan as JSON: 8 tasks, 16 subtasks, runs to COMPLETED in about a second."""
    document: dict[str, Any] = json.loads(example_plan_path().read_text(encoding="utf-8"))
    return document


def waiting_plan(plan_id: str = "waiting") -> dict[str, Any]:
    """A plan that stays open until a person completes its human task."""
    return {
        "plan_id": plan_id,
        "goal": "wait on a person",
        "phases": [
            {
                "phase_id": "p",
                "name": "People",
                "tasks": [
                    {
                        "task_id": "call",
                        "title": "Call Carol",
                        "human_required": True,
                        "subtasks": [{"subtask_id": "call_carol", "action": "human_task"}],
                    }
                ],
            }
        ],
    }


@dataclass
class Stack:
    """Running services and the gateway; ``url`` is its base URL, ``client`` an httpx client on it with the admin
    ``token`` (named ``tester``)."""

    settings: Settings
    services: Services
    server: GatewayServer
    url: str
    client: httpx.AsyncClient
    token: str
    people: dict[str, str] = field(default_factory=dict)

    def person(self, name: str) -> str:
        """The approver token of ``name`` (made on first use): what they answer is recorded as ``name``."""
        if name not in self.people:
            self.people[name] = self.issue(Role.APPROVER, name)
        return self.people[name]

    def issue(self, role: Role, name: str, agent_id: str | None = None) -> str:
        """A new token of ``role`` called ``name``, as `planexe-ax auth token` makes it."""
        return token_store(self.settings).issue(name, role, agent_id)

    def client_as(self, token: str | None) -> httpx.AsyncClient:
        """Another client on the gateway, with ``token`` (None: anonymous); close it after use."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, timeout=30, headers=headers)

    @property
    def gateway(self) -> Gateway:
        gw: Gateway = self.server.app.state.gateway
        return gw

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, nats_url: str, database_url: str, services: tuple[str, ...] = BACKGROUND
) -> AsyncIterator[Stack]:
    """Start ``services`` and the gateway on a free port; stop everything on exit."""
    configured = settings.model_copy(update={"nats_url": nats_url, "database_url": database_url})
    token = token_store(configured).issue("tester", Role.ADMIN)
    started = await start_services(configured, nats_url, services)
    stop = asyncio.Event()
    runner = asyncio.create_task(started.run(stop))
    server = GatewayServer(configured, nats_url, host="127.0.0.1", port=0)
    try:
        url = await server.start()
        async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            yield Stack(configured, started, server, url, client, token)
    finally:
        await server.stop()
        stop.set()
        await asyncio.wait_for(runner, 30)
