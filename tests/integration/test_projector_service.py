"""The projector against a real nats-server and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from nats.js.api import AckPolicy
from sqlalchemy import Text, cast, func, select
from sqlalchemy.exc import OperationalError

from planexe_ax.bus import (
    AgentCard,
    Bus,
    CapabilityCard,
    DeadLetter,
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    Phase,
    Plan,
    Subjects,
    Subtask,
    SubtaskProgress,
    SubtaskResult,
    SubtaskStarted,
    SubtaskState,
    Task,
    TaskState,
    TaskStatus,
    topology,
)
from planexe_ax.bus.codec import decode_event, event_subject
from planexe_ax.bus.messages import Event, EventBase
from planexe_ax.bus.replay import first_missing, next_event_seq
from planexe_ax.bus.topology import ensure_consumer, events_consumer
from planexe_ax.bus.tracing import trace_id_of
from planexe_ax.projector import Projector
from planexe_ax.projector.service import STANDING
from planexe_ax.readmodel import execution_report, execution_status, inbox_items, table_dump
from planexe_ax.readmodel.models import AgentRow, ExecutionEvent, ProjectorCheckpoint
from tests.helpers.eventually import eventually
from tests.helpers.projector_factories import at, people_scenario, sample_plan

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

EXECUTION = "e1"
WAIT_S = 30.0


E = TypeVar("E", bound=EventBase)


def scenario(execution_id: str = EXECUTION) -> list[Event]:
    """A whole run: created, running, both tasks done (s1 needs two attempts), completed."""
    e = execution_id

    def sub(kind: type[E], t: float, task: str, subtask: str, **kw: Any) -> E:
        return kind(execution_id=e, ts=at(t), task_id=task, subtask_id=subtask, **kw)

    return [
        ExecutionCreated(execution_id=e, ts=at(0), plan=sample_plan()),
        ExecutionState(execution_id=e, ts=at(1), status=ExecutionStatus.RUNNING),
        TaskState(execution_id=e, ts=at(2), task_id="t1", status=TaskStatus.RUNNING),
        sub(SubtaskState, 3, "t1", "s1", status=TaskStatus.RUNNING, attempt=1, agent_id="a1"),
        sub(SubtaskStarted, 3.5, "t1", "s1", attempt=1, agent_id="a1"),
        sub(SubtaskState, 4, "t1", "s1", status=TaskStatus.FAILED, attempt=1, reason="timeout"),
        sub(SubtaskState, 5, "t1", "s1", status=TaskStatus.RUNNING, attempt=2, agent_id="a2"),
        sub(SubtaskProgress, 6, "t1", "s1", percent=40.0, agent_id="a2"),
        sub(SubtaskResult, 6.5, "t1", "s1", ok=True, output={"n": 10}, attempt=2, agent_id="a2"),
        sub(SubtaskState, 7, "t1", "s1", status=TaskStatus.COMPLETED, attempt=2, output={"n": 10}),
        sub(SubtaskProgress, 7.5, "t1", "s1", percent=50.0),  # late: the subtask already finished
        sub(SubtaskState, 8, "t1", "s2", status=TaskStatus.RUNNING, attempt=1, agent_id="a1"),
        sub(SubtaskState, 9, "t1", "s2", status=TaskStatus.COMPLETED, attempt=1, output={"text": "ok"}),
        TaskState(execution_id=e, ts=at(10), task_id="t1", status=TaskStatus.COMPLETED),
        TaskState(execution_id=e, ts=at(11), task_id="t2", status=TaskStatus.RUNNING),
        # s3 ends before its start is announced: never RUNNING, its result and COMPLETED say when it began
        sub(
            SubtaskResult, 12, "t2", "s3", ok=True, output={"sent": True}, attempt=1, agent_id="a3", started_at=at(11.5)
        ),
        sub(
            SubtaskState,
            13,
            "t2",
            "s3",
            status=TaskStatus.COMPLETED,
            attempt=1,
            agent_id="a3",
            output={"sent": True},
            started_at=at(11.5),
        ),
        TaskState(execution_id=e, ts=at(14), task_id="t2", status=TaskStatus.COMPLETED),
        ExecutionState(execution_id=e, ts=at(15), status=ExecutionStatus.COMPLETED, reason="all done"),
    ]


def done(subtask_id: str, action: str, agent_id: str, output: dict[str, Any], attempts: int = 1) -> dict[str, Any]:
    return {
        "subtask_id": subtask_id,
        "action": action,
        "status": "COMPLETED",
        "agent_id": agent_id,
        "output": output,
        "attempts": attempts,
        "error": None,  # the failed first attempt of s1 no longer describes it
    }


EXPECTED_REPORT = {
    "execution_id": EXECUTION,
    "plan_id": "p1",
    "status": "COMPLETED",
    "reason": "all done",
    "started_at": "2025-03-01T09:00:01Z",
    "finished_at": "2025-03-01T09:00:15Z",
    "trace_id": trace_id_of(EXECUTION),
    "tasks": [
        {
            "task_id": "t1",
            "title": "Search",
            "status": "COMPLETED",
            "started_at": "2025-03-01T09:00:02Z",
            "finished_at": "2025-03-01T09:00:10Z",
            "attempts": 2,
            "subtasks": [
                done("s1", "web_search", "a2", {"n": 10}, attempts=2),
                done("s2", "summarise", "a1", {"text": "ok"}),
            ],
        },
        {
            "task_id": "t2",
            "title": "Email",
            "status": "COMPLETED",
            "started_at": "2025-03-01T09:00:11Z",
            "finished_at": "2025-03-01T09:00:14Z",
            "attempts": 1,
            "subtasks": [
                done("s3", "send_email", "a3", {"sent": True}),
            ],
        },
    ],
}


async def publish_all(bus: Bus, events: Sequence[EventBase]) -> int:
    """Publish in order; return the stream sequence of the last one."""
    seq = 0
    for event in events:
        seq = (await asyncio.wait_for(bus.publish_event(event), WAIT_S)).seq
    return seq


async def drain(projector: Projector) -> None:
    await asyncio.wait_for(projector.run_until_idle(), WAIT_S)


async def count_events(projector: Projector) -> int:
    async with projector.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ExecutionEvent)) or 0)


async def report_json(sessions: Any, execution_id: str) -> dict[str, Any] | None:
    report = await execution_report(sessions, execution_id)
    return None if report is None else report.model_dump()


async def checkpoint(projector: Projector) -> int | None:
    async with projector.sessions() as session:
        row = await session.get(ProjectorCheckpoint, projector.durable)
        return row.stream_seq if row else None


async def test_projects_a_whole_run(bus: Bus, database_url: str) -> None:
    events = scenario()
    last = await publish_all(bus, events)
    async with Projector(bus, database_url) as projector:
        await drain(projector)
        assert projector.last_seq == last
        assert await checkpoint(projector) == last
        assert await report_json(projector.sessions, EXECUTION) == EXPECTED_REPORT
        assert await execution_status(projector.sessions, EXECUTION) == "COMPLETED"
        assert await execution_status(projector.sessions, "nope") is None
        assert await execution_report(projector.sessions, "nope") is None
        dump = await table_dump(projector.sessions)

    assert [e["event_id"] for e in dump["execution_events"]] == [e.event_id for e in events]
    stored = dump["execution_events"][3]
    assert stored["stream_seq"] == 4
    assert (stored["type"], stored["task_id"], stored["subtask_id"], stored["agent_id"]) == (
        "subtask_state",
        "t1",
        "s1",
        "a1",
    )
    assert stored["attempt"] == 1
    assert stored["ts"] == at(3)
    assert stored["ts"].tzinfo is not None
    assert json.loads(events[3].model_dump_json()) == stored["data"]

    [execution] = dump["executions"]
    assert execution == {
        "execution_id": EXECUTION, "plan_id": "p1", "status": "COMPLETED", "reason": "all done",
        "created_at": at(0), "started_at": at(1), "finished_at": at(15), "updated_at": at(15),
    }  # fmt: skip
    s1 = next(row for row in dump["execution_subtasks"] if row["subtask_id"] == "s1")
    assert s1 == {
        "execution_id": EXECUTION, "task_id": "t1", "subtask_id": "s1", "action": "web_search",
        "status": "COMPLETED", "attempt": 2, "agent_id": "a2", "progress": 100.0, "output": {"n": 10},
        "confidence": None, "error": None, "reason": "", "not_before": None, "deadline": None,
        "started_at": at(5), "finished_at": at(7), "updated_at": at(7),
    }  # fmt: skip
    s3 = next(row for row in dump["execution_subtasks"] if row["subtask_id"] == "s3")
    assert (s3["status"], s3["agent_id"], s3["started_at"], s3["finished_at"]) == ("COMPLETED", "a3", at(11.5), at(13))
    assert [(r["task_id"], r["phase_id"], r["phase_name"], r["position"]) for r in dump["plan_tasks"]] == [
        ("t1", "ph1", "Research", 0),
        ("t2", "ph2", "Outreach", 1),
    ]
    assert dump["plan_tasks"][0]["assignee_role"] == "researcher"
    assert dump["plan_tasks"][0]["estimated_hours"] == 2.5
    assert [(r["subtask_id"], r["position"], r["params"]) for r in dump["plan_subtasks"]] == [
        ("s1", 0, {"q": "x"}),
        ("s2", 1, {}),
        ("s3", 0, {}),
    ]
    [plan] = dump["plans"]
    assert (plan["title"], plan["goal"], plan["created_at"]) == ("Leads", "Find ten leads", at(0))
    assert Plan.model_validate(plan["plan"]) == sample_plan()


async def test_wait_for_seq_follows_a_running_projector(bus: Bus, sqlite_url: str) -> None:
    async with Projector(bus, sqlite_url) as projector, running(projector):
        events = scenario()
        seq = await publish_all(bus, events[:2])
        await projector.wait_for_seq(seq, WAIT_S)
        assert await execution_status(projector.sessions, EXECUTION) == "RUNNING"
        seq = await publish_all(bus, events[2:])
        await projector.wait_for_seq(seq, WAIT_S)
        assert await report_json(projector.sessions, EXECUTION) == EXPECTED_REPORT
        with pytest.raises(TimeoutError):
            await projector.wait_for_seq(seq + 1, 0.05)


async def test_duplicate_event_ids_change_nothing(bus: Bus, database_url: str) -> None:
    events = scenario()
    await publish_all(bus, events)
    async with Projector(bus, database_url) as projector:
        await drain(projector)
        before = await table_dump(projector.sessions)

    # Past JetStream's de-duplication: the same event ids again, published without Nats-Msg-Id.
    for event in events:
        subject = bus.subjects.event(event.execution_id, event.type)
        await asyncio.wait_for(bus.js.publish(subject, event.model_dump_json().encode()), WAIT_S)
    # A consumer reset: a new durable with no checkpoint reads the whole stream, twice over, into the same DB.
    async with Projector(bus, database_url, durable="projector-reset") as again:
        await drain(again)
        assert again.last_seq == 2 * len(events)
        assert again.projected == 0
        assert await table_dump(again.sessions) == before


async def test_an_event_that_comes_again_among_new_ones_is_skipped_and_the_new_ones_are_written(
    bus: Bus, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches do not look their ids up while no event comes twice; a batch with a copy is written again with it."""
    first, second = scenario("e1"), scenario("e2")
    await publish_all(bus, first)
    async with Projector(bus, database_url) as projector:
        await drain(projector)
        assert projector.projected == len(first)
        # Past JetStream's de-duplication: copies of two events, published without Nats-Msg-Id, before new ones.
        for event in first[2:4]:
            subject = bus.subjects.event(event.execution_id, event.type)
            await asyncio.wait_for(bus.js.publish(subject, event.model_dump_json().encode()), WAIT_S)
        await publish_all(bus, second)
        await drain(projector)
        assert projector.projected == len(first) + len(second), "each event once"
        assert projector.dead_lettered == 0
        assert "projecting event by event" not in caplog.text, "written again as a batch, not event by event"
        assert projector.last_seq == len(first) + 2 + len(second)
        async with projector.sessions() as session:
            stored = list(await session.scalars(select(ExecutionEvent.event_id).order_by(ExecutionEvent.stream_seq)))
        assert stored == [event.event_id for event in first + second]
        assert await report_json(projector.sessions, EXECUTION) == EXPECTED_REPORT, "the copies applied nothing"
        assert await execution_status(projector.sessions, "e2") == "COMPLETED"
        # The batch that found the copies looked its ids up; one that finds none goes back to not looking.
        await publish_all(bus, scenario("e3"))
        await drain(projector)
        assert projector.projected == len(first) + 2 * len(second)
        assert not projector._look_up_ids


