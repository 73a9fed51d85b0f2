"""Fault scenarios over real processes: a nats-server, the services as `planexe-ax serve ...` children, PostgreSQL.

One scenario runs a generated plan of 200 subtasks on a cluster of its own (its own nats-server on a free
port and a store in a temp folder, so the server can be killed and started again on the same port and
store), injects one fault once the run is well under way, checks every invariant of issue 4 and measures
how long the recovery took. ``tests/e2e/test_faults.py`` and ``bench/recovery.py`` both run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, SequenceInfo
from sqlalchemy import text

from planexe_ax.bus import (
    Bus,
    EmbeddedNats,
    Event,
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    SubtaskResult,
    SubtaskStarted,
    SubtaskState,
    TaskStatus,
    connect,
    decode_event,
)
from planexe_ax.bus.client import follow
from planexe_ax.bus.leader import PASSING
from planexe_ax.bus.replay import events_last_seq
from planexe_ax.config import Settings
from planexe_ax.projector import Projector
from planexe_ax.readmodel import make_engine, make_session_factory, table_dump
from tests.helpers.cluster import (
    NatsCluster,
    holder_pid,
    kill_leader,
    kill_stream_leader,
    lease_holder,
    partition_key,
)
from tests.helpers.eventually import eventually
from tests.helpers.processes import Service, cli
from tests.helpers.slow_agent import ACTION as SLOW_ACTION
from tests.helpers.slow_agent import BEGIN, END

REPO = Path(__file__).resolve().parents[2]
READY = "running on"  # the URL list that follows may wrap onto the next line
SLOW_READY = '"agent started"'
FAULTS = ("agent", "coordinator", "nats", "projector")
CLUSTER_FAULTS = ("nats-node", "leader", "second", "partition")
"""Faults of a run on a three-node NATS cluster (``nodes=3``); ``leader`` and ``partition`` need ``coordinators=2``."""
ISOLATED = "n3"
"""partition: the node cut off the others; the leading coordinator is its only client."""
LIVE_TABLES = frozenset({"agents"})  # mirrors the ax-agents KV bucket (heartbeats), not the event stream
PROJECTOR_DURABLE = "projector-events"


# -- the plan ---------------------------------------------------------------------------------------------
def fault_plan(tasks: int = 50, width: int = 5, slow_s: float = 0.3) -> dict[str, Any]:
    """``tasks`` x 4 subtasks (document, slow step, CSV, document); task i waits on task i - ``width``."""

    def subtasks(i: int) -> list[dict[str, Any]]:
        return [
            {
                "subtask_id": f"t{i}_s0",
                "action": "draft_document",
                "params": {"template": "# Part {n}\n", "variables": {"n": i}, "file_name": f"a{i}.md"},
            },
            {"subtask_id": f"t{i}_s1", "action": SLOW_ACTION, "params": {"seconds": slow_s, "label": f"t{i}"}},
            {
                "subtask_id": f"t{i}_s2",
                "action": "manage_csv",
                "params": {"operation": "write", "file_path": f"t{i}.csv", "data": [{"a": i}]},
            },
            {
                "subtask_id": f"t{i}_s3",
                "action": "draft_document",
                "params": {"template": "# Part {n}\n", "variables": {"n": i}, "file_name": f"b{i}.md"},
            },
        ]

    return {
        "plan_id": "faults",
        "goal": "survive faults",
        "phases": [
            {
                "phase_id": "p1",
                "name": "Work",
                "tasks": [
                    {
                        "task_id": f"t{i}",
                        "title": f"Task {i}",
                        "prerequisites": [f"t{i - width}"] if i >= width else [],
                        "subtasks": subtasks(i),
                    }
                    for i in range(tasks)
                ],
            }
        ],
    }


def subtask_ids(plan: dict[str, Any]) -> set[str]:
    return {s["subtask_id"] for phase in plan["phases"] for t in phase["tasks"] for s in t["subtasks"]}


# -- processes --------------------------------------------------------------------------------------------
class SlowAgent(Service):
    """``python -m tests.helpers.slow_agent``: an SDK agent offering ``slow_step``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.sink = log.open("wb")
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.slow_agent"],
            env={**os.environ, **env, "PYTHONPATH": pythonpath},
            stderr=self.sink,
            cwd=REPO,
        )

    def in_flight(self) -> set[str]:
        """Subtask ids whose slow step has begun and not ended, from the log."""
        begun: set[str] = set()
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == BEGIN:
                begun.add(record["subtask_id"])
            elif record.get("msg") == END:
                begun.discard(record["subtask_id"])
        return begun

    @property
    def agent_id(self) -> str:
        return f"slow-{self.proc.pid}"


