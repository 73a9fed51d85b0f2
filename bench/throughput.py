"""Throughput and hop latency of executing a plan, against raw JetStream round trips measured in the same run.

    python bench/throughput.py [--subtasks 1000] [--agents 2] [--chain 50] [--auth both|on|off]
    python bench/throughput.py --tracing [--runs 3]  # export on against off (auth on), alternating, as ratios
    python bench/throughput.py --replicas [--runs 3]  # a three-node cluster (R3) against one server (R1)

Starts its own nats-server (temporary store), a coordinator and N agent runtimes offering a no-op action
in this process, then:

- wide: one task per subtask, no dependencies: how many subtasks per second the whole loop completes
  (offer -> agent -> result -> coordinator -> read by the bus), and how that compares with the raw
  rate of sequential JetStream publish+ack on the same server (the floor of one hop);
- chain: tasks in a finish-to-start chain: the time per hop (one subtask's dispatch to the next's),
  against one raw publish+ack round trip.

With ``--auth both`` (the default) it measures twice, on a nats-server in operator mode (every
connection with its own user JWT and subject permissions, as `planexe-ax up` runs) and on one without
authentication, and prints the cost of authentication as the ratios of the two.

With ``--tracing`` it measures on servers in operator mode, ``--runs`` times each way, alternating: without
spans (as without ``OTEL_*`` variables) and with every span sampled and exported over OTLP/HTTP to a
receiver in another process (tests/helpers/otlp.py, decoding each request as a collector would), and prints
the cost of tracing as the ratios of the medians and the number of spans the receiver got. Each run also
reports the CPU this process spent per subtask (coordinator, agents, client and the exporter's thread).

With ``--replicas`` it measures, ``--runs`` times each way, alternating: on one server (every stream and
bucket R1) and on a three-node cluster on loopback (tests/helpers/cluster.py, every stream and bucket R3,
the clients given every node), both in operator mode, and prints the cost of replication as the ratios of
the medians.

Prints one line per figure and the ratios. The projector is not in the loop (it is measured by
tests/e2e and keeps up in batches); the numbers are the coordinator's and the agents'.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.cluster import NatsCluster

from planexe_ax.agents import Agent, AgentRuntime, TaskContext, capability
from planexe_ax.bus import EmbeddedNats, ExecutionStatus, Plan, connect
from planexe_ax.bus import tracing as bus_tracing
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.common.telemetry import Telemetry, setup_tracing
from planexe_ax.config import Settings
from planexe_ax.coordinator import Coordinator

ROOT = Path(__file__).resolve().parents[1]


class NoParams(BaseModel):
    pass


@capability("noop", "Does nothing, at once.")
async def noop(params: NoParams, ctx: TaskContext) -> dict[str, Any]:
    return {}


def plan(n: int, chain: bool) -> Plan:
    tasks = [
        {
            "task_id": f"t{i}",
            "title": f"T{i}",
            "prerequisites": [f"t{i - 1}"] if chain and i else [],
            "subtasks": [{"subtask_id": f"s{i}", "action": "noop"}],
        }
        for i in range(n)
    ]
    phases = [{"phase_id": "p", "name": "P", "tasks": tasks}]
    return Plan.model_validate({"plan_id": "bench", "goal": "bench", "phases": phases})


@dataclass(frozen=True)
class Figures:
    """One measurement: raw publish+ack, the wide plan's rate and the chain's median hop."""

    per_hop_raw: float
    rate: float
    hops: list[float]
    cpu_per_subtask: float
    """Seconds of this process's CPU (coordinator, agents and client alike) per subtask of the wide plan."""

    @property
    def hop(self) -> float:
        return statistics.median(self.hops)


async def raw_round_trips(url: str, settings: Settings, n: int = 2000) -> float:
    """Seconds per sequential publish+ack on the events stream of this server."""
    bus = await connect(settings, url, "bench-raw", role="admin")
    subject = bus.subjects.dlq("bench")  # a stream nobody consumes: the probes must not reach a service
    started = time.perf_counter()
    for i in range(n):
        await bus.js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"raw-{i}"})
    elapsed = time.perf_counter() - started
    await bus.close()
    return elapsed / n


