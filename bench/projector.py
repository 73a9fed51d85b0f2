"""The projector replaying AX_EVENTS into an empty read model: events per second, against raw executemany.

    python bench/projector.py [--executions 7] [--subtasks 1000] [--batch 1000] [--lag-subtasks 5000]
                              [--lag-rate 3000] [--plain] [--json]

Starts its own nats-server (temporary store, no auth) and publishes the events of ``--executions`` wide runs
of ``--subtasks`` one-subtask tasks each, one message per event as the coordinator and the agents first wrote
them (8 events a subtask: task READY, RUNNING and COMPLETED, subtask DISPATCHED, started, RUNNING, result,
COMPLETED; plus created and the execution's states). The figures are per event, and the earlier ones were measured
on this shape: it stays, though a quick one-subtask task is now stored in 3 (its task's moves ride in its subtask's
decisions, and a result sent without a start). Then, on SQLite and, when PLANEXE_TEST_DATABASE_URL is set, on
a PostgreSQL database of its own, it measures:

- raw: the same number of rows (sequence, event id, execution, type, the event's JSON) inserted by one
  driver-level ``executemany`` in one transaction, the floor of any projector;
- replay: a projector with a fresh durable from the first event to the checkpoint at the last (the database
  migrated before the clock starts); the tables are checked against the stream afterwards. Also the events per
  CPU second of this process over the replay (with SQLite the database works in this process too): a figure
  that other load on the machine disturbs less than wall-clock time.

- lag: a projector running live (in a namespace of its own) while another process publishes the events of
  one wide run of ``--lag-subtasks`` subtasks at ``--lag-rate`` events/s (a coordinator with agents writes
  about 2,700/s on this machine, bench/scaling.py); how long after the last event was acked the read model
  has it (the goal: at most 1 s). ``--lag-subtasks 0`` skips it.

It runs as a ``planexe-ax serve projector`` process does (:mod:`planexe_ax.common.eventloop`): on uvloop, the
young generation collected every ``PROJECTOR_YOUNG_THRESHOLD`` allocations, and what was allocated before the
measurements (the published events, which a projector's process does not hold) frozen out of the collector's
passes, as ``serve`` freezes its startup objects. ``--plain`` runs on asyncio's loop with Python's default
collector instead (the figures before: the collector walking the bench's 56,000 events took about a fifth of the
replay's time).

Prints events/s and the ratio to raw for each database; ``--json`` prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text
from tests.helpers.postgres import ENV, create_database, drop_database

from planexe_ax.bus import (
    Bus,
    EmbeddedNats,
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    Phase,
    Plan,
    Subtask,
    SubtaskResult,
    SubtaskStarted,
    SubtaskState,
    Task,
    TaskState,
    TaskStatus,
    connect,
    new_id,
)
from planexe_ax.bus.messages import EventBase
from planexe_ax.bus.plan_store import store_plan
from planexe_ax.common import eventloop
from planexe_ax.config import Settings
from planexe_ax.projector import Projector
from planexe_ax.projector.service import BATCH
from planexe_ax.readmodel import make_engine
from planexe_ax.readmodel.models import ExecutionEvent, ExecutionSubtask

NAMESPACE = "projbench"
LAG_NAMESPACE = "projlag"
PUBLISH_WINDOW = 1000
PACE_TICK_S = 0.05
ROWS_TABLE = "bench_raw_rows"


def wide_plan(plan_id: str, subtasks: int) -> Plan:
    tasks = [
        Task(task_id=f"t{i}", title=f"task {i}", subtasks=[Subtask(subtask_id=f"s{i}", action="noop", params={"i": i})])
        for i in range(subtasks)
    ]
    return Plan(plan_id=plan_id, goal="bench", title="wide", phases=[Phase(phase_id="ph", name="all", tasks=tasks)])


def wide_run(execution_id: str, plan: Plan) -> list[EventBase]:
    """The events of one run of ``plan`` in the order a coordinator with agents interleaves them."""
    e = execution_id
    events: list[EventBase] = [
        ExecutionCreated(execution_id=e, plan=plan),
        ExecutionState(execution_id=e, status=ExecutionStatus.RUNNING),
    ]
    tasks = plan.tasks()
    events += [TaskState(execution_id=e, task_id=task.task_id, status=TaskStatus.READY) for task in tasks]
    for task in tasks:
        sub = task.subtasks[0]
        ids = {"execution_id": e, "task_id": task.task_id, "subtask_id": sub.subtask_id, "attempt": 1}
        events += [
            TaskState(execution_id=e, task_id=task.task_id, status=TaskStatus.RUNNING),
            SubtaskState(status=TaskStatus.DISPATCHED, action=sub.action, **ids),
        ]
    for task in tasks:
        sub = task.subtasks[0]
        ids = {"execution_id": e, "task_id": task.task_id, "subtask_id": sub.subtask_id, "attempt": 1}
        agent = f"agent-{int(task.task_id[1:]) % 8}"
        events += [
            SubtaskStarted(agent_id=agent, **ids),
            SubtaskState(status=TaskStatus.RUNNING, agent_id=agent, action=sub.action, **ids),
            SubtaskResult(ok=True, output={"echo": sub.params}, agent_id=agent, **ids),
            SubtaskState(status=TaskStatus.COMPLETED, output={"echo": sub.params}, action=sub.action, **ids),
            TaskState(execution_id=e, task_id=task.task_id, status=TaskStatus.COMPLETED),
        ]
    events.append(ExecutionState(execution_id=e, status=ExecutionStatus.COMPLETED, reason="all done"))
    return events


async def publish(bus: Bus, events: list[EventBase]) -> int:
    """Publish every event, a window at a time; return the last stream sequence."""
    last = 0
    for start in range(0, len(events), PUBLISH_WINDOW):
        acks = await asyncio.gather(*(bus.publish_event(e) for e in events[start : start + PUBLISH_WINDOW]))
        last = max(last, *(ack.seq for ack in acks))
    return last


async def publish_paced(bus: Bus, events: list[EventBase], rate: float) -> int:
    """Publish ``events`` at about ``rate`` per second, a tick's worth at a time; return the last stream sequence."""
    window, last = max(1, int(rate * PACE_TICK_S)), 0
    started = time.perf_counter()
    for tick, start in enumerate(range(0, len(events), window)):
        await asyncio.sleep(max(0.0, started + tick * PACE_TICK_S - time.perf_counter()))  # pacing, not waiting
        acks = await asyncio.gather(*(bus.publish_event(e) for e in events[start : start + window]))
        last = max(last, *(ack.seq for ack in acks))
    return last


