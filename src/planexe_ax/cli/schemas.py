"""The params schemas a plan is checked against: the built-in actions', and the registered agents' cards."""

from __future__ import annotations

import asyncio
import logging

from planexe_ax.bus import Bus, connect
from planexe_ax.bus.client import agent_cards
from planexe_ax.cli.services import running_embedded_url
from planexe_ax.config import Settings
from planexe_ax.plans.params import ParamsSchema, action_schemas

log = logging.getLogger(__name__)
CARDS_TIMEOUT_S = 5.0


def builtin_schemas() -> dict[str, ParamsSchema]:
    """The params model of every built-in action (checked offline)."""
    from planexe_ax.agents.toolkit import params_models

    return dict(params_models())


async def bus_schemas(bus: Bus) -> dict[str, ParamsSchema]:
    """The built-in actions' models plus the JSON schemas of the actions the registered agents offer."""
    return action_schemas(builtin_schemas(), [cap for card in await agent_cards(bus) for cap in card.capabilities])


async def running_schemas(settings: Settings) -> dict[str, ParamsSchema]:
    """:func:`bus_schemas` of a running system (PLANEXE_NATS_URL or `planexe-ax up`), else the built-in ones."""
    url = settings.nats_url or running_embedded_url(settings)
    if not url:
        return builtin_schemas()
    try:
        async with asyncio.timeout(CARDS_TIMEOUT_S):
            bus = await connect(settings, url, "planexe-ax-cli", provision=False, role="operator")
            try:
                return await bus_schemas(bus)
            finally:
                await bus.close()
    except Exception as exc:  # no running system to ask: the offline check is what is left, and it is enough
        log.info("agent cards not read", extra={"url": url, "error": repr(exc)})
        return builtin_schemas()