async def execute(url: str, settings: Settings, the_plan: Plan) -> tuple[float, list[float]]:
    bus = await connect(settings, url, "bench-client", role="operator")
    started = time.perf_counter()
    execution_id = await start_execution(bus, the_plan)
    dispatched: dict[str, float] = {}
    hops: list[float] = []

    def on_event(event: Any) -> None:
        if getattr(event, "type", "") == "subtask_state" and event.status.value == "DISPATCHED":
            dispatched[event.subtask_id] = event.ts.timestamp()
            prev = f"s{int(event.subtask_id[1:]) - 1}"
            if prev in dispatched:
                hops.append(dispatched[event.subtask_id] - dispatched[prev])

    outcome = await follow(bus, execution_id, on_event, timeout_s=600)
    elapsed = time.perf_counter() - started
    await bus.close()
    assert outcome.status == ExecutionStatus.COMPLETED, outcome
    return elapsed, hops


async def measure(folder: Path, auth: bool, subtasks: int, agents: int, chain: int, nodes: int = 1) -> Figures:
    """Start a server (in operator mode when ``auth``; ``nodes`` 3: a cluster, R3), a coordinator and the
    agents; run both plans."""
    server: EmbeddedNats | NatsCluster
    auth_dir: Path | None
    if nodes > 1:
        server = NatsCluster(folder / "cluster", size=nodes)
        url, auth_dir = await server.start(), server.auth_dir
    else:
        server = EmbeddedNats(folder / "nats", auth=auth)
        url, auth_dir = await server.start(), server.auth_dir
    settings = Settings(
        namespace="bench", data_dir=folder / "data", nats_auth_dir=auth_dir, lag_scale_s=0, replicas=nodes
    )
    try:
        coordinator_bus = await connect(settings, url, "bench-coordinator", role="coordinator")
        coordinator = Coordinator(coordinator_bus)
        await coordinator.start()
        stop = asyncio.Event()
        agent_bus = await connect(settings, url, "bench-agents", role="builtin-agents")
        runtimes = [
            AgentRuntime(agent_bus, Agent(f"noop-{i}", "No-op", capabilities=[noop]), concurrency=32)
            for i in range(agents)
        ]
        tasks = [asyncio.create_task(coordinator.run(stop))] + [asyncio.create_task(r.run(stop)) for r in runtimes]
        per_hop_raw = await raw_round_trips(url, settings)
        cpu = time.process_time()
        wide_s, _ = await execute(url, settings, plan(subtasks, chain=False))
        cpu = time.process_time() - cpu
        _, hops = await execute(url, settings, plan(chain, chain=True))
        stop.set()
        await asyncio.gather(*tasks)
        await coordinator_bus.close()
        await agent_bus.close()
    finally:
        await server.stop()
    return Figures(per_hop_raw=per_hop_raw, rate=subtasks / wide_s, hops=hops, cpu_per_subtask=cpu / subtasks)


def report(label: str, figures: Figures, subtasks: int, agents: int) -> None:
    raw_rate, hops = 1 / figures.per_hop_raw, sorted(figures.hops)
    print(f"[{label}] raw JetStream publish+ack (sequential): {raw_rate:,.0f} msg/s, "
          f"{figures.per_hop_raw * 1000:.2f} ms each")  # fmt: skip
    print(f"[{label}] wide plan: {subtasks} subtasks = {figures.rate:,.0f} subtasks/s ({agents} agents)")
    print(f"  ratio to raw sequential publish+ack: {figures.rate / raw_rate:.3f}")
    print(f"  CPU of this process (coordinator, agents, client) per subtask: {figures.cpu_per_subtask * 1000:.2f} ms")
    print(f"[{label}] chain: median hop (dispatch to next dispatch) {figures.hop * 1000:.1f} ms, p90 "
          f"{hops[int(len(hops) * 0.9)] * 1000:.1f} ms, p99 {hops[int(len(hops) * 0.99)] * 1000:.1f} ms "
          f"over {len(hops)} hops")  # fmt: skip
    print(f"  ratio to one raw publish+ack: {figures.hop / figures.per_hop_raw:.1f}x")


async def main(subtasks: int, agents: int, chain: int, auth: str) -> None:
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[auth]
    measured: dict[bool, Figures] = {}
    for mode in modes:
        with tempfile.TemporaryDirectory() as folder:
            measured[mode] = await measure(Path(folder), mode, subtasks, agents, chain)
        report("auth on" if mode else "auth off", measured[mode], subtasks, agents)
    if len(measured) == 2:
        on, off = measured[True], measured[False]
        print(f"cost of authentication (on / off): wide rate {on.rate / off.rate:.3f}, "
              f"median hop {on.hop / off.hop:.3f}, raw publish+ack {on.per_hop_raw / off.per_hop_raw:.3f}")  # fmt: skip


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    """An OTLP/HTTP receiver in its own process (as a collector would be); its URL."""
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.otlp"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    return receiver, receiver.stdout.readline().strip()