def _ready_text(service: Service) -> str:
    return SLOW_READY if isinstance(service, SlowAgent) else READY


async def _ready(*services: Service) -> None:
    await asyncio.gather(*(asyncio.to_thread(s.wait_for, _ready_text(s), 60.0) for s in services))


@dataclass
class Cluster:
    """A nats-server of its own and one process per service, sharing a data folder and a read model."""

    folder: Path
    database_url: str
    agents: int = 2
    slow_agents: int = 2
    ack_wait_s: float = 2.0
    nodes: int = 1
    """1: one nats-server; 3: a cluster of three with every stream and bucket replicated three times."""
    coordinators: int = 1
    """Coordinator processes: they share the partitions (the first starts alone and holds them all)."""
    partitions: int | None = None
    """PLANEXE_PARTITIONS of every process (None: the default); 1 makes every coordinator after the first a standby."""
    isolated: str = ""
    """A node to cut off later: the first coordinator connects to it alone, every other process to the others."""
    nats: EmbeddedNats | NatsCluster = field(init=False)
    env: dict[str, str] = field(init=False)
    services: dict[str, list[Service]] = field(init=False, default_factory=dict)
    _spawned: int = field(init=False, default=0)

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.nats = (
            EmbeddedNats(self.folder / "nats")
            if self.nodes == 1
            else NatsCluster(self.folder, self.nodes, relays=bool(self.isolated))
        )
        await self.nats.start()
        self.env = {
            "PLANEXE_NATS_URL": self.nats.url,
            "PLANEXE_DATA_DIR": str(self.folder / "data"),
            "PLANEXE_NATS_AUTH_DIR": str(self.nats.auth_dir),
            "PLANEXE_DATABASE_URL": self.database_url,
            "PLANEXE_ACK_WAIT_S": str(self.ack_wait_s),
            "PLANEXE_HEARTBEAT_S": "0.5",
            "PLANEXE_AGENT_TTL_S": "3",
            "PLANEXE_LAG_SCALE_S": "0",
            "PLANEXE_LOG_LEVEL": "INFO",
            "PLANEXE_REPLICAS": str(min(self.nodes, 3)),
        }
        if self.partitions is not None:
            self.env["PLANEXE_PARTITIONS"] = str(self.partitions)
        if isinstance(self.nats, NatsCluster) and self.isolated:
            self.env["PLANEXE_NATS_URL"] = ",".join(n.url for n in self.nats.nodes if n.name != self.isolated)
        # the projector and the coordinator first: both provision the topology and the projector migrates; then
        # the other coordinators (the first holds every partition by then) and the agents, side by side
        self.services["projector"] = [self._spawn("projector")]
        self.services["coordinator"] = [self._spawn("coordinator", self._isolated_url())]
        await _ready(self.services["projector"][0], self.services["coordinator"][0])
        standby = [self._spawn("coordinator") for _ in range(self.coordinators - 1)]
        self.services["coordinator"].extend(standby)
        self.services["agents"] = [self._spawn("agents") for _ in range(self.agents)]
        self.services["slow"] = [self._spawn("slow") for _ in range(self.slow_agents)]
        await _ready(*standby, *self.services["agents"], *self.services["slow"])

    def _isolated_url(self) -> str | None:
        if isinstance(self.nats, NatsCluster) and self.isolated:
            return self.nats.node(self.isolated).url
        return None

    def _spawn(self, name: str, url: str | None = None) -> Service:
        self._spawned += 1
        log = self.folder / f"{self._spawned:02d}-{name}.log"
        env = {**self.env, "PLANEXE_NATS_URL": url} if url else self.env
        if name == "slow":
            return SlowAgent(env, log)
        return Service(["serve", name], env, log)

    async def add(self, name: str) -> Service:
        """Start one more process of service ``name``; return it once it said it is ready."""
        service = self._spawn(name)
        self.services[name].append(service)
        await _ready(service)
        return service

    async def restart(self, name: str, index: int = 0) -> float:
        """Start service ``name`` again (after a kill); return seconds until it said it is ready."""
        began = time.monotonic()
        service = self._spawn(name)
        self.services[name][index] = service
        await _ready(service)
        return time.monotonic() - began

    @property
    def url(self) -> str:
        """The servers the test's own clients use (not the node to be cut off)."""
        return self.env["PLANEXE_NATS_URL"]

    def settings(self) -> Settings:
        settings = Settings(
            nats_url=self.url,
            data_dir=self.folder / "data",
            nats_auth_dir=self.nats.auth_dir,
            ack_wait_s=self.ack_wait_s,
            replicas=min(self.nodes, 3),
        )
        return settings if self.partitions is None else settings.model_copy(update={"partitions": self.partitions})

    async def bus(self, name: str = "fault-test") -> Bus:
        return await connect(self.settings(), self.url, name, role="admin")

    def cli(self, *args: str, timeout: float = 240.0) -> Awaitable[Any]:
        return asyncio.to_thread(cli, list(args), self.env, timeout)

    def logs(self) -> str:
        """The tail of every process log, for failure messages."""
        tails = [f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.folder.glob("*.log"))]
        return "\n".join(tails)

    async def close(self) -> None:
        """SIGKILL every process and server: the scenario has checked all it checks, and the folder is thrown away."""
        alive = [s for group in self.services.values() for s in group if s.proc.poll() is None]
        for service in alive:
            service.proc.kill()
        for service in alive:
            await asyncio.to_thread(service.proc.wait)
        for group in self.services.values():
            for service in group:
                service.sink.close()
        self.nats.kill()
        await self.nats.stop()  # what is left: the route relays of a cluster that can be cut


