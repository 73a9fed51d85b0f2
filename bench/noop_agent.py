"""An agent process offering ``noop`` (does nothing, at once), for bench/compare.py.

    PLANEXE_NATS_URL=... PLANEXE_NAMESPACE=... python bench/noop_agent.py [CONCURRENCY]

It runs as ``planexe-ax serve agents`` does: on uvloop, with the tuned collector and what it allocated to start
frozen (:mod:`planexe_ax.common.eventloop`), exporting its spans when the ``OTEL_*`` variables ask for it.
Prints ``noop agent ready`` once registered; SIGTERM drains and exits 0. With ``PLANEXE_BENCH_PROFILE=<file>``
it runs under cProfile (timed by the process's CPU clock) and writes the stats there on exit: calls per subtask,
and where the CPU goes whatever else runs on the machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from planexe_ax.agents import Agent, AgentRuntime, TaskContext, capability
from planexe_ax.bus import connect
from planexe_ax.common import eventloop
from planexe_ax.common.telemetry import setup_tracing
from planexe_ax.config import Settings


class NoParams(BaseModel):
    pass


@capability("noop", "Does nothing, at once.")
async def noop(params: NoParams, ctx: TaskContext) -> dict[str, Any]:
    return {}


async def main(concurrency: int) -> None:
    settings = Settings()
    assert settings.nats_url, "set PLANEXE_NATS_URL"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    telemetry = setup_tracing("planexe-ax-agents")
    bus = await connect(settings, settings.nats_url, "bench-noop", role="builtin-agents")
    runtime = AgentRuntime(bus, Agent(f"noop-{os.getpid()}", "No-op", capabilities=[noop]), concurrency=concurrency)
    eventloop.freeze_startup_objects()  # as `planexe-ax serve agents` does once its services started
    eventloop.tune_gc()
    loop.call_later(0.5, lambda: print("noop agent ready", flush=True))
    try:
        await runtime.run(stop)
    finally:
        await bus.close()
        telemetry.shutdown()


if __name__ == "__main__":
    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    if profile := os.environ.get("PLANEXE_BENCH_PROFILE"):
        import cProfile

        with cProfile.Profile(time.process_time) as profiler:  # CPU time: a process waiting for a core costs nothing
            eventloop.run(main(concurrency))
        profiler.dump_stats(f"{profile}.{os.getpid()}")
    else:
        eventloop.run(main(concurrency))  # as `planexe-ax serve agents` runs: on uvloop