async def test_a_decision_is_stored_as_published_and_a_report_as_the_model_writes_it(
    bus: Bus, database_url: str
) -> None:
    """The coordinator's bytes are kept (not dumped again); an agent's report is written again from its model."""
    events = scenario()
    decision, report = events[1], next(e for e in events if e.type == "subtask_result")
    spaced = {
        e.event_id: json.dumps(json.loads(e.model_dump_json(by_alias=True)), indent=1) for e in (decision, report)
    }
    await publish_all(bus, events[:1])
    for event in (decision, report):
        subject = event_subject(bus.subjects, event)
        await asyncio.wait_for(bus.js.publish(subject, spaced[event.event_id].encode()), WAIT_S)
    async with Projector(bus, database_url) as projector:
        await drain(projector)
        async with projector.sessions() as session:
            query = select(ExecutionEvent.event_id, cast(ExecutionEvent.data, Text))
            texts: dict[str, str] = dict((await session.execute(query)).all())
    assert projector.projected == 3
    assert decode_event(texts[decision.event_id].encode()) == decision
    assert decode_event(texts[report.event_id].encode()) == report
    if database_url.startswith("sqlite"):  # PostgreSQL's json type keeps the text too; SQLite's column is the text
        assert texts[decision.event_id] == spaced[decision.event_id], "the decision as published"
        assert texts[report.event_id] == report.model_dump_json(by_alias=True), "the report written again"