# -- reading the truth ------------------------------------------------------------------------------------
async def stream_events(bus: Bus, execution_id: str, tries: int = 5) -> list[tuple[int, Event]]:
    """Every event of ``execution_id`` in AX_EVENTS, with its stream sequence, in order.

    On a cluster just healed the reader's consumer may be unavailable for a moment (503): read it all again.
    """
    for attempt in range(1, tries + 1):
        try:
            return await _read_stream_events(bus, execution_id)
        except PASSING:
            if attempt == tries:
                raise
            await asyncio.sleep(0.5 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _read_stream_events(bus: Bus, execution_id: str) -> list[tuple[int, Event]]:
    sub = await bus.js.pull_subscribe(
        bus.subjects.events_of(execution_id),
        stream=bus.subjects.events_stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE),  # a reader: nothing to ack, no max_ack_pending cap
    )
    out: list[tuple[int, Event]] = []
    try:
        total = (await sub.consumer_info()).num_pending
        assert total is not None, "a new consumer reports how many messages it has pending"
        while len(out) < total:
            msgs = await sub.fetch(min(256, total - len(out)), timeout=5)
            out.extend((m.metadata.sequence.stream, decode_event(m.data)) for m in msgs)
        return out
    finally:
        await sub.unsubscribe()


async def wait_projected(database_url: str, seq: int, timeout: float = 60.0) -> float:  # noqa: ASYNC109 - a plain number, as in eventually()
    """Wait until the live projector's checkpoint reaches ``seq``; return the seconds it took."""
    engine = make_engine(database_url)
    began = time.monotonic()

    async def reached() -> bool:
        async with engine.connect() as conn:
            got = await conn.scalar(
                text("SELECT stream_seq FROM projector_checkpoints WHERE consumer = :c"), {"c": PROJECTOR_DURABLE}
            )
        return got is not None and got >= seq

    try:
        await eventually(reached, timeout=timeout, every=0.05)
    finally:
        await engine.dispose()
    return time.monotonic() - began


async def projected_events(database_url: str, execution_id: str) -> list[tuple[int, str]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT stream_seq, event_id FROM execution_events WHERE execution_id = :e ORDER BY stream_seq"),
                {"e": execution_id},
            )
            return [(int(seq), str(event_id)) for seq, event_id in rows]
    finally:
        await engine.dispose()