def stop_receiver(receiver: subprocess.Popen[str]) -> int | None:
    """Close the receiver's input; the number of spans it received (None when it did not say)."""
    assert receiver.stdin is not None
    assert receiver.stdout is not None
    receiver.stdin.close()
    said = receiver.stdout.readline().strip()
    receiver.wait(30)
    return int(said) if said.isdigit() else None


def export_on(url: str) -> Telemetry:
    """Export every span to ``url``, with a queue large enough that the batch processor drops none."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = url
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "200000")
    os.environ.setdefault("OTEL_TRACES_SAMPLER", "always_on")
    return setup_tracing("planexe-ax-bench")


async def tracing(subtasks: int, agents: int, chain: int, runs: int) -> None:
    """Export off and on (every span sampled and exported), alternating ``runs`` times; ratios of the medians.

    The provider is installed once (OpenTelemetry allows one per process) and spans are turned off and on
    around it, so both modes run in the same conditions: on a busy machine alternating is what makes the
    ratio mean something.
    """
    receiver, url = start_receiver()
    telemetry = export_on(url)
    measured: dict[bool, list[Figures]] = {False: [], True: []}
    try:
        for _ in range(runs):
            for on in (False, True):
                if on:
                    bus_tracing.enable()
                else:
                    bus_tracing.disable()
                with tempfile.TemporaryDirectory() as folder:
                    figures = await measure(Path(folder), True, subtasks, agents, chain)
                report("export on" if on else "export off", figures, subtasks, agents)
                measured[on].append(figures)
    finally:
        telemetry.shutdown()
        spans = stop_receiver(receiver)

    def median(on: bool, figure: str) -> float:
        return float(statistics.median(getattr(f, figure) for f in measured[on]))

    rate, hop, cpu = (median(True, f) / median(False, f) for f in ("rate", "hop", "cpu_per_subtask"))
    print(f"spans received by the OTLP receiver: {spans} over {runs} runs with export on")
    print(f"cost of tracing (export on / off, medians of {runs}): wide rate {rate:.3f} ({(1 - rate) * 100:.1f} % "
          f"lower), median hop {hop:.3f}, CPU per subtask {cpu:.3f}")  # fmt: skip


async def replicas(subtasks: int, agents: int, chain: int, runs: int) -> None:
    """One server (R1) and a three-node cluster (R3), alternating ``runs`` times; ratios of the medians."""
    measured: dict[int, list[Figures]] = {1: [], 3: []}
    for _ in range(runs):
        for nodes in (1, 3):
            with tempfile.TemporaryDirectory() as folder:
                figures = await measure(Path(folder), True, subtasks, agents, chain, nodes=nodes)
            report(f"R{nodes}", figures, subtasks, agents)
            measured[nodes].append(figures)

    def median(nodes: int, figure: str) -> float:
        return float(statistics.median(getattr(f, figure) for f in measured[nodes]))

    rate, hop, cpu, raw = (median(3, f) / median(1, f) for f in ("rate", "hop", "cpu_per_subtask", "per_hop_raw"))
    print(f"cost of replication (R3 cluster / R1 server, medians of {runs}): wide rate {rate:.3f}, median hop "
          f"{hop:.3f}, CPU per subtask {cpu:.3f}, raw publish+ack {raw:.3f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subtasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--auth", choices=["both", "on", "off"], default="both")
    parser.add_argument("--tracing", action="store_true", help="trace export on against off (instead of auth)")
    parser.add_argument("--replicas", action="store_true", help="a three-node cluster (R3) against one server")
    parser.add_argument("--runs", type=int, default=3, help="with --tracing or --replicas: alternating runs")
    args = parser.parse_args()
    if args.tracing:
        asyncio.run(tracing(args.subtasks, args.agents, args.chain, args.runs))
    elif args.replicas:
        asyncio.run(replicas(args.subtasks, args.agents, args.chain, args.runs))
    else:
        asyncio.run(main(args.subtasks, args.agents, args.chain, args.auth))