async def publish_run(url: str, namespace: str, folder: str, name: str, subtasks: int, rate: float) -> None:
    """The publisher process of :func:`lag`: one wide run paced at ``rate``; prints its last sequence and end time."""
    bus = await connect(Settings(namespace=namespace, data_dir=Path(folder)), url, "bench-publisher", role=None)
    try:
        plan = wide_plan(f"lag-{name}", subtasks)
        events = wide_run(f"lag-{name}", plan)
        # As the coordinator sends a plan this large: by reference to the plan object store.
        events[0] = events[0].model_copy(update={"plan": None, "plan_ref": await store_plan(bus, plan)})
        started = time.monotonic()
        last = await publish_paced(bus, events, rate)
        done = time.monotonic()
    finally:
        await bus.close()
    print(json.dumps({"last": last, "events": len(events), "published_per_s": len(events) / (done - started),
                      "done": done}))  # fmt: skip


async def lag(url: str, folder: Path, name: str, database_url: str, args: Any) -> dict[str, Any]:
    """A projector running live while another process publishes a run as a coordinator would: seconds behind."""
    namespace = f"{LAG_NAMESPACE}{name}"
    bus = await connect(Settings(namespace=namespace, data_dir=folder / f"lag-{name}"), url, "bench-lag", role=None)
    stop = asyncio.Event()
    try:
        async with Projector(bus, database_url) as projector:
            runner = asyncio.create_task(projector.run(stop))
            try:
                publisher = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--publish", url, namespace, str(folder / f"pub-{name}"), name,
                    str(args.lag_subtasks), str(args.lag_rate), stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await publisher.communicate()
                published = json.loads(out.decode().strip().splitlines()[-1])
                await projector.wait_for_seq(published["last"], timeout=600)
                behind = time.monotonic() - published["done"]
            finally:
                stop.set()
                await runner
    finally:
        await bus.close()
    return {"database": name, "lag_events": published["events"], "published_per_s": published["published_per_s"],
            "seconds_behind": behind, "lag_batches": projector.batches}  # fmt: skip