async def replay_equals_live(bus: Bus, live_url: str, replay_url: str) -> list[str]:
    """Project the whole stream into the empty ``replay_url``; return the tables compared (all but live ones)."""
    fresh = Projector(bus, replay_url, durable="replay-check")
    engine = make_engine(live_url)
    try:
        await fresh.start()
        await fresh.run_until_idle()
        replayed = await table_dump(fresh.sessions)
        live = await table_dump(make_session_factory(engine))
    finally:
        await fresh.close()
        await engine.dispose()
    compared = sorted(set(live) - LIVE_TABLES)
    assert set(replayed) == set(live)
    for name in compared:
        assert replayed[name] == live[name], f"table {name}: live read model differs from a fresh replay " + _diff(
            live[name], replayed[name]
        )
    return compared


def _stream_seq(info: SequenceInfo | None) -> int | None:
    return info.stream_seq if info else None


async def stall_report(bus: Bus, execution_id: str) -> str:
    """Where an execution that did not complete stands: its states, progress, last events and the consumers."""
    events = await stream_events(bus, execution_id)
    states = [f"{e.status.value}: {e.reason}" for _, e in events if isinstance(e, ExecutionState)]
    done = {e.subtask_id for _, e in events if isinstance(e, SubtaskState) and e.status == TaskStatus.COMPLETED}
    last = [f"#{seq} {e.ts:%H:%M:%S.%f} {e.type} {e.subtask_id} {getattr(e, 'status', '')}" for seq, e in events[-6:]]
    consumers: list[str] = []
    for stream in (bus.subjects.events_stream, bus.subjects.tasks_stream, bus.subjects.commands_stream):
        consumers.extend(
            f"{stream}/{info.name}: pending={info.num_pending} ack_pending={info.num_ack_pending} "
            f"redelivered={info.num_redelivered} delivered={_stream_seq(info.delivered)} "
            f"ack_floor={_stream_seq(info.ack_floor)}"
            for info in await bus.js.consumers_info(stream)
        )
    tasks = (await bus.js.stream_info(bus.subjects.tasks_stream)).state.messages
    last_state: dict[str, SubtaskState] = {}
    for _, e in events:
        if isinstance(e, SubtaskState) and e.subtask_id:
            last_state[e.subtask_id] = e
    open_ = [sid for sid, e in last_state.items() if e.status not in (TaskStatus.COMPLETED, TaskStatus.PENDING)]
    stuck = "; ".join(f"{sid}: {history(events, sid)}" for sid in open_[:4])
    return (
        f"execution states {states}; {len(done)} subtasks COMPLETED; last events {last}; "
        f"AX_TASKS holds {tasks} offers; consumers {consumers}; open subtasks {open_[:10]}: {stuck}"
    )


def _ranges(seqs: list[int]) -> str:
    out: list[str] = []
    for seq in seqs:
        if out and int(out[-1].split("-")[-1]) == seq - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{seq}"
        else:
            out.append(str(seq))
    return ", ".join(out)


def history(events: list[tuple[int, Event]], subtask_id: str) -> list[str]:
    """One line per event of ``subtask_id``: seq, time, type, status or ok, attempt, agent."""
    out = []
    for seq, e in events:
        if e.subtask_id != subtask_id:
            continue
        what = getattr(e, "status", None) or (f"ok={e.ok}" if isinstance(e, SubtaskResult) else "")
        out.append(f"#{seq} {e.ts:%H:%M:%S.%f} {e.type} {what} attempt={e.attempt} agent={e.agent_id}")
    return out


