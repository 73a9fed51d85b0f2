"""Take-over time of a partition after kill -9 of the coordinator holding it, on a three-node NATS cluster.

    python bench/failover.py [--repeat 5] [--ttl 3]

Each round starts a fresh cluster (tests/helpers/cluster.py, R3 streams and buckets) and two
`planexe-ax serve coordinator` processes (they share the partitions), kills the one holding the partition of
an execution id with SIGKILL and measures the seconds until the other holds it (it has then fenced the old one
off and starts its rebuild). Printed: each round's take-over and the median. No plan runs: the time is the
lease's, not a rebuild's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.cluster import NatsCluster, kill_leader, lease_holder, partition_key
from tests.helpers.eventually import eventually
from tests.helpers.processes import Service

from planexe_ax.bus import Subjects, connect
from planexe_ax.config import Settings

EXECUTION = "failover-bench"


async def one_round(folder: Path, ttl_s: float) -> float:
    """Start a cluster and two coordinators, kill -9 the leader; return the take-over seconds."""
    nats = NatsCluster(folder)
    await nats.start()
    env = {
        "PLANEXE_NATS_URL": nats.url,
        "PLANEXE_NATS_AUTH_DIR": str(nats.auth_dir),
        "PLANEXE_DATA_DIR": str(folder / "data"),
        "PLANEXE_REPLICAS": "3",
        "PLANEXE_LEADER_TTL_S": str(ttl_s),
    }
    coordinators: list[Service] = []
    settings = Settings(nats_url=nats.url, nats_auth_dir=nats.auth_dir, data_dir=folder / "data", replicas=3)
    try:
        for i in range(2):
            coordinators.append(Service(["serve", "coordinator"], env, folder / f"coordinator-{i}.log"))
            await asyncio.to_thread(coordinators[-1].wait_for, "running on", 60.0)
        bus = await connect(settings, nats.url, "failover-bench", role="admin")
        try:
            key = partition_key(bus, EXECUTION)

            async def shared() -> bool:  # the second coordinator holds its share: the keys are held by two
                holders = {await lease_holder(bus, Subjects.partition_lease(p)) for p in range(settings.partitions)}
                return len(holders - {None}) == 2

            await eventually(shared, timeout=30.0)
            assert await lease_holder(bus, key)
            return await kill_leader(coordinators, bus, EXECUTION)
        finally:
            await bus.close()
    finally:
        for service in coordinators:
            if service.proc.poll() is None:
                service.terminate()
        await nats.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the median is printed)")
    parser.add_argument("--ttl", type=float, default=3.0, help="PLANEXE_LEADER_TTL_S of the coordinators")
    args = parser.parse_args()
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ax-failover-") as tmp:
        for i in range(args.repeat):
            took = await one_round(Path(tmp) / f"round-{i}", args.ttl)
            times.append(took)
            sys.stdout.write(f"round {i + 1}: take-over {took:.2f} s\n")
            sys.stdout.flush()
    sys.stdout.write(f"median take-over of {len(times)} (lease TTL {args.ttl} s): {statistics.median(times):.2f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