async def raw_rows_per_s(database_url: str, events: list[EventBase]) -> float:
    """Rows per second of one driver-level executemany of ``events`` as plain rows, in one transaction."""
    rows = [
        (seq, e.event_id, e.execution_id, str(getattr(e, "type")), e.model_dump_json())  # noqa: B009
        for seq, e in enumerate(events, 1)
    ]
    pg = database_url.startswith("postgresql")
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            json_type = "jsonb" if pg else "text"
            await conn.exec_driver_sql(
                f"CREATE TABLE {ROWS_TABLE} (stream_seq bigint PRIMARY KEY, event_id varchar(128) UNIQUE, "
                f"execution_id varchar(128), type varchar(64), data {json_type})"
            )
        insert = f"INSERT INTO {ROWS_TABLE} VALUES " + ("($1, $2, $3, $4, $5)" if pg else "(?, ?, ?, ?, ?)")
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.exec_driver_sql(insert, rows)  # a list of tuples: executemany
        elapsed = time.perf_counter() - started
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {ROWS_TABLE}"))
    finally:
        await engine.dispose()
    return len(rows) / elapsed


async def replay(bus: Bus, database_url: str, last_seq: int, batch: int) -> dict[str, Any]:
    """A fresh projector from the first event to ``last_seq``: seconds, and the tables checked."""
    durable = f"bench-{new_id()[:8]}"
    async with Projector(bus, database_url, durable=durable, batch=batch) as projector:
        runner = asyncio.create_task(projector.run_until_idle())
        started, cpu = time.perf_counter(), time.process_time()
        try:
            await projector.wait_for_seq(last_seq, timeout=3600)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            await runner
        async with projector.sessions() as session:
            stored = await session.scalar(select(func.count()).select_from(ExecutionEvent))
            done = await session.scalar(
                select(func.count()).select_from(ExecutionSubtask).where(ExecutionSubtask.status == "COMPLETED")
            )
    return {"seconds": elapsed, "cpu_seconds": cpu, "batches": projector.batches, "stored": int(stored or 0),
            "completed_subtasks": int(done or 0)}  # fmt: skip


