"""Wide plans with 1, 2 and 4 coordinators sharing the partitions on a three-node cluster, against one
coordinator on one server, in one run.

    python bench/scaling.py [--coordinators 1,2,4] [--executions 8] [--subtasks 250] [--agents 2] [--json]

Each configuration starts its own NATS (one server in operator mode, R1, for the baseline; a three-node
cluster, R3, for the others), then as separate processes the projector (SQLite), the coordinators and
``--agents`` no-op agent processes (bench/noop_agent.py). Once every coordinator holds its share of the
partitions, ``--executions`` wide plans of ``--subtasks`` no-op subtasks start at once; the figure is the
subtasks completed per second from the first start to the last completion, with each coordinator's CPU
seconds per 1,000 subtasks (its process's user + system time) and how many partitions each held. Ratios
are to the baseline (one coordinator, one server). On a machine with fewer cores than processes the
coordinators share the cores with the agents and the servers: read the CPU columns with the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import Child, children, cpu_s
from compare import _agents_online as agents_online  # bench/ is not a package: its folder is on the path
from tests.helpers.cluster import NatsCluster, lease_holder
from throughput import plan

from planexe_ax.bus import Bus, EmbeddedNats, ExecutionStatus, Subjects, connect
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.config import Settings

HERE = Path(__file__).resolve().parent


async def holders(bus: Bus) -> dict[str, int]:
    """How many partitions each coordinator holds now."""
    counts: dict[str, int] = {}
    for partition in range(bus.settings.partitions):
        holder = await lease_holder(bus, Subjects.partition_lease(partition))
        if holder:
            counts[holder] = counts.get(holder, 0) + 1
    return counts


async def shared(bus: Bus, coordinators: int, timeout_s: float = 60.0) -> dict[str, int]:
    """Wait until ``coordinators`` hold every partition between them, evenly; return who holds how many."""
    deadline = time.monotonic() + timeout_s
    share = -(-bus.settings.partitions // coordinators)
    while True:
        counts = await holders(bus)
        every = len(counts) == coordinators and sum(counts.values()) == bus.settings.partitions
        if every and max(counts.values()) <= share:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"the partitions were not shared by {coordinators} coordinators: {counts}")
        await asyncio.sleep(0.2)


async def one_config(folder: Path, coordinators: int, nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    server: EmbeddedNats | NatsCluster = (
        NatsCluster(folder / "cluster", size=nodes) if nodes > 1 else EmbeddedNats(folder / "nats")
    )
    url = await server.start()
    db = f"sqlite+aiosqlite:///{folder}/readmodel.db"
    env = {"PLANEXE_NATS_URL": url, "PLANEXE_NAMESPACE": "bench", "PLANEXE_DATA_DIR": str(folder / "data"),
           "PLANEXE_NATS_AUTH_DIR": str(server.auth_dir), "PLANEXE_DATABASE_URL": db,
           "PLANEXE_LAG_SCALE_S": "0", "PLANEXE_LOG_LEVEL": "INFO", "PLANEXE_REPLICAS": str(nodes)}  # fmt: skip
    serve = [sys.executable, "-m", "planexe_ax", "serve"]
    try:
        projector = Child([*serve, "projector"], env, folder / "projector.log")
        projector.wait_for("running on")
        started = []
        for i in range(coordinators):
            started.append(Child([*serve, "coordinator"], env, folder / f"coordinator-{i}.log"))
            started[-1].wait_for("running on")
        noop = [sys.executable, str(HERE / "noop_agent.py")]
        agents = [Child(noop, env, folder / f"agent{i}.log") for i in range(args.agents)]
        with children(projector, *started, *agents):
            settings = Settings(
                namespace="bench", data_dir=folder / "data", nats_auth_dir=server.auth_dir, replicas=nodes
            )
            bus = await connect(settings, url, "bench-client", role="admin")
            try:
                await agents_online(bus, args.agents)
                held = await shared(bus, coordinators)
                cpu0 = [cpu_s(c.proc.pid) for c in started]
                began = time.perf_counter()
                ids = await asyncio.gather(
                    *(start_execution(bus, plan(args.subtasks, chain=False)) for _ in range(args.executions))
                )
                outcomes = await asyncio.gather(*(follow(bus, x, lambda _: None, timeout_s=900) for x in ids))
                took = time.perf_counter() - began
                if any(o.status != ExecutionStatus.COMPLETED for o in outcomes):
                    raise RuntimeError(f"a bench execution did not complete: {outcomes}")
                total = args.subtasks * args.executions
                cpu = [cpu_s(c.proc.pid) - before for c, before in zip(started, cpu0, strict=True)]
                return {
                    "coordinators": coordinators,
                    "nodes": nodes,
                    "per_s": total / took,
                    "cpu_s_per_1000": [round(c / total * 1000, 3) for c in cpu],
                    "partitions_held": sorted(held.values(), reverse=True),
                }
            finally:
                await bus.close()
    finally:
        await server.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coordinators", default="1,2,4", help="coordinator counts on the cluster")
    parser.add_argument("--executions", type=int, default=8, help="wide plans started at once")
    parser.add_argument("--subtasks", type=int, default=250, help="no-op subtasks of each plan")
    parser.add_argument("--agents", type=int, default=2, help="no-op agent processes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ax-scaling-") as tmp:
        rows.append(await one_config(Path(tmp) / "baseline", 1, 1, args))
        for count in (int(c) for c in args.coordinators.split(",")):
            rows.append(await one_config(Path(tmp) / f"cluster-{count}", count, 3, args))  # noqa: PERF401 - in turn
    base = rows[0]["per_s"]
    for row in rows:
        row["ratio"] = round(row["per_s"] / base, 3)
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    sys.stdout.write(f"{args.executions} wide plans x {args.subtasks} no-op subtasks, {args.agents} agent processes\n")
    sys.stdout.write(
        f"{'coordinators':>12} {'nodes':>5} {'subtasks/s':>10} {'ratio':>6}  cpu s/1000 each  partitions\n"
    )
    for row in rows:
        cpu = ", ".join(f"{c:.2f}" for c in row["cpu_s_per_1000"])
        held = ", ".join(str(h) for h in row["partitions_held"])
        figures = f"{row['coordinators']:>12} {row['nodes']:>5} {row['per_s']:>10.0f} {row['ratio']:>6.2f}"
        sys.stdout.write(f"{figures}  {cpu:<15}  {held}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