def _diff(live: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> str:
    only_live = [r for r in live if r not in replayed][:3]
    only_replay = [r for r in replayed if r not in live][:3]
    return f"({len(live)} vs {len(replayed)} rows; only live: {only_live}; only replay: {only_replay})"


# -- one scenario -----------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """What one run measured; times in seconds."""

    fault: str
    execution_id: str = ""
    total_s: float = 0.0  # execution_created -> execution COMPLETED (stream timestamps)
    fault_at_s: float = 0.0  # execution_created -> the fault
    first_completion_s: float | None = None  # fault -> first subtask COMPLETED after it
    end_s: float | None = None  # fault -> execution COMPLETED
    restart_s: float | None = None  # the restarted process (or server) ready, after the fault
    lost_work_s: float | None = None  # agent: fault -> the killed agent's in-flight subtasks COMPLETED
    catch_up_s: float | None = None  # projector: restarted -> read model at the stream's head
    lost_subtasks: list[str] = field(default_factory=list)
    in_flight_at_kill: int = 0  # projector: stream sequences delivered to it past its checkpoint when it was killed
    killed_node: str = ""  # nats-node: the cluster node killed (the leader of AX_EVENTS)
    partition_moved: bool | None = None  # second: the run's partition went to the coordinator started mid-run
    takeover_s: float | None = None  # leader: kill -9 of the leading coordinator -> a standby holds the lease
    events: int = 0
    completed_before_fault: int = 0
    tables_compared: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds of each step of the scenario

    def recovery_s(self) -> float | None:
        """The headline recovery time of this fault."""
        if self.fault == "agent":
            return self.lost_work_s
        if self.fault == "leader":
            return self.takeover_s
        if self.fault == "projector":
            return None if self.catch_up_s is None or self.restart_s is None else self.restart_s + self.catch_up_s
        return self.first_completion_s

    def line(self) -> str:
        parts = [f"fault={self.fault}", f"total={self.total_s:.2f}s"]
        for name in (
            "fault_at_s",
            "restart_s",
            "takeover_s",
            "first_completion_s",
            "lost_work_s",
            "catch_up_s",
            "end_s",
        ):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value:.2f}")
        parts.append(f"events={self.events}")
        if self.fault == "projector":
            parts.append(f"in_flight_at_kill={self.in_flight_at_kill}")
        if self.partition_moved is not None:
            parts.append(f"partition_moved={self.partition_moved}")
        parts.append(f"phases={self.phases}")
        return " ".join(parts)

    def properties(self) -> dict[str, Any]:
        return {
            k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in self.__dict__.items()
            if k not in ("tables_compared", "phases")
        }


def _after(ts: datetime, moment: datetime) -> float:
    return (ts - moment).total_seconds()


class _Reached(Exception):
    """Raised from the follow callback to end the follow once enough subtasks completed."""


async def _until_completed(bus: Bus, execution_id: str, count: int, timeout: float) -> None:  # noqa: ASYNC109 - a plain number, as in eventually()
    seen = 0

    def on_event(event: Event) -> None:
        nonlocal seen
        if isinstance(event, SubtaskState) and event.status == TaskStatus.COMPLETED:
            seen += 1
            if seen >= count:
                raise _Reached
        # an end before ``count`` returns from follow and fails the assertion below

    # Ended by an exception from the callback, not by cancelling the task: a cancel that lands inside
    # nats-py's next_msg can be swallowed on Python 3.11, and the follow would run on to the end.
    try:
        await follow(bus, execution_id, on_event, timeout_s=timeout)
    except _Reached:
        return
    raise AssertionError(f"the execution ended after {seen} completed subtasks, before the fault could land")


async def _kill_agent_mid_task(cluster: Cluster, timeout: float = 20.0) -> tuple[SlowAgent, set[str]]:  # noqa: ASYNC109 - a plain number, as in eventually()
    """Kill -9 a slow agent while a slow step of it is in flight; return it and what it was doing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in cluster.services["slow"]:
            assert isinstance(service, SlowAgent)
            if service.in_flight():
                service.kill()
                return service, service.in_flight()
        await asyncio.sleep(0.01)
    raise AssertionError(f"no slow step in flight within {timeout} s")


async def _projector_checkpoint(database_url: str) -> int:
    """The live projector's checkpoint in the read model (0: none yet)."""
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            got = await conn.scalar(
                text("SELECT stream_seq FROM projector_checkpoints WHERE consumer = :c"), {"c": PROJECTOR_DURABLE}
            )
    finally:
        await engine.dispose()
    return int(got or 0)


