"""The project against the raw NATS floor and Temporal, same jobs, one command, ratios measured in one run.

    python bench/compare.py [--runs 3] [--subtasks 1000] [--chain 100] [--sizes 100,5000] [--agents 2] [--json]
                            [--tracing]

Each run starts a nats-server in operator mode (every service with its own identity) and, as separate
processes, the projector (SQLite read model), the coordinator and ``--agents`` no-op agent processes (the CPU
per subtask of the wide job of each of them, of the nats-server and of this bench's own client is read from
/proc: together, the budget of the two cores; while a job runs the client follows only the execution's end, and
reads the subtasks' dispatch and start times, and how many events the execution stored, from the stream
afterwards: each event is a message every service on its path pays for); the floor's worker (bench/floor.py) on
a nats-server without auth; and, when the optional ``bench`` extra is installed, Temporal's dev server with a
worker (bench/temporal_job.py). Every run does the wide job (``--subtasks`` independent no-op subtasks), the
chain job (``--chain`` finish-to-start tasks), and the project alone at each of ``--sizes`` (throughput,
coordinator CPU per subtask, and how long after the end the read model caught up; a 5,000-subtask plan is over
1 MB of JSON, so it travels by reference to the plan object store). Figures are medians over the runs; ratios
are to the floor and to Temporal of the same runs.

With ``--tracing`` every process of the project (the no-op agents too, as ``serve agents`` would) exports
every span over OTLP/HTTP to a receiver in another process (tests/helpers/otlp.py, which decodes each request
as a collector would); the count of spans it received is printed after the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floor import FloorCoordinator, provision  # bench/ is not a package: its folder is on the path
from throughput import plan, start_receiver, stop_receiver

from planexe_ax.bus import EmbeddedNats, ExecutionStatus, Plan, connect, decode_event
from planexe_ax.bus.client import agent_cards, follow, start_execution
from planexe_ax.bus.messages import SubtaskResult, SubtaskStarted, SubtaskState, TaskStatus
from planexe_ax.bus.replay import execution_events
from planexe_ax.config import Settings
from planexe_ax.readmodel.db import read_model
from planexe_ax.readmodel.ops import checkpoint

HERE = Path(__file__).resolve().parent
Figures = dict[str, float]
CLOCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A child process whose output goes to a file; ``wait_for`` a line it prints."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.sink = log.open("wb")
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=self.sink, stderr=subprocess.STDOUT)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.proc.args!r} did not print {text!r}: {self.log.read_text()[-1500:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sink.close()


@contextlib.contextmanager
def children(*spawned: Child) -> Iterator[list[Child]]:
    try:
        yield list(spawned)
    finally:
        for child in spawned:
            child.stop()


async def project_run(url: str, folder: Path, args: argparse.Namespace, server_pid: int | None = None) -> Figures:
    """The project's figures: every service its own process on the server at ``url`` (process ``server_pid``)."""
    db = f"sqlite+aiosqlite:///{folder}/readmodel.db"
    env = {"PLANEXE_NATS_URL": url, "PLANEXE_NAMESPACE": "bench", "PLANEXE_DATA_DIR": str(folder),
           "PLANEXE_DATABASE_URL": db, "PLANEXE_LAG_SCALE_S": "0", "PLANEXE_LOG_LEVEL": "WARNING"}  # fmt: skip
    serve = [sys.executable, "-m", "planexe_ax", "serve"]
    projector = Child([*serve, "projector"], {**env, "PLANEXE_LOG_LEVEL": "INFO"}, folder / "projector.log")
    projector.wait_for("running on nats://")
    coordinator = Child([*serve, "coordinator"], {**env, "PLANEXE_LOG_LEVEL": "INFO"}, folder / "coordinator.log")
    coordinator.wait_for("running on nats://")
    agent_args = [sys.executable, str(HERE / "noop_agent.py")]
    agents = [Child(agent_args, env, folder / f"agent{i}.log") for i in range(args.agents)]
    with children(projector, coordinator, *agents):
        for agent in agents:
            agent.wait_for("noop agent ready")
        settings = Settings(nats_url=url, namespace="bench", data_dir=folder, database_url=db)
        bus = await connect(settings, url, "bench-client", role="operator")
        try:
            await _agents_online(bus, args.agents)
            figures: Figures = {}
            pids = {"coordinator": [coordinator.proc.pid], "agent": [a.proc.pid for a in agents],
                    "projector": [projector.proc.pid], "server": [server_pid] if server_pid else []}  # fmt: skip
            wide_s, wide = await _execute(bus, plan(args.subtasks, chain=False), pids=pids)
            for name, used in wide["cpu"].items():
                figures[f"{name}_cpu_ms_per_subtask"] = used / args.subtasks * 1000
            figures["client_cpu_ms_per_subtask"] = wide["end"]["client_cpu_s"] / args.subtasks * 1000
            figures["events_per_subtask"] = wide["end"]["events"] / args.subtasks
            figures["wide_per_s"] = args.subtasks / wide_s
            figures["dispatch_p50_ms"], figures["dispatch_p99_ms"] = _dispatch(wide)
            figures["readmodel_behind_s"] = await _readmodel_lag(db, wide["end"])
            _, chain = await _execute(bus, plan(args.chain, chain=True), pids=pids, legs=True)
            figures.update(_legs(chain))
            for name, used in chain["cpu"].items():
                figures[f"{name}_cpu_ms_per_hop"] = used / args.chain * 1000
            hops = _hops(chain)
            figures["chain_hop_p50_ms"], figures["chain_hop_p99_ms"] = pct(hops, 0.5) * 1000, pct(hops, 0.99) * 1000
            for size in args.sizes:
                cpu0 = cpu_s(coordinator.proc.pid)
                took, seen = await _execute(bus, plan(size, chain=False), times=False)
                figures[f"per_s_at_{size}"] = size / took
                cpu = cpu_s(coordinator.proc.pid) - cpu0
                figures[f"coordinator_cpu_ms_per_subtask_at_{size}"] = cpu / size * 1000
                figures[f"readmodel_behind_s_at_{size}"] = await _readmodel_lag(db, seen["end"])
            log = coordinator.log.read_text(errors="replace")  # a coordinator too busy to renew its leases
            figures["leases_lost"] = log.count("partition leases lost")
            figures["leases_taken_back"] = log.count("lease lapsed and taken back")
            return figures
        finally:
            await bus.close()


