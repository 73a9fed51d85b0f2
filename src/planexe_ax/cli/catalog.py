"""The plan catalog of running services from the command line: the shipped examples, and plans saved into it."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from planexe_ax.bus import Plan, connect
from planexe_ax.bus.client import plans_stored
from planexe_ax.cli.services import resolve_nats_url
from planexe_ax.config import Settings

log = logging.getLogger(__name__)


def example_plan_paths() -> list[Path]:
    """The example plans shipped with the package, by file name."""
    folder = Path(str(resources.files("planexe_ax") / "examples"))
    return sorted(folder.glob("*.json"))


async def seed_examples(settings: Settings, url: str) -> list[str]:
    """Put the shipped example plans into a catalog nothing was ever put in (a fresh ``up``).

    A catalog that has held plans is left as it is, so an example someone deleted stays deleted.

    Returns:
        The plan ids put in (none when the catalog was not fresh).
    """
    from planexe_ax.plans import load_plan_file

    bus = await connect(settings, url, "planexe-ax-examples", provision=False, role="operator")
    try:
        if await plans_stored(bus):
            return []
        seeded = []
        for path in example_plan_paths():
            plan = load_plan_file(path).plan
            await bus.put_plan(plan.plan_id, plan.model_dump_json(by_alias=True).encode())
            seeded.append(plan.plan_id)
    finally:
        await bus.close()
    log.info("example plans put in the catalog", extra={"plans": seeded})
    return seeded


async def save_plan(settings: Settings, plan: Plan) -> str:
    """Put ``plan`` into the catalog of the running services (PLANEXE_NATS_URL or ``planexe-ax up``).

    Returns:
        Where it went (the NATS URL).

    Raises:
        ConfigError: when no running services are found.
    """
    url = resolve_nats_url(settings)
    bus = await connect(settings, url, "planexe-ax-cli", provision=False, role="operator")
    try:
        await bus.put_plan(plan.plan_id, plan.model_dump_json(by_alias=True).encode())
    finally:
        await bus.close()
    return url