async def test_replay_into_an_empty_database_gives_the_same_tables(bus: Bus, database_url: str, tmp_path: Any) -> None:
    await publish_all(bus, scenario("e1"))
    await publish_all(bus, scenario("e2")[:8])  # a second execution of the same plan, still running
    await publish_all(bus, [SubtaskProgress(execution_id="ghost", task_id="t", subtask_id="s", percent=5.0)])
    async with Projector(bus, database_url) as first:
        await drain(first)
        dump1 = await table_dump(first.sessions)
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.sqlite3'}"
    async with Projector(bus, replay_url, durable="projector-replay") as second:
        await drain(second)
        dump2 = await table_dump(second.sessions)
    assert dump1 == dump2
    assert len(dump1["executions"]) == 2
    assert len(dump1["plans"]) == 1
    assert dump1["execution_events"][-1]["execution_id"] == "ghost"


async def test_replay_with_people_in_the_loop_gives_the_same_tables(bus: Bus, database_url: str, tmp_path: Any) -> None:
    await publish_all(bus, people_scenario("e1"))
    await publish_all(bus, people_scenario("e2")[:12])
    async with Projector(bus, database_url) as first:
        await drain(first)
        dump1 = await table_dump(first.sessions)
        inbox1 = await inbox_items(first.sessions, include_closed=True)
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.sqlite3'}"
    async with Projector(bus, replay_url, durable="projector-replay") as second:
        await drain(second)
        assert second.dead_lettered == 0
        dump2 = await table_dump(second.sessions)
        inbox2 = await inbox_items(second.sessions, include_closed=True)
    assert dump1 == dump2
    assert inbox1 == inbox2
    assert [(row["item_id"], row["status"]) for row in dump1["inbox_items"]] == [
        ("e1-s1-5", "closed"),
        ("e1-s2-4", "open"),
        ("e1-s3-2", "closed"),
        ("e1-t1-1", "closed"),
        ("e2-t1-1", "closed"),
    ]
    types = {row["type"] for row in dump1["execution_events"]}
    assert {"task_paused", "task_reassigned", "subtask_rejected", "subtask_blocked", "inbox_opened"} <= types