async def _kill_projector_mid_batch(cluster: Cluster, bus: Bus, timeout: float = 20.0) -> int:  # noqa: ASYNC109 - a plain number, as in eventually()
    """Kill -9 the projector while it holds delivered events it has not committed (past its checkpoint).

    The process is frozen (SIGSTOP) while ``projector-events`` and the checkpoint are inspected, so what the
    check sees is what the kill interrupts; when it holds nothing the process is thawed and the check repeated.
    The durable takes no acks: what it delivered beyond the checkpoint is what the kill loses in flight.
    Returns the stream sequences delivered past the checkpoint.
    """
    service = cluster.services["projector"][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.kill(service.proc.pid, signal.SIGSTOP)
        info = await bus.js.consumer_info(bus.subjects.events_stream, PROJECTOR_DURABLE)
        ahead = (_stream_seq(info.delivered) or 0) - await _projector_checkpoint(cluster.database_url)
        if ahead > 0:
            service.kill()
            return ahead
        os.kill(service.proc.pid, signal.SIGCONT)
        await asyncio.sleep(0.005)
    raise AssertionError(f"the projector never held uncommitted events within {timeout} s")


Fault = Callable[[Cluster, Measurement], Awaitable[datetime]]


async def _second_coordinator(cluster: Cluster, bus: Bus, measured: Measurement) -> datetime:
    """Start another coordinator mid-run: the first gives it half of the partitions, the run's or not."""
    key = partition_key(bus, measured.execution_id)
    holder = await lease_holder(bus, key)
    assert holder, "no coordinator holds the execution's partition"
    fault_at = datetime.now(UTC)
    began = time.monotonic()
    second = await cluster.add("coordinator")
    await asyncio.to_thread(second.wait_for, "partitions taken", 30)
    measured.restart_s = time.monotonic() - began
    await asyncio.to_thread(cluster.services["coordinator"][0].wait_for, "partitions dropped", 30)
    measured.partition_moved = await lease_holder(bus, key) != holder
    return fault_at


async def _partition_leader(cluster: Cluster, bus: Bus, measured: Measurement) -> datetime:
    """Cut the node of the leading coordinator off the others (its routes): a standby takes over; then heal."""
    assert isinstance(cluster.nats, NatsCluster), "the partition fault needs nodes=3"
    leader, *standby = cluster.services["coordinator"]
    assert standby, "the partition fault needs coordinators=2"
    key = partition_key(bus, measured.execution_id)
    holder = await lease_holder(bus, key)
    assert holder is not None, "no coordinator holds the execution's partition"
    assert holder_pid(holder) == leader.proc.pid, f"the coordinator on {ISOLATED} should lead, {holder} does"
    fault_at = datetime.now(UTC)
    cluster.nats.partition(ISOLATED)
    began = time.monotonic()

    async def taken_over() -> bool:
        try:
            now = await lease_holder(bus, key)
        except PASSING:  # the bucket's stream may have led from the cut node: it elects another leader
            return False
        return now is not None and now != holder

    await eventually(taken_over, timeout=30, every=0.02)
    measured.takeover_s = time.monotonic() - began
    measured.killed_node = ISOLATED
    await asyncio.to_thread(leader.wait_for, "partitions dropped", 30)
    cluster.nats.heal()
    await cluster.nats.start()  # back to ready: routed again, one meta leader, every node serving
    return fault_at


async def run_scenario(
    fault: str,
    folder: Path,
    database_url: str,
    replay_url: str | None = None,
    *,
    fault_after: int = 60,
    plan: dict[str, Any] | None = None,
    nodes: int = 1,
    coordinators: int = 1,
) -> Measurement:
    """Run the plan on a fresh cluster, inject ``fault`` (one of FAULTS, or "none") after ``fault_after``
    subtasks completed, and check every invariant. Raises AssertionError with the process logs on a breach."""
    assert fault in (*FAULTS, *CLUSTER_FAULTS, "none"), fault
    plan = plan or fault_plan()
    plan_file = folder / "plan.json"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(plan_file.write_text, json.dumps(plan))
    # A 2 s lease makes an agent's lost work come back quickly. The projector scenario keeps the events a
    # killed projector held for longer than its restart takes (10 s; the default is 30 s), as in production:
    # events published meanwhile reach the new projector before those come back.
    ack_wait_s = 10.0 if fault == "projector" else 2.0
    isolated = ISOLATED if fault == "partition" else ""
    cluster = Cluster(
        folder / "cluster",
        database_url,
        ack_wait_s=ack_wait_s,
        nodes=nodes,
        coordinators=coordinators,
        isolated=isolated,
        partitions=1 if fault == "partition" else None,  # the cut-off coordinator decides every execution
    )
    measured = Measurement(fault)
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        measured.phases[name] = round(now - clock, 2)
        clock = now

    try:
        await cluster.start()
        lap("cluster_start")
        started = await cluster.cli("exec", "start", str(plan_file), timeout=60)
        assert started.returncode == 0, started.stderr
        execution_id = measured.execution_id = started.stdout.strip()

        bus = await cluster.bus()
        fault_at: datetime | None = None
        killed: SlowAgent | None = None
        doing: frozenset[str] = frozenset()
        try:
            await _until_completed(bus, execution_id, fault_after, timeout=90)
            lap("until_fault")
            if fault == "agent":
                fault_at = datetime.now(UTC)
                killed, in_flight = await _kill_agent_mid_task(cluster)
                doing = frozenset(in_flight)
            elif fault in ("coordinator", "projector"):
                fault_at = datetime.now(UTC)
                if fault == "projector":
                    measured.in_flight_at_kill = await _kill_projector_mid_batch(cluster, bus)
                else:
                    cluster.services[fault][0].kill()
                measured.restart_s = await cluster.restart(fault)
                if fault == "projector":
                    head = await events_last_seq(bus)
                    measured.catch_up_s = await wait_projected(database_url, head)
            elif fault == "nats-node":
                assert isinstance(cluster.nats, NatsCluster), "the nats-node fault needs nodes=3"
                fault_at = datetime.now(UTC)
                measured.killed_node = await kill_stream_leader(cluster.nats, bus, bus.subjects.events_stream)
            elif fault == "leader":
                fault_at = datetime.now(UTC)
                measured.takeover_s = await kill_leader(cluster.services["coordinator"], bus, execution_id)
            elif fault == "second":
                fault_at = await _second_coordinator(cluster, bus, measured)
            elif fault == "partition":
                fault_at = await _partition_leader(cluster, bus, measured)
            elif fault == "nats":
                await bus.close()
                fault_at = datetime.now(UTC)
                cluster.nats.kill()
                began = time.monotonic()
                await cluster.nats.start()  # same port (kept by EmbeddedNats) and same store
                measured.restart_s = time.monotonic() - began
                bus = await cluster.bus()

            lap("fault")
            waited = await cluster.cli("exec", "wait", execution_id, "--timeout", "100")
            if waited.returncode != 0:
                raise AssertionError(
                    f"exec wait exited {waited.returncode} ({waited.stderr[-3000:]}); "
                    f"{await stall_report(bus, execution_id)}"
                )
            lap("exec_wait")
            events = await check_invariants(cluster, bus, execution_id, plan, measured, replay_url)
            lap("checks")
        finally:
            await bus.close()

        _measure(measured, [e for _, e in events], fault_at, killed, doing)
        return measured
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n\nprocess logs:\n{cluster.logs()}") from exc
    finally:
        await cluster.close()


async def check_invariants(
    cluster: Cluster,
    bus: Bus,
    execution_id: str,
    plan: dict[str, Any],
    measured: Measurement,
    replay_url: str | None,
) -> list[tuple[int, Event]]:
    """Completed; each subtask completed exactly once (read model and stream); no event lost or doubled.

    Returns the execution's events in the stream. The fresh replay into ``replay_url`` (when given) runs while
    the rest is checked; its verdict comes last.
    """
    expected = subtask_ids(plan)
    # the read model once the projector has caught up with the stream (exec wait follows the stream)
    head = await events_last_seq(bus)  # the last event: a fence marker of a partition taken late may follow it
    await wait_projected(cluster.database_url, head, timeout=120)
    replay = asyncio.create_task(replay_equals_live(bus, cluster.database_url, replay_url)) if replay_url else None
    try:
        events = await _check_run(cluster, bus, execution_id, expected, measured)
        if replay is not None:
            measured.tables_compared = await replay
    finally:
        if replay is not None:
            replay.cancel()  # nothing when it is done; either way its outcome is collected
            await asyncio.gather(replay, return_exceptions=True)
    return events


async def _check_run(
    cluster: Cluster, bus: Bus, execution_id: str, expected: set[str], measured: Measurement
) -> list[tuple[int, Event]]:
    # the read model, through the CLI
    status = await cluster.cli("exec", "status", execution_id, "--json", timeout=60)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["status"] == "COMPLETED", report["status"]
    rows = [s for t in report["tasks"] for s in t["subtasks"]]
    ids = Counter(s["subtask_id"] for s in rows)
    assert set(ids) == expected, f"read model subtasks differ from the plan: {sorted(set(ids) ^ expected)[:10]}"
    assert set(ids.values()) == {1}, f"a subtask appears twice in the read model: {ids.most_common(3)}"
    events = await stream_events(bus, execution_id)
    projected = await projected_events(cluster.database_url, execution_id)
    for _ in range(5):
        # A report that comes after the end (an agent sending again one whose ack a restart lost) may be stored,
        # and projected, after the stream was read: read the stream again until it holds what was projected.
        if not projected or not events or projected[-1][0] <= events[-1][0]:
            break
        events = await stream_events(bus, execution_id)
        await wait_projected(cluster.database_url, await events_last_seq(bus), timeout=60)
        projected = await projected_events(cluster.database_url, execution_id)
    measured.events = len(events)

    # the projected events equal the stream's events of the execution
    in_stream = [(seq, e.event_id) for seq, e in events]
    missing = sorted(seq for seq, _ in set(in_stream) - set(projected))
    assert not missing, (
        f"{len(projected)} events projected, {len(in_stream)} in the stream; {len(missing)} stream events never "
        f"projected, seqs {_ranges(missing)}"
    )
    assert projected == in_stream, f"projected events differ: {sorted(set(projected) ^ set(in_stream))[:5]}"

    not_done = [(s["subtask_id"], s["status"]) for s in rows if s["status"] != "COMPLETED"]
    assert not not_done, f"subtasks not COMPLETED in the read model: {not_done[:10]}; " + "; ".join(
        f"stream history of {sid}: {history(events, sid)}" for sid, _ in not_done[:3]
    )
    assert all(t["status"] == "COMPLETED" for t in report["tasks"])

    # the stream: exactly one COMPLETED decision per subtask, no event id twice
    measured.events = len(events)
    done = Counter(e.subtask_id for _, e in events if isinstance(e, SubtaskState) and e.status == TaskStatus.COMPLETED)
    assert set(done) == expected, f"subtasks without a COMPLETED event: {sorted(expected - set(done))[:10]}"
    twice = {k: v for k, v in done.items() if v != 1}
    assert not twice, f"subtasks COMPLETED more than once in the stream: {twice}"
    ends = [e for _, e in events if isinstance(e, ExecutionState) and e.status == ExecutionStatus.COMPLETED]
    assert len(ends) == 1, f"{len(ends)} execution COMPLETED events"
    event_ids = Counter(e.event_id for _, e in events)
    assert max(event_ids.values()) == 1, f"an event id stored twice: {event_ids.most_common(2)}"
    return events


def _measure(
    measured: Measurement,
    events: list[Event],
    fault_at: datetime | None,
    killed: SlowAgent | None,
    doing: frozenset[str] = frozenset(),
) -> None:
    """Fill ``measured`` from the run's events; ``doing``: the subtasks the killed agent was working on (its log)."""
    created = next(e for e in events if isinstance(e, ExecutionCreated))
    end = next(e for e in events if isinstance(e, ExecutionState) and e.status == ExecutionStatus.COMPLETED)
    measured.total_s = _after(end.ts, created.ts)
    if fault_at is None:
        return
    completions = [e for e in events if isinstance(e, SubtaskState) and e.status == TaskStatus.COMPLETED]
    measured.fault_at_s = _after(fault_at, created.ts)
    measured.completed_before_fault = sum(1 for e in completions if e.ts <= fault_at)
    after = [e.ts for e in completions if e.ts > fault_at]
    assert after, "the fault landed after the last subtask completed"
    measured.first_completion_s = _after(min(after), fault_at)
    measured.end_s = _after(end.ts, fault_at)
    if killed is not None:
        # what the killed agent began (a start announced, or a step begun in its log: a step killed within
        # started_after_s of its start has announced nothing) and never reported a result for: its lost work
        started = {e.subtask_id for e in events if isinstance(e, SubtaskStarted) and e.agent_id == killed.agent_id}
        started |= doing
        reported = {e.subtask_id for e in events if isinstance(e, SubtaskResult) and e.agent_id == killed.agent_id}
        lost = sorted(s for s in started - reported if s is not None)
        assert lost, f"agent {killed.agent_id} was killed with no subtask in flight"
        measured.lost_subtasks = lost
        finals = {e.subtask_id: e for e in completions}
        redone = {
            e.subtask_id for e in events if isinstance(e, SubtaskResult) and e.ok and e.agent_id != killed.agent_id
        }
        assert set(lost) <= redone, f"lost work not redone by another agent: {sorted(set(lost) - redone)}"
        measured.lost_work_s = max(_after(finals[s].ts, fault_at) for s in lost)
