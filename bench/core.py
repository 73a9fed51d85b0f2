"""One event through the coordinator core, at several plan sizes: microseconds per agent report.

    python bench/core.py [--sizes 100,1000,5000,50000] [--reports 2000]

Pure: no bus. Starts a wide plan of N one-subtask tasks with one online agent (every subtask is offered),
then feeds ``--reports`` agent reports (a start, then a result, per subtask) and times them; also the
start itself (ms), decided whole, and its first round as the service decides it (in slices of the default
``PLANEXE_DISPATCH_SLICE``: the longest the start keeps the coordinator from anything else), and the core's
memory per 10,000 subtasks (tracemalloc, once, at the largest size). The collector is tuned as in every
``planexe-ax`` process (``common.eventloop.tune_gc``); ``--default-gc`` leaves Python's default.
A core that is flat in plan size costs the same per event at every size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from planexe_ax.bus import Event, Plan, StartExecution, SubtaskResult, SubtaskStarted
from planexe_ax.common.eventloop import tune_gc
from planexe_ax.config import Settings
from planexe_ax.coordinator import CoordinatorCore, CoreConfig

SLICE = int(Settings.model_fields["dispatch_slice"].default)


def wide(n: int) -> Plan:
    tasks = [{"task_id": f"t{i}", "title": f"T{i}", "subtasks": [{"subtask_id": f"s{i}", "action": "noop"}]}
             for i in range(n)]  # fmt: skip
    phases = [{"phase_id": "p", "name": "P", "tasks": tasks}]
    return Plan.model_validate({"plan_id": "bench", "goal": "bench", "phases": phases})


def measure(n: int, reports: int) -> dict[str, float]:
    core = CoordinatorCore()
    now = datetime.now(UTC)
    core.set_agents({"a": frozenset({"noop"})}, now)
    began = time.perf_counter()
    core.on_command(StartExecution(execution_id="x", plan=wide(n)), now)
    start_ms = (time.perf_counter() - began) * 1000
    sliced = CoordinatorCore(CoreConfig(dispatch_slice=SLICE))
    sliced.set_agents({"a": frozenset({"noop"})}, now)
    began = time.perf_counter()
    sliced.on_command(StartExecution(execution_id="x", plan=wide(n)), now)
    first_round_ms = (time.perf_counter() - began) * 1000
    count = min(n, reports // 2)
    events: list[Event] = []
    for i in range(count):
        ids = {"execution_id": "x", "task_id": f"t{i}", "subtask_id": f"s{i}", "attempt": 1, "agent_id": "a", "ts": now}
        events += [SubtaskStarted(**ids), SubtaskResult(ok=True, **ids)]
    began = time.perf_counter()
    for event in events:
        core.on_event(event, now)
    per_event_us = (time.perf_counter() - began) / len(events) * 1e6
    return {"subtasks": n, "us_per_event": per_event_us, "start_ms": start_ms, "first_round_ms": first_round_ms}


def memory_per_10k(n: int) -> float:
    tracemalloc.start()
    core = CoordinatorCore()
    now = datetime.now(UTC)
    core.set_agents({"a": frozenset({"noop"})}, now)
    before = tracemalloc.get_traced_memory()[0]
    core.on_command(StartExecution(execution_id="x", plan=wide(n)), now)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n * 10_000 / 2**20


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000, 5000, 50000])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--default-gc", action="store_true", help="Python's default collector thresholds")
    args = parser.parse_args()
    if not args.default_gc:
        tune_gc()
    rows = [measure(n, args.reports) for n in args.sizes]
    mib = memory_per_10k(max(args.sizes))
    if args.json:
        print(json.dumps({"sizes": rows, "memory_mib_per_10k_subtasks": mib}))
    else:
        for row in rows:
            n, us, ms, first = row["subtasks"], row["us_per_event"], row["start_ms"], row["first_round_ms"]
            print(f"{n:>7.0f} subtasks: {us:8.1f} us per event, start {ms:8.1f} ms, its first slice {first:8.1f} ms")
        print(f"core memory: {mib:.1f} MiB per 10,000 subtasks (plan and state, measured at {max(args.sizes)})")