async def test_batches_folded_while_the_one_before_is_written_give_the_same_tables(
    bus: Bus, postgres_url: str, tmp_path: Any
) -> None:
    """On PostgreSQL a batch is folded while the one before it is written, and set aside when that cannot hold.

    Small batches, each executions' events spread over several: most are folded ahead on the rows the batch
    before leaves. A second and a third run of the same plan find the plan stored (what was taken to be absent
    is not): those batches are folded again in their transaction. The tables equal a replay on SQLite, which
    never folds ahead.
    """
    events = [*scenario("e1"), *scenario("e2"), *scenario("e3")]
    events += [SubtaskProgress(execution_id="ghost", task_id="t", subtask_id="s", percent=5.0)]
    last = await publish_all(bus, events)
    async with Projector(bus, postgres_url, batch=4, live_batch=4) as ahead:
        await drain(ahead)
        assert ahead.last_seq == last
        assert ahead.folded_ahead > 0
        assert ahead.folded_ahead < ahead.batches
        dump = await table_dump(ahead.sessions)
    async with Projector(bus, f"sqlite+aiosqlite:///{tmp_path / 'one.sqlite3'}", durable="one", batch=4) as one:
        await drain(one)
        assert one.folded_ahead == 0
        assert dump == await table_dump(one.sessions)
    assert len(dump["executions"]) == 3
    assert len(dump["execution_events"]) == len(events)