async def measure(bus: Bus, name: str, url: str, events: list[EventBase], last: int, args: Any) -> dict[str, Any]:
    raw = await raw_rows_per_s(url, events)
    result = await replay(bus, url, last, args.batch)
    per_s = len(events) / result["seconds"]
    expected = args.executions * args.subtasks
    if result["stored"] != len(events) or result["completed_subtasks"] != expected:
        raise SystemExit(f"{name}: the read model does not match the stream: {result}")
    return {"database": name, "events": len(events), "events_per_s": per_s, "raw_rows_per_s": raw,
            "ratio_to_raw": per_s / raw, "seconds": result["seconds"], "batches": result["batches"],
            "events_per_cpu_s": len(events) / result["cpu_seconds"]}  # fmt: skip


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    server = EmbeddedNats(folder / "nats", auth=False)
    url = await server.start()
    settings = Settings(namespace=NAMESPACE, data_dir=folder / "data")
    bus = await connect(settings, url, "bench-projector", role=None)
    admin_url = os.environ.get(ENV)
    results: list[dict[str, Any]] = []
    lags: list[dict[str, Any]] = []
    try:
        events: list[EventBase] = []
        for i in range(args.executions):
            events += wide_run(f"x{i}", wide_plan(f"p{i}", args.subtasks))
        publish_started = time.perf_counter()
        last = await publish(bus, events)
        published_s = time.perf_counter() - publish_started
        if not args.plain:
            eventloop.freeze_startup_objects()  # the bench's events are not the projector's to walk
        results.append(await measure(bus, "sqlite", f"sqlite+aiosqlite:///{folder}/read.db", events, last, args))
        if admin_url:
            database_url = await create_database(admin_url)
            try:
                results.append(await measure(bus, "postgresql", database_url, events, last, args))
            finally:
                with contextlib.suppress(Exception):  # a leftover bench database is not worth a traceback
                    await drop_database(admin_url, database_url)
        if args.lag_subtasks:
            lags = await lag_on_each(url, folder, admin_url, args)
    finally:
        await bus.close()
        await server.stop()
    load = os.getloadavg()
    return {"events": len(events), "published_per_s": len(events) / published_s, "batch": args.batch,
            "load_average": [round(x, 2) for x in load], "results": results, "lag": lags}  # fmt: skip


async def lag_on_each(url: str, folder: Path, admin_url: str | None, args: Any) -> list[dict[str, Any]]:
    """:func:`measure_lag` on a fresh SQLite file and, with PLANEXE_TEST_DATABASE_URL, a fresh PostgreSQL database."""
    databases = [("sqlite", f"sqlite+aiosqlite:///{folder}/lag.db")]
    database_url = await create_database(admin_url) if admin_url else None
    if database_url:
        databases.append(("postgresql", database_url))
    try:
        return [await lag(url, folder, name, database_url, args) for name, database_url in databases]
    finally:
        if admin_url and database_url:
            with contextlib.suppress(Exception):  # a leftover bench database is not worth a traceback
                await drop_database(admin_url, database_url)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        report = await run(args, Path(folder))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['events']} events ({args.executions} executions x {args.subtasks} subtasks), batch {args.batch}, "
          f"load average {report['load_average']}")  # fmt: skip
    for r in report["results"]:
        print(f"{r['database']:>10}: replay {r['events_per_s']:8.0f} events/s ({r['seconds']:.2f} s); "
              f"raw executemany {r['raw_rows_per_s']:8.0f} rows/s; ratio {r['ratio_to_raw']:.3f}; "
              f"{r['events_per_cpu_s']:.0f} events per CPU second of this process; {r['batches']} batches")  # fmt: skip
    for r in report["lag"]:
        print(f"{r['database']:>10}: live, {r['lag_events']} events published at {r['published_per_s']:.0f}/s; "
              f"the last projected {r['seconds_behind']:.2f} s after its ack; {r['lag_batches']} batches")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--publish"]:  # the publisher process of lag()
        url, namespace, folder, name, subtasks, rate = sys.argv[2:8]
        asyncio.run(publish_run(url, namespace, folder, name, int(subtasks), float(rate)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=7, help="wide runs in the stream")
    parser.add_argument("--subtasks", type=int, default=1000, help="one-subtask tasks per run (8 events each)")
    parser.add_argument("--batch", type=int, default=BATCH, help="largest batch the projector takes")
    parser.add_argument("--lag-subtasks", type=int, default=5000, help="subtasks of the live run (0: no lag figure)")
    parser.add_argument("--lag-rate", type=float, default=3000, help="events/s the live run is published at")
    parser.add_argument("--plain", action="store_true", help="asyncio's loop, Python's default collector")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args()
    if options.plain:
        asyncio.run(main(options))
    else:
        eventloop.tune_gc(eventloop.young_threshold(["projector"]))
        eventloop.run(main(options))