async def _agents_online(bus: Any, count: int) -> None:
    deadline = time.monotonic() + 30
    while len([c for c in await agent_cards(bus) if c.agent_id.startswith("noop-")]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the no-op agents did not register")
        await asyncio.sleep(0.1)


async def _execute(
    bus: Any, the_plan: Plan, times: bool = True, pids: dict[str, list[int]] | None = None, legs: bool = False
) -> tuple[float, dict[str, dict[str, float]]]:
    """Run ``the_plan``; its time, and (``times``) when each subtask was dispatched and started, read after.

    A subtask's start is its ``subtask_started``, or the ``started_at`` of a result sent without one.

    With ``legs``, also when each subtask's result was sent, and when the server stored its DISPATCHED, its
    start and its result (the stream's own time of each message): what :func:`_legs` splits a hop into.

    With ``pids`` (processes by name), ``seen["cpu"]`` holds the CPU seconds each group of processes used until
    the end was seen (not the reading after).

    While it runs this client follows only the execution's end, as a caller waiting for it would; the times of
    its subtasks are read afterwards, so this client's decoding does not take CPU from the services measured.
    ``seen["end"]["at"]`` is when the end was seen (``time.perf_counter``): the read model's lag counts from it.
    """
    groups = {name: group for name, group in (pids or {}).items() if group}
    before = {name: sum(cpu_s(pid) for pid in group) for name, group in groups.items()}
    began, cpu0 = time.perf_counter(), time.process_time()
    execution_id = await start_execution(bus, the_plan)
    outcome = await follow(bus, execution_id, timeout_s=600, kinds=())
    ended = time.perf_counter()
    used = {name: sum(cpu_s(pid) for pid in group) - before[name] for name, group in groups.items()}
    took = ended - began
    client_cpu_s = time.process_time() - cpu0
    if outcome.status != ExecutionStatus.COMPLETED:
        raise RuntimeError(f"the bench execution ended {outcome}")
    seen: dict[str, dict[str, float]] = {"dispatched": {}, "started": {}}
    seen["end"] = {"seq": outcome.stream_seq, "client_cpu_s": client_cpu_s, "at": ended}
    stored = await bus.js.stream_info(bus.subjects.events_stream, subjects_filter=bus.subjects.events_of(execution_id))
    seen["end"]["events"] = sum((stored.state.subjects or {}).values())
    seen["cpu"] = used
    if not times:
        return took, seen
    kinds = ("subtask_state", "subtask_started", "subtask_result")  # a quick attempt's result says when it began
    seqs: dict[str, dict[str, int]] = {"dispatched": {}, "started": {}, "result": {}}
    seen["result"] = {}
    async with execution_events(bus, execution_id, 0, kinds=kinds) as events:
        end, last = await events.last_stored(), 0
        async for stored in events.through(end, timeout_s=10):
            last = stored.seq
            event = decode_event(stored.data)
            if isinstance(event, SubtaskState) and event.status == TaskStatus.DISPATCHED:
                kind = "dispatched"
            elif isinstance(event, SubtaskStarted):
                kind = "started"
            elif isinstance(event, SubtaskResult):
                kind = "result"
                if event.started_at is not None:  # no subtask_started was sent: the result says when it began
                    seen["started"].setdefault(event.subtask_id or "", event.started_at.timestamp())
            else:
                continue
            seen[kind].setdefault(event.subtask_id or "", event.ts.timestamp())
            seqs[kind].setdefault(event.subtask_id or "", stored.seq)
    if last < end:
        raise RuntimeError("the bench execution's events could not be read back")
    if legs:
        for kind, by_subtask in seqs.items():
            seen[f"{kind}_stored"] = {
                subtask: (await bus.js.get_msg(bus.subjects.events_stream, seq)).time.timestamp()
                for subtask, seq in by_subtask.items()
            }
    return took, seen


def _dispatch(seen: dict[str, Any]) -> tuple[float, float]:
    waits = [seen["started"][s] - t for s, t in seen["dispatched"].items() if s in seen["started"]]
    return pct(waits, 0.5) * 1000, pct(waits, 0.99) * 1000


LEGS = (
    ("chain_leg_decided_stored_ms", "dispatched", "dispatched_stored", False),
    ("chain_leg_stored_started_ms", "dispatched_stored", "started", False),
    ("chain_leg_started_result_stored_ms", "started", "result_stored", False),
    ("chain_leg_result_stored_decided_ms", "result_stored", "dispatched", True),
)
"""A hop cut in four (they add up to it): the DISPATCHED decided (its ``ts``) -> stored by the server -> the
agent's start (its ``ts``) -> the result stored -> the next subtask's DISPATCHED decided."""


def _legs(seen: dict[str, Any]) -> dict[str, float]:
    """The p50 of each leg of :data:`LEGS`, in ms, over the chain's hops."""
    out: dict[str, float] = {}
    hops = [(f"s{i - 1}", f"s{i}") for i in range(1, len(seen["dispatched"]))]
    for name, since, until, to_next in LEGS:
        values = [
            seen[until][b if to_next else a] - seen[since][a]
            for a, b in hops
            if a in seen[since] and (b if to_next else a) in seen[until]
        ]
        out[name] = pct(values, 0.5) * 1000
    return out


def _hops(seen: dict[str, Any]) -> list[float]:
    at = seen["dispatched"]
    return [at[f"s{i}"] - at[f"s{i - 1}"] for i in range(1, len(at)) if f"s{i}" in at and f"s{i - 1}" in at]


async def _readmodel_lag(db: str, end: dict[str, float]) -> float:
    """Seconds from when the execution's end was seen (``end["at"]``) until the projector's checkpoint passes it."""
    async with read_model(db) as sessions:
        while await checkpoint(sessions) < int(end["seq"]):
            if time.perf_counter() - end["at"] > 300:
                return float("inf")
            await asyncio.sleep(0.02)
    return time.perf_counter() - end["at"]


async def floor_run(url: str, folder: Path, args: argparse.Namespace) -> Figures:
    """The floor's figures: bench/floor.py's worker in its own process."""
    figures: Figures = {}
    for job in ("wide", "chain"):
        await provision(url)
        worker = Child([sys.executable, str(HERE / "floor.py"), "worker", url], {}, folder / f"floor-{job}.log")
        with children(worker):
            worker.wait_for("floor worker ready")
            coordinator = FloorCoordinator(url)
            if job == "wide":
                figures["wide_per_s"] = args.subtasks / await coordinator.wide(args.subtasks)
                waits = coordinator.dispatch_to_start()
                figures["dispatch_p50_ms"] = pct(waits, 0.5) * 1000
                figures["dispatch_p99_ms"] = pct(waits, 0.99) * 1000
            else:
                hops = await coordinator.chain(args.chain)
                figures["chain_hop_p50_ms"] = pct(hops, 0.5) * 1000
                figures["chain_hop_p99_ms"] = pct(hops, 0.99) * 1000
    return figures


def temporal_available() -> bool:
    try:
        import temporalio  # noqa: F401
    except ImportError:
        return False
    return shutil.which("temporal") is not None or (Path(sys.executable).parent / "temporal").exists()


async def temporal_run(folder: Path, args: argparse.Namespace) -> Figures:
    """Temporal's figures: its dev server and a worker process, the same jobs as workflows."""
    from temporal_job import run_job

    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    port = free_port()
    ports = ["--port", str(port), "--http-port", str(free_port()), "--metrics-port", str(free_port())]
    server = Child(
        [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", *ports], {}, folder / "temporal.log"
    )
    address = f"127.0.0.1:{port}"
    with children(server):
        _wait_listening(port, server)  # a worker that connects before the server listens exits at once
        worker = Child([sys.executable, str(HERE / "temporal_job.py"), "worker", address], {}, folder / "tworker.log")
        with children(worker):
            worker.wait_for("temporal worker ready")
            took, wide = await run_job(address, "Wide", args.subtasks)
            _, chain = await run_job(address, "Chain", args.chain)
    waits = [w for _, w in wide]
    starts = [s for s, _ in chain]
    hops = [b - a for a, b in itertools.pairwise(starts)]
    return {"wide_per_s": args.subtasks / took, "dispatch_p50_ms": pct(waits, 0.5) * 1000,
            "dispatch_p99_ms": pct(waits, 0.99) * 1000, "chain_hop_p50_ms": pct(hops, 0.5) * 1000,
            "chain_hop_p99_ms": pct(hops, 0.99) * 1000}  # fmt: skip


def _wait_listening(port: int, server: Child, timeout_s: float = 120.0) -> None:
    """Return once something accepts connections on ``port`` (the server's first start makes its database)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.proc.args!r} is not listening on {port}: {server.log.read_text()[-1500:]}")
        time.sleep(0.1)


async def one_run(args: argparse.Namespace, with_temporal: bool) -> dict[str, Figures]:
    with tempfile.TemporaryDirectory(prefix="planexe-bench-") as tmp:
        folder = Path(tmp)
        async with EmbeddedNats(folder / "floor-nats", auth=False) as server:
            out = {"floor": await floor_run(server.url, folder, args)}
        async with EmbeddedNats(folder / "nats") as server:  # operator mode: services use their identities
            out["project"] = await project_run(server.url, folder, args, server.proc.pid if server.proc else None)
        if with_temporal:
            out["temporal"] = await temporal_run(folder, args)
        return out


def medians(runs: list[dict[str, Figures]]) -> dict[str, Figures]:
    out: dict[str, Figures] = {}
    for system in runs[0]:
        keys = runs[0][system].keys()
        out[system] = {k: statistics.median(run[system][k] for run in runs) for k in keys}
    return out


LABELS = [
    ("wide_per_s", "{n} independent subtasks (subtasks/s)", True),
    ("dispatch_p50_ms", "dispatch -> started, {n} ready, p50 (ms)", False),
    ("dispatch_p99_ms", "dispatch -> started, {n} ready, p99 (ms)", False),
    ("chain_hop_p50_ms", "chain of {c}, per hop p50 (ms)", False),
    ("chain_hop_p99_ms", "chain of {c}, per hop p99 (ms)", False),
    ("coordinator_cpu_ms_per_subtask", "coordinator CPU per subtask at {n} (ms)", False),
    ("agent_cpu_ms_per_subtask", "agents' CPU per subtask at {n} (ms, all agent processes)", False),
    ("projector_cpu_ms_per_subtask", "projector CPU per subtask at {n} (ms)", False),
    ("server_cpu_ms_per_subtask", "nats-server CPU per subtask at {n} (ms)", False),
    ("client_cpu_ms_per_subtask", "this bench's client (start, follow) CPU per subtask at {n} (ms)", False),
    ("events_per_subtask", "events stored per subtask at {n} (and one offer each)", False),
    ("chain_leg_decided_stored_ms", "chain hop, p50 of: DISPATCHED decided -> stored (ms)", False),
    ("chain_leg_stored_started_ms", "  ... DISPATCHED stored -> the agent starts (ms)", False),
    ("chain_leg_started_result_stored_ms", "  ... started -> the result stored (ms)", False),
    ("chain_leg_result_stored_decided_ms", "  ... result stored -> next DISPATCHED decided (ms)", False),
    ("coordinator_cpu_ms_per_hop", "coordinator CPU per hop of the chain (ms)", False),
    ("agent_cpu_ms_per_hop", "agents' CPU per hop of the chain (ms)", False),
    ("projector_cpu_ms_per_hop", "projector CPU per hop of the chain (ms)", False),
    ("server_cpu_ms_per_hop", "nats-server CPU per hop of the chain (ms)", False),
    ("readmodel_behind_s", "read model behind the stream at the end of {n} (s)", False),
    ("leases_lost", "coordinator: partition leases lost (log lines)", False),
    ("leases_taken_back", "coordinator: lapsed leases taken back (log lines)", False),
]


def _cell(value: float) -> str:
    """A figure in a 10-wide cell: two decimals below 10 (CPU per subtask is a fraction of a millisecond)."""
    return f"{value:10.2f}" if abs(value) < 10 else f"{value:10.1f}"


def report(result: dict[str, Figures], args: argparse.Namespace) -> None:
    project, floor, temporal = result["project"], result["floor"], result.get("temporal")
    print(f"{'figure':54} {'project':>10} {'floor':>10} {'temporal':>10} {'vs floor':>9} {'vs temporal':>11}")
    rows = list(LABELS) + [
        (f"{prefix}{size}", label.format(s=size), up)
        for size in args.sizes
        for prefix, label, up in (
            ("per_s_at_", "throughput at {s} (subtasks/s)", True),
            ("coordinator_cpu_ms_per_subtask_at_", "coordinator CPU per subtask at {s} (ms)", False),
            ("readmodel_behind_s_at_", "read model behind the stream at the end of {s} (s)", False),
        )
    ]
    for key, label, higher_better in rows:
        mine = project.get(key, float("nan"))
        cells = [_cell(mine)]
        ratios = []
        for other in (floor, temporal):
            value = other.get(key) if other else None
            cells.append(_cell(value) if value is not None else f"{'-':>10}")
            ratios.append(f"{(mine / value if higher_better else value / mine):.2f}x" if value else "-")
        print(f"{label.format(n=args.subtasks, c=args.chain):54} {' '.join(cells)} {ratios[0]:>9} {ratios[1]:>11}")
    if temporal is None:
        why = "skipped (--no-temporal)" if args.no_temporal else "not installed (pip install '.[bench]')"
        print(f"temporal: {why}")
    print("ratios: project's speed as a fraction of the other's (above 1: the project is faster)")


async def main(args: argparse.Namespace) -> None:
    if args.show:
        report(json.loads(args.show.read_text())["median"], args)
        return
    with_temporal = temporal_available() and not args.no_temporal
    receiver = None
    if args.tracing:  # the services (child processes) read these; so no queue fills and drops spans
        receiver, os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = start_receiver()
        os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "200000")
    try:
        runs = [await one_run(args, with_temporal) for _ in range(args.runs)]
    finally:
        spans = stop_receiver(receiver) if receiver else None
    result = medians(runs)
    if args.json:
        out = {"runs": runs, "median": result, "temporal_installed": with_temporal, "spans_received": spans}
        print(json.dumps(out, indent=2))
    else:
        report(result, args)
        if spans is not None:
            print(f"spans received by the OTLP receiver over {args.runs} run(s): {spans}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subtasks", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[100, 5000])
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--no-temporal", action="store_true", help="skip Temporal even when installed")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--show", type=Path, help="print the table of a saved --json output instead of running")
    parser.add_argument("--tracing", action="store_true", help="every service exports every span over OTLP")
    asyncio.run(main(parser.parse_args()))