async def test_malformed_events_go_to_the_dlq_and_projection_goes_on(bus: Bus, sqlite_url: str) -> None:
    events = scenario()
    await publish_all(bus, events[:1])
    await asyncio.wait_for(bus.js.publish(bus.subjects.event("e1", "bogus"), b"not json at all"), WAIT_S)
    bad = {"type": "execution_state", "execution_id": "e1", "status": "DANCING"}
    await asyncio.wait_for(bus.js.publish(bus.subjects.event("e1", "bogus"), json.dumps(bad).encode()), WAIT_S)
    last = await publish_all(bus, events[1:2])
    async with Projector(bus, sqlite_url) as projector:
        await drain(projector)
        assert projector.dead_lettered == 2
        assert projector.last_seq == last
        assert await execution_status(projector.sessions, EXECUTION) == "RUNNING"
        assert await count_events(projector) == 2

    info = await bus.js.stream_info(bus.subjects.dlq_stream)
    assert info.state.messages == 2
    letters = [
        DeadLetter.model_validate_json((await bus.js.get_msg(bus.subjects.dlq_stream, seq)).data or b"")
        for seq in (1, 2)
    ]
    assert [letter.stream_seq for letter in letters] == [2, 3]
    assert all(letter.source == "projector" for letter in letters)
    assert "JSON" in letters[0].reason or "Expecting value" in letters[0].reason
    assert "validation error" in letters[1].reason
    assert "DANCING" in letters[1].reason


async def test_a_restarted_projector_does_not_reapply(bus: Bus, database_url: str) -> None:
    events = scenario()
    first_part = await publish_all(bus, events[:-1])
    async with Projector(bus, database_url) as projector:
        await drain(projector)
        before = await table_dump(projector.sessions)
    # Forget every ack: the recreated durable delivers the whole stream again.
    await bus.js.delete_consumer(bus.subjects.events_stream, Subjects.PROJECTOR_EVENTS)
    config = next(
        c for s, c in topology(bus.subjects, bus.settings).consumers if c.durable_name == Subjects.PROJECTOR_EVENTS
    )
    await ensure_consumer(bus.js, bus.subjects.events_stream, config)
    last = await publish_all(bus, events[-1:])

    async with Projector(bus, database_url) as restarted:
        assert restarted.last_seq == first_part
        await drain(restarted)
        assert restarted.projected == 1
        assert restarted.last_seq == last
        assert await checkpoint(restarted) == last
        after = await table_dump(restarted.sessions)
    assert after["execution_events"][:-1] == before["execution_events"]
    assert after["execution_tasks"] == before["execution_tasks"]
    assert after["execution_subtasks"] == before["execution_subtasks"]
    assert before["executions"][0]["status"] == "RUNNING"
    assert after["executions"][0]["status"] == "COMPLETED"


async def test_an_event_delivered_but_lost_in_flight_is_read_again_before_the_checkpoint_passes_it(
    bus: Bus, sqlite_url: str
) -> None:
    """A delivery that never reaches the projector (its node went down) comes back only after ack_wait, behind
    newer events: the projector must not move its checkpoint past it meanwhile."""
    events = scenario()[:4]
    last = await publish_all(bus, events)
    async with Projector(bus, sqlite_url) as projector:  # positioned at its checkpoint: delivers from seq 1 on
        stolen = await bus.js.pull_subscribe_bind(Subjects.PROJECTOR_EVENTS, stream=bus.subjects.events_stream)
        [lost] = await stolen.fetch(1, timeout=WAIT_S)  # delivered to someone else and never acked: lost in flight
        assert lost.metadata.sequence.stream == 1
        await drain(projector)
        assert projector.last_seq == last
        stored = [e["event_id"] for e in (await table_dump(projector.sessions))["execution_events"]]
    assert stored == [e.event_id for e in events], "the lost event is projected, in its place"


