"""The agent side alone: offers published straight to the tasks stream, no coordinator, agents in their own processes.

    python bench/agents.py [--offers 2000] [--chain 200] [--agents 2] [--runs 3]

Starts a nats-server in operator mode and ``--agents`` processes of bench/noop_agent.py, then, as a
coordinator would but with nothing else in the loop:

- chain: one offer at a time, the next published when the previous one's ``subtask_result`` arrives: the
  time from an offer's publish to its result arriving here (p50 / p99), against one raw publish+ack;
- wide: ``--offers`` offers at once (pipelined publishes): offers per second until every result has
  arrived, offer -> the agent's start (p50 / p99: its ``subtask_started`` arriving here, or, for a quick attempt
  reported by its result alone, the result's ``started_at``), and the agent processes' CPU per offer.

What it measures is what the agent runtime adds to a hop and how many offers it can take, the part of
bench/compare.py's figures the coordinator does not decide. Figures are medians over ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import Child, children, cpu_s, pct

from planexe_ax.bus import Bus, EmbeddedNats, TaskOffer, connect
from planexe_ax.bus.connection import Publication
from planexe_ax.config import Settings

HERE = Path(__file__).resolve().parent
Figures = dict[str, float]


class Reports:
    """Every report published, by kind and subtask: the time it arrived here."""

    def __init__(self) -> None:
        self.arrived: dict[str, dict[str, float]] = {"subtask_started": {}, "subtask_result": {}}
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.results = 0
        self.all_in = asyncio.Event()
        self.expected = 0

    async def on_msg(self, msg: Any) -> None:
        now = time.time()
        body = json.loads(msg.data)
        seen = self.arrived.get(body["type"])
        if seen is None or body["subtask_id"] in seen:
            return
        seen[body["subtask_id"]] = now
        if body["type"] == "subtask_result" and body.get("started_at"):  # no subtask_started was sent
            began = datetime.fromisoformat(body["started_at"]).timestamp()
            self.arrived["subtask_started"].setdefault(body["subtask_id"], began)
        if body["type"] == "subtask_result":
            self.results += 1
            future = self.waiting.pop(body["subtask_id"], None)
            if future is not None and not future.done():
                future.set_result(None)
            if self.results >= self.expected:
                self.all_in.set()


def offer(execution_id: str, i: int) -> TaskOffer:
    return TaskOffer(
        execution_id=execution_id, plan_id="bench", task_id=f"t{i}", subtask_id=f"s{i}", attempt=1, action="noop"
    )


async def raw_round_trips(bus: Bus, n: int = 1000) -> float:
    subject = bus.subjects.dlq("bench")  # a stream nobody consumes
    started = time.perf_counter()
    for i in range(n):
        await bus.js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"raw-{i}"})
    return (time.perf_counter() - started) / n


async def chain(bus: Bus, reports: Reports, n: int) -> list[float]:
    subject = bus.subjects.task("noop")
    loop = asyncio.get_running_loop()
    hops = []
    for i in range(n):
        the_offer = offer("chain", i)
        done: asyncio.Future[None] = loop.create_future()
        reports.waiting[the_offer.subtask_id] = done
        began = time.time()
        await bus.publish(subject, the_offer, msg_id=the_offer.msg_id)
        await asyncio.wait_for(done, 30)
        hops.append(reports.arrived["subtask_result"][the_offer.subtask_id] - began)
    return hops


async def wide(bus: Bus, reports: Reports, n: int, agent_pids: list[int]) -> Figures:
    reports.arrived = {"subtask_started": {}, "subtask_result": {}}
    reports.results, reports.expected = 0, n
    reports.all_in.clear()
    subject = bus.subjects.task("noop")
    offers = [offer("wide", i) for i in range(n)]
    cpu0 = sum(cpu_s(pid) for pid in agent_pids)
    began = time.time()
    outcomes = await bus.publish_many([Publication(subject, o, o.msg_id, False, None) for o in offers])
    assert not [o for o in outcomes if isinstance(o, Exception)], "an offer was not stored"
    published = time.time()
    await asyncio.wait_for(reports.all_in.wait(), 300)
    took = time.time() - began
    cpu = sum(cpu_s(pid) for pid in agent_pids) - cpu0
    waits = [t - began for t in reports.arrived["subtask_started"].values()]
    return {
        "wide_per_s": n / took,
        "publish_s": published - began,
        "offer_to_started_p50_ms": pct(waits, 0.5) * 1000,
        "offer_to_started_p99_ms": pct(waits, 0.99) * 1000,
        "agent_cpu_ms_per_offer": cpu / n * 1000,
    }


async def one_run(args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory(prefix="planexe-bench-agents-") as tmp:
        folder = Path(tmp)
        async with EmbeddedNats(folder / "nats") as server:
            env = {"PLANEXE_NATS_URL": server.url, "PLANEXE_NAMESPACE": "bench", "PLANEXE_DATA_DIR": str(folder),
                   "PLANEXE_LOG_LEVEL": "WARNING"}  # fmt: skip
            agent_args = [sys.executable, str(HERE / "noop_agent.py")]
            agents = [Child(agent_args, env, folder / f"agent{i}.log") for i in range(args.agents)]
            with children(*agents):
                for agent in agents:
                    agent.wait_for("noop agent ready")
                settings = Settings(nats_url=server.url, namespace="bench", data_dir=folder)
                bus = await connect(settings, server.url, "bench-driver", role="admin")
                try:
                    reports = Reports()
                    await bus.nc.subscribe(bus.subjects.all_reports, cb=reports.on_msg)
                    await bus.nc.flush()
                    raw = await raw_round_trips(bus)
                    hops = await chain(bus, reports, args.chain)
                    figures = await wide(bus, reports, args.offers, [a.proc.pid for a in agents])
                finally:
                    await bus.close()
    figures["raw_publish_ack_ms"] = raw * 1000
    figures["chain_hop_p50_ms"], figures["chain_hop_p99_ms"] = pct(hops, 0.5) * 1000, pct(hops, 0.99) * 1000
    return figures


async def main(args: argparse.Namespace) -> None:
    runs = []
    for i in range(args.runs):
        figures = await one_run(args)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
        runs.append(figures)
    median = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    print(f"load {os.getloadavg()[0]:.2f}; medians of {args.runs} runs, {args.agents} agent processes:")
    print(f"  raw publish+ack {median['raw_publish_ack_ms']:.2f} ms")
    print(f"  chain: offer -> result p50 {median['chain_hop_p50_ms']:.2f} ms, p99 {median['chain_hop_p99_ms']:.2f} ms")
    print(f"  wide: {args.offers} offers {median['wide_per_s']:,.0f}/s, offer -> started p50 "
          f"{median['offer_to_started_p50_ms']:.1f} ms, p99 {median['offer_to_started_p99_ms']:.1f} ms, "
          f"agent CPU per offer {median['agent_cpu_ms_per_offer']:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
