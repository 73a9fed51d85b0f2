"""The coordinator's CPU while many idle agents heartbeat: what online agents cost when nothing runs.

    python bench/idle_agents.py [--agents 1000] [--period 5] [--seconds 30] [--warmup 10]

Starts a nats-server in operator mode and the coordinator as its own process (`planexe-ax serve
coordinator`), then heartbeats ``--agents`` agent cards into KV ``ax-agents`` every ``--period`` seconds
from this process (each agent at its own phase, as independent agents would; a card changes only its
``heartbeat_at``), and prints the coordinator process's CPU over ``--seconds`` after ``--warmup``, in %
of one core. The goal of a heartbeat that changes nothing is that it costs nothing: at most 5 % of a
core for 1,000 agents every 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import Child, children, cpu_s  # bench/ is not a package: its folder is on the path

from planexe_ax.bus import AgentCard, Bus, CapabilityCard, EmbeddedNats, connect, utcnow
from planexe_ax.bus.client import agent_cards
from planexe_ax.bus.work import put_card
from planexe_ax.config import Settings

GOAL_PERCENT = 5.0
SRC = Path(__file__).resolve().parents[1] / "src"


def cards(n: int) -> list[AgentCard]:
    now = utcnow()
    caps = [CapabilityCard(action="noop", description="Does nothing.")]
    return [
        AgentCard(agent_id=f"idle-{i:05d}", name=f"Idle {i}", capabilities=caps, started_at=now, heartbeat_at=now)
        for i in range(n)
    ]


async def heartbeat(bus: Bus, agents: list[AgentCard], period_s: float, stop: asyncio.Event) -> int:
    """Put every card once per ``period_s``, spread evenly over the period; the number of puts."""
    puts, step = 0, period_s / len(agents)
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not stop.is_set():
        for card in agents:
            if (wait := began + puts * step - loop.time()) > 0:
                await asyncio.sleep(wait)
            await put_card(bus, card.model_copy(update={"heartbeat_at": utcnow()}))
            puts += 1
            if stop.is_set():
                break
    return puts


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="planexe-idle-") as tmp:
        folder = Path(tmp)
        async with EmbeddedNats(folder / "nats") as server:
            env = {"PLANEXE_NATS_URL": server.url, "PLANEXE_NAMESPACE": "idle", "PLANEXE_DATA_DIR": str(folder),
                   "PLANEXE_NATS_AUTH_DIR": str(server.auth_dir), "PLANEXE_LOG_LEVEL": "INFO",
                   "PLANEXE_HEARTBEAT_S": str(args.period), "PLANEXE_AGENT_TTL_S": str(args.period * 3),
                   # the coordinator runs the code of this tree, not whatever planexe_ax is installed
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}  # fmt: skip
            coordinator = Child([sys.executable, "-m", "planexe_ax", "serve", "coordinator"], env, folder / "c.log")
            with children(coordinator):
                coordinator.wait_for("running on nats://")
                settings = Settings(namespace="idle", data_dir=folder, nats_auth_dir=server.auth_dir)
                bus = await connect(settings, server.url, "idle-agents", role="admin")
                stop = asyncio.Event()
                beating = asyncio.create_task(heartbeat(bus, cards(args.agents), args.period, stop))
                try:
                    await asyncio.sleep(args.warmup)
                    online = len(await agent_cards(bus))
                    cpu0, wall0 = cpu_s(coordinator.proc.pid), time.perf_counter()
                    await asyncio.sleep(args.seconds)
                    cpu, wall = cpu_s(coordinator.proc.pid) - cpu0, time.perf_counter() - wall0
                finally:
                    stop.set()
                    puts = await beating
                    await bus.close()
    percent = cpu / wall * 100
    verdict = "within" if percent <= GOAL_PERCENT else "over"
    print(f"agents online at the start of the measurement: {online} of {args.agents}")
    print(f"heartbeats put: {puts} ({puts / (args.warmup + args.seconds):.0f}/s, period {args.period:g} s)")
    print(f"coordinator CPU with {args.agents} agents heartbeating every {args.period:g} s: {percent:.1f} % of a core "
          f"over {wall:.0f} s ({verdict} the goal of {GOAL_PERCENT:g} %)")  # fmt: skip
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--period", type=float, default=5.0, help="seconds between two heartbeats of one agent")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the CPU is measured")
    parser.add_argument("--warmup", type=float, default=10.0, help="heartbeats before the measurement starts")
    asyncio.run(measure(parser.parse_args()))