async def test_a_jump_over_messages_that_are_not_events_is_no_loss(bus: Bus) -> None:
    first = await publish_all(bus, scenario()[:1])
    await asyncio.wait_for(bus.js.publish(bus.subjects.partition_fence(0), b"epoch"), WAIT_S)  # a fence marker
    second = await publish_all(bus, scenario()[1:2])
    assert second == first + 2
    assert await first_missing(bus, 0, [first, second]) is None
    assert await first_missing(bus, 0, [second]) == first, "an event before the batch was not in it"
    assert await first_missing(bus, first, [second]) is None
    assert await next_event_seq(bus, second + 1) is None


async def test_agent_cards_are_mirrored_and_go_offline(bus: Bus, sqlite_url: str) -> None:
    card = AgentCard(
        agent_id="a1",
        name="searcher",
        role="researcher",
        capabilities=[CapabilityCard(action="web_search")],
        started_at=at(0),
        heartbeat_at=datetime.now(UTC),
    )
    kv = await bus.agents_kv()
    await kv.put("a1", card.model_dump_json().encode())
    async with Projector(bus, sqlite_url) as projector, running(projector):

        async def agent() -> AgentRow | None:
            async with projector.sessions() as session:
                return await session.get(AgentRow, "a1")

        async def status_is(wanted: str) -> AgentRow | None:
            row = await agent()
            return row if row is not None and row.status == wanted else None

        row = await eventually(lambda: status_is("online"), timeout=WAIT_S)
        assert (row.name, row.role, row.started_at) == ("searcher", "researcher", at(0))
        assert row.capabilities == [{"action": "web_search", "description": "", "params_schema": {}}]
        await kv.delete("a1")
        await eventually(lambda: status_is("offline"), timeout=WAIT_S)


async def test_a_card_that_does_not_validate_does_not_keep_the_others_of_its_batch_out(
    bus: Bus, sqlite_url: str
) -> None:
    kv = await bus.agents_kv()
    now = datetime.now(UTC)
    await kv.put("a2", b'{"agent_id": "a2", "capabilities": "not a list"}')
    for agent_id in ("a3", "a4"):
        card = AgentCard(agent_id=agent_id, name=agent_id, capabilities=[], started_at=now, heartbeat_at=now)
        await kv.put(agent_id, card.model_dump_json().encode())
    async with Projector(bus, sqlite_url) as projector, running(projector):

        async def online() -> list[str] | None:
            async with projector.sessions() as session:
                rows = [await session.get(AgentRow, a) for a in ("a2", "a3", "a4")]
            names = [row.agent_id for row in rows if row is not None and row.status == "online"]
            return names if len(names) == 2 else None

        assert await eventually(online, timeout=WAIT_S) == ["a3", "a4"]


async def test_an_event_that_cannot_be_projected_is_dead_lettered_alone(bus: Bus, database_url: str) -> None:
    task = Task(task_id="t1", title="twice", subtasks=[Subtask(subtask_id="s1", action="a")])
    broken = Plan(plan_id="p9", goal="g", phases=[Phase(phase_id="x", name="x", tasks=[task, task])])
    poison = ExecutionCreated(execution_id="bad", ts=at(0), plan=broken)  # a duplicate task id breaks the keys
    events = scenario()
    await publish_all(bus, events[:1])
    poison_seq = await publish_all(bus, [poison])
    last = await publish_all(bus, events[1:])
    async with Projector(bus, database_url) as projector:
        await drain(projector)
        assert projector.dead_lettered == 1
        assert projector.last_seq == last
        assert await report_json(projector.sessions, EXECUTION) == EXPECTED_REPORT
        assert await execution_status(projector.sessions, "bad") is None
        assert await count_events(projector) == len(events)
    raw = await bus.js.get_last_msg(bus.subjects.dlq_stream, bus.subjects.dlq("projector"))
    letter = DeadLetter.model_validate_json(raw.data or b"")
    assert letter.stream_seq == poison_seq
    assert "projection failed" in letter.reason


