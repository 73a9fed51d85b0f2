"""An agent process with one slow capability, ``slow_step``, built only on the public SDK.

Run it as ``python -m tests.helpers.slow_agent`` with the usual ``PLANEXE_*`` environment. It logs
``slow step begin`` / ``slow step end`` (JSON lines on stderr, with the subtask id) so a fault test
can see work in flight and kill the process in the middle of it. SIGTERM drains and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from pydantic import BaseModel, Field

from planexe_ax.agents import Agent, AgentRuntime, TaskContext, capability
from planexe_ax.bus import connect
from planexe_ax.common.logs import setup_logging
from planexe_ax.config import Settings

ACTION = "slow_step"
BEGIN, END = "slow step begin", "slow step end"


class SlowStepParams(BaseModel):
    """Parameters of ``slow_step``."""

    seconds: float = Field(default=0.5, ge=0, le=30, description="How long the step works.")
    label: str = ""


@capability(ACTION, "Work for a while, then report what was done.")
async def slow_step(params: SlowStepParams, ctx: TaskContext) -> dict[str, Any]:
    ctx.logger.info(BEGIN)
    await ctx.progress(0, "working")
    await asyncio.sleep(params.seconds)
    ctx.logger.info(END)
    return {"label": params.label, "worked_s": params.seconds, "delivered": ctx.delivered}


async def main() -> int:
    settings = Settings()
    setup_logging(settings.log_level)
    if not settings.nats_url:
        raise SystemExit("set PLANEXE_NATS_URL")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus = await connect(settings, settings.nats_url, "slow-agent", role="builtin-agents")
    agent = Agent(f"slow-{os.getpid()}", "Slow worker", role="fault tests", capabilities=[slow_step])
    try:
        await AgentRuntime(bus, agent).run(stop)
    finally:
        await bus.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