async def test_an_agent_silent_for_longer_than_the_ttl_goes_offline(bus: Bus, sqlite_url: str) -> None:
    stale = datetime.now(UTC) - timedelta(seconds=bus.settings.agent_ttl_s * 10)
    card = AgentCard(agent_id="a9", name="old", capabilities=[], started_at=stale, heartbeat_at=stale)
    await (await bus.agents_kv()).put("a9", card.model_dump_json().encode())
    async with Projector(bus, sqlite_url) as projector, running(projector):

        async def offline() -> bool:
            async with projector.sessions() as session:
                row = await session.get(AgentRow, "a9")
            return row is not None and row.status == "offline" and row.last_heartbeat == stale

        await eventually(offline, timeout=WAIT_S)


class LosesOneBatch(Projector):
    """A projector whose third batch fails once as a lost database connection fails it."""

    failed = 0

    async def _project(self, items: Any, outcome: Any, **kwargs: Any) -> None:
        if self.batches == 3 and not self.failed:
            self.failed += 1
            raise OperationalError("COMMIT", None, OSError("connection lost"))
        await super()._project(items, outcome, **kwargs)


async def test_a_batch_lost_with_its_connection_comes_again(bus: Bus, database_url: str, tmp_path: Any) -> None:
    """Batches are decoded while the one before is written: a write that fails still loses and repeats nothing."""
    events = scenario("e1") + scenario("e2")
    last = await publish_all(bus, events)
    async with LosesOneBatch(bus, database_url, batch=3) as projector:
        await drain(projector)
        assert projector.failed == 1
        assert projector.last_seq == last
        dump = await table_dump(projector.sessions)
    async with Projector(bus, f"sqlite+aiosqlite:///{tmp_path / 'reference.sqlite3'}", durable="reference") as one:
        await drain(one)
        assert dump == await table_dump(one.sessions)
    stored = [row["stream_seq"] for row in dump["execution_events"]]
    assert stored == list(range(last - len(events) + 1, last + 1))


class NotesBatches(Projector):
    """A projector that notes the stream sequences of every batch it writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: list[list[int]] = []

    async def _handle_batch(self, items: Any, *args: Any) -> None:
        self.written.append([item.seq for item in items])
        await super()._handle_batch(items, *args)


async def test_batches_near_the_end_of_the_stream_are_small(bus: Bus, sqlite_url: str) -> None:
    """Up to ``batch`` events a transaction while as many more are stored after them, ``live_batch`` near the end."""
    events = scenario("e1") + scenario("e2") + scenario("e3")
    last = await publish_all(bus, events)
    async with NotesBatches(bus, sqlite_url, batch=12, live_batch=2) as projector:
        await drain(projector)
        assert projector.last_seq == last
    written = [seq for batch in projector.written for seq in batch]
    assert written == sorted(written)
    assert set(written) == set(range(last - len(events) + 1, last + 1))
    assert all(len(batch) <= 12 for batch in projector.written)
    # An event with fewer than 12 stored after it is written in a batch of 2 at most; the others in batches of 12.
    tail = [batch for batch in projector.written if batch[-1] > last - 12]
    assert tail
    assert all(len(batch) <= 2 for batch in tail)
    # How many a batch takes (how many come before one is handed on depends on the delivery's pace).
    assert [projector.batch_size(first, 57) for first in (1, 34, 35, 46, 57)] == [12, 12, 2, 2, 2]


async def test_events_that_come_one_at_a_time_wait_a_little_for_each_other(bus: Bus, sqlite_url: str) -> None:
    """A slow stream is not written once per event: a batch not full waits ``linger_s`` after its first event."""
    async with NotesBatches(bus, sqlite_url, linger_s=3.0) as projector, running(projector):
        last = await publish_all(bus, scenario())  # one publish after the other's ack: they come one at a time
        await projected(projector, last)
    assert [len(batch) for batch in projector.written] == [len(scenario())], "one write for all of them"


async def test_while_events_trickle_they_wait_at_the_server_until_the_batch_has_lingered(
    bus: Bus, sqlite_url: str
) -> None:
    """Quiet: the first event starts the linger; those stored meanwhile are not delivered, one drain takes them."""
    events = scenario()
    async with NotesBatches(bus, sqlite_url, linger_s=0.05) as projector, running(projector):
        first = await publish_all(bus, events[:1])

        async def quiet_with_one_credit() -> bool:  # a batch did not fill; older credits have expired
            pull = projector._pull
            return projector.last_seq >= first and projector.quiet and pull is not None and pull.outstanding <= 1

        await eventually(quiet_with_one_credit, timeout=WAIT_S)
        projector.linger_s = 2.0  # the next batch lingers long enough to look at the server meanwhile
        second = await publish_all(bus, events[1:2])

        async def delivered(seq: int) -> bool:
            info = await bus.js.consumer_info(bus.subjects.events_stream, projector.durable)
            return bool(info.delivered.stream_seq >= seq)

        await eventually(lambda: delivered(second), timeout=WAIT_S)
        last = await publish_all(bus, events[2:5])
        info = await bus.js.consumer_info(bus.subjects.events_stream, projector.durable)
        assert info.delivered.stream_seq == second, "stored while the batch lingers: not delivered"
        assert info.num_pending == 3
        assert projector.last_seq < second, "the batch is still lingering"
        await projected(projector, last)
    assert projector.written == [[first], list(range(second, last + 1))], "one write for what gathered"


@contextlib.asynccontextmanager
async def running(projector: Projector) -> AsyncIterator[None]:
    """``projector.run`` in a task while the block runs, stopped after it."""
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def projected(projector: Projector, seq: int) -> None:
    """Wait until ``projector`` has written up to stream sequence ``seq``."""

    async def there() -> bool:
        return projector.last_seq >= seq

    await eventually(there, timeout=WAIT_S)


async def test_an_explicitly_acked_durable_of_an_earlier_version_is_replaced_by_one_without_acks(
    bus: Bus, sqlite_url: str
) -> None:
    """A deployment's durable made with explicit acks, some deliveries unacked: the projector takes no acks now."""
    events = scenario()
    last = await publish_all(bus, events)
    old = events_consumer(bus.subjects, Subjects.PROJECTOR_EVENTS, bus.settings)
    assert old.ack_policy == AckPolicy.EXPLICIT
    await bus.js.delete_consumer(bus.subjects.events_stream, Subjects.PROJECTOR_EVENTS)  # as provisioned now
    await ensure_consumer(bus.js, bus.subjects.events_stream, old)
    held = await bus.js.pull_subscribe_bind(Subjects.PROJECTOR_EVENTS, stream=bus.subjects.events_stream)
    assert len(await held.fetch(3, timeout=WAIT_S)) == 3  # delivered, never acked: a projector of that version died
    async with Projector(bus, sqlite_url) as projector:
        await drain(projector)
        info = await bus.js.consumer_info(bus.subjects.events_stream, projector.durable)
        assert projector.last_seq == last
        stored = [e["event_id"] for e in (await table_dump(projector.sessions))["execution_events"]]
    assert info.config.ack_policy == AckPolicy.NONE
    assert info.config.filter_subject == bus.subjects.all_events
    assert info.num_ack_pending == 0
    assert stored == [e.event_id for e in events], "every event once, in stream order"
    assert STANDING >= 1  # the pull credits are what bounds the events in flight


async def test_the_last_event_delivered_and_lost_is_read_again(bus: Bus, sqlite_url: str) -> None:
    """No later event shows the jump, and the durable never delivers it again: the idle looks find it."""
    events = scenario()[:3]
    await publish_all(bus, events[:2])
    async with Projector(bus, sqlite_url) as projector:
        await drain(projector)
        assert projector.last_seq == 2
        last = await publish_all(bus, events[2:])
        # Positioned at the checkpoint (as a term begins), and the next delivery goes to someone else: lost.
        await projector._position()
        projector._fresh = True
        stolen = await bus.js.pull_subscribe_bind(Subjects.PROJECTOR_EVENTS, stream=bus.subjects.events_stream)
        [lost] = await stolen.fetch(1, timeout=WAIT_S)
        assert lost.metadata.sequence.stream == last
        await drain(projector)
        assert projector.last_seq == last
        stored = [e["event_id"] for e in (await table_dump(projector.sessions))["execution_events"]]
    assert stored == [e.event_id for e in events]
