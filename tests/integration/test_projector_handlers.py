"""Event handlers applied directly to a SQLite read model (no NATS): edge cases of the semantics."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.bus import (
    CommandRejected,
    Event,
    ExecutionState,
    ExecutionStatus,
    SubtaskProgress,
    SubtaskState,
    TaskState,
    TaskStatus,
)
from planexe_ax.readmodel import make_engine, make_session_factory, read_model, table_dump, upgrade
from planexe_ax.readmodel.known import Known
from planexe_ax.readmodel.models import Execution, ExecutionSubtask, ExecutionTask
from planexe_ax.readmodel.projection import Batch, apply_events
from tests.helpers.projector_factories import Feed, Sessions, at, created, people_scenario


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[Sessions]:
    await upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    yield make_session_factory(engine)
    await engine.dispose()


async def test_events_of_an_unknown_execution_are_stored_only(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(
        ExecutionState(execution_id="ghost", ts=at(1), status=ExecutionStatus.RUNNING),
        SubtaskState(execution_id="ghost", ts=at(2), task_id="t1", subtask_id="s1", status=TaskStatus.RUNNING),
    )
    dump = await table_dump(sessions)
    assert [row["execution_id"] for row in dump["execution_events"]] == ["ghost", "ghost"]
    assert dump["executions"] == []
    assert dump["execution_subtasks"] == []


async def test_unknown_tasks_and_subtasks_are_stored_only(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(created())
    before = await table_dump(sessions)
    await feed(
        TaskState(execution_id="e1", ts=at(1), task_id="nope", status=TaskStatus.RUNNING),
        SubtaskState(execution_id="e1", ts=at(1), task_id="t1", subtask_id="nope", status=TaskStatus.RUNNING),
        SubtaskProgress(execution_id="e1", ts=at(1), percent=5.0),
    )
    after = await table_dump(sessions)
    assert len(after["execution_events"]) == 4
    assert {k: v for k, v in after.items() if k != "execution_events"} == {
        k: v for k, v in before.items() if k != "execution_events"
    }


async def test_the_same_event_id_is_applied_once(sessions: Sessions) -> None:
    feed = Feed(sessions)
    running = SubtaskState(
        execution_id="e1", ts=at(2), task_id="t1", subtask_id="s1", status=TaskStatus.RUNNING, attempt=1
    )
    create = created()
    assert await feed(create, running) == [True, True]
    assert await feed(create, running) == [False, False]
    assert await feed(created()) == [True]  # another event creating the same execution: stored, not applied
    dump = await table_dump(sessions)
    assert [row["stream_seq"] for row in dump["execution_events"]] == [1, 2, 5]
    assert len(dump["executions"]) == 1


async def test_a_second_execution_of_a_plan_reuses_its_rows(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(created("e1"), created("e2"))
    dump = await table_dump(sessions)
    assert len(dump["plans"]) == 1
    assert len(dump["plan_tasks"]) == 2
    assert len(dump["plan_subtasks"]) == 3
    assert len(dump["execution_subtasks"]) == 6
    assert dump["plans"][0]["created_at"] == at(0)


async def test_subtask_state_semantics(sessions: Sessions) -> None:
    feed = Feed(sessions)

    def state(t: float, status: TaskStatus, **kw: object) -> SubtaskState:
        return SubtaskState(execution_id="e1", ts=at(t), task_id="t1", subtask_id="s1", status=status, **kw)

    await feed(created(), state(1, TaskStatus.RUNNING, attempt=3, agent_id="a1"))
    ids = {"execution_id": "e1", "task_id": "t1", "subtask_id": "s1", "attempt": 3}
    await feed(SubtaskProgress(ts=at(2), percent=30.0, agent_id="a1", **ids))
    await feed(SubtaskProgress(ts=at(2), percent=60.0, agent_id="a2", **ids))  # not the holder: ignored
    await feed(SubtaskProgress(ts=at(2), percent=70.0, agent_id="a1", **{**ids, "attempt": 2}))  # another attempt
    await feed(state(3, TaskStatus.FAILED, attempt=3, reason="boom"))
    await feed(SubtaskProgress(execution_id="e1", ts=at(4), task_id="t1", subtask_id="s1", percent=90.0))
    async with sessions() as session:
        row = await session.get(ExecutionSubtask, ("e1", "t1", "s1"))
        task = await session.get(ExecutionTask, ("e1", "t1"))
    assert row is not None
    assert task is not None
    assert (row.status, row.attempt, row.agent_id, row.error, row.progress) == ("FAILED", 3, "a1", "boom", 30.0)
    assert (row.started_at, row.finished_at, row.updated_at) == (at(1), at(3), at(3))
    assert task.attempts == 3

    await feed(state(5, TaskStatus.RUNNING, attempt=2))  # an older attempt number never lowers the task's count
    async with sessions() as session:
        row = await session.get(ExecutionSubtask, ("e1", "t1", "s1"))
        task = await session.get(ExecutionTask, ("e1", "t1"))
    assert row is not None
    assert task is not None
    assert (row.status, row.error, row.started_at, row.finished_at) == ("RUNNING", None, at(5), None)
    assert task.attempts == 3


async def test_subtask_events_without_task_id_find_their_subtask(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(created(), SubtaskState(execution_id="e1", ts=at(1), subtask_id="s3", status=TaskStatus.COMPLETED))
    async with sessions() as session:
        row = await session.get(ExecutionSubtask, ("e1", "t2", "s3"))
    assert row is not None
    assert (row.status, row.progress, row.finished_at) == ("COMPLETED", 100.0, at(1))


async def test_execution_and_task_times(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(
        created(),
        ExecutionState(execution_id="e1", ts=at(1), status=ExecutionStatus.RUNNING),
        ExecutionState(execution_id="e1", ts=at(2), status=ExecutionStatus.PAUSED, reason="by hand"),
        ExecutionState(execution_id="e1", ts=at(3), status=ExecutionStatus.RUNNING),
        TaskState(execution_id="e1", ts=at(4), task_id="t1", status=TaskStatus.RUNNING),
        TaskState(execution_id="e1", ts=at(5), task_id="t1", status=TaskStatus.RUNNING),
        TaskState(execution_id="e1", ts=at(6), task_id="t1", status=TaskStatus.CANCELLED, reason="stop"),
        ExecutionState(execution_id="e1", ts=at(7), status=ExecutionStatus.CANCELLED, reason="stop"),
        CommandRejected(execution_id="e1", ts=at(8), command="resume", reason="already cancelled"),
    )
    async with sessions() as session:
        execution = await session.get(Execution, "e1")
        task = await session.get(ExecutionTask, ("e1", "t1"))
    assert execution is not None
    assert task is not None
    assert (execution.status, execution.reason) == ("CANCELLED", "stop")
    assert (execution.started_at, execution.finished_at, execution.updated_at) == (at(1), at(7), at(7))
    assert (task.status, task.reason, task.started_at, task.finished_at) == ("CANCELLED", "stop", at(4), at(6))


async def test_a_task_move_riding_in_a_subtask_decision_gives_what_two_events_give(
    sessions: Sessions, tmp_path: Path
) -> None:
    running = TaskState(execution_id="e1", ts=at(1), task_id="t2", status=TaskStatus.RUNNING)
    done = TaskState(execution_id="e1", ts=at(3), task_id="t2", status=TaskStatus.COMPLETED, reason="ok")
    sub = {"execution_id": "e1", "task_id": "t2", "subtask_id": "s3", "attempt": 1, "agent_id": "a1"}
    dispatched = SubtaskState(ts=at(1), status=TaskStatus.DISPATCHED, **sub)
    completed = SubtaskState(ts=at(3), status=TaskStatus.COMPLETED, output={"sent": 1}, **sub)
    expected = await one_by_one([created(), running, dispatched, completed, done], tmp_path)

    feed = Feed(sessions)
    await feed(created())
    await feed(dispatched.model_copy(update={"task_state": running}))
    await feed(completed.model_copy(update={"task_state": done}))

    tables = await table_dump(sessions)
    assert tables.pop("execution_events") != expected.pop("execution_events")
    assert tables == expected
    task = next(row for row in tables["execution_tasks"] if row["task_id"] == "t2")
    assert (task["status"], task["reason"], task["started_at"], task["finished_at"]) == (
        "COMPLETED",
        "ok",
        at(1),
        at(3),
    )


async def one_by_one(events: list[Event], tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """The tables of ``events`` projected one at a time into a fresh SQLite read model: the reference."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'one_by_one.sqlite3'}"
    await upgrade(url)
    async with read_model(url) as sessions:
        feed = Feed(sessions)
        for event in events:
            await feed(event)
        return await table_dump(sessions)


async def test_one_batch_gives_what_event_by_event_gives(sessions: Sessions, tmp_path: Path) -> None:
    events = [*people_scenario("e1"), *people_scenario("e2")[:14]]
    repeated = [*events, events[3], events[0]]  # ids seen earlier in the same batch
    expected = await one_by_one(repeated, tmp_path)
    async with sessions.begin() as session:
        applied = await apply_events(session, list(enumerate(repeated, 1)))
    assert applied == [True] * len(events) + [False, False]
    assert await table_dump(sessions) == expected
    assert len(expected["execution_events"]) == len(events)
    assert {row["status"] for row in expected["inbox_items"]} == {"open", "closed"}


async def test_batches_starting_from_known_rows_give_what_event_by_event_gives(
    database_url: str, tmp_path: Path
) -> None:
    """Batches of every size that take the rows the earlier ones committed (readmodel.known), not read them."""
    events = [*people_scenario("e1"), *people_scenario("e2")]
    stream = [*events[:20], events[3], *events[20:], events[0]]  # two ids seen in earlier batches
    expected = await one_by_one(stream, tmp_path)
    await upgrade(database_url)
    known, applied, seq = Known(), [], 0
    async with read_model(database_url) as batched:
        for size in itertools.cycle([1, 2, 3, 5, 8]):
            chunk = list(enumerate(stream[seq : seq + size], seq + 1))
            if not chunk:
                break
            seq += len(chunk)
            async with batched.begin() as session:
                batch = Batch(chunk, known)
                await batch.load(session)
                applied += [batch.apply(event, at_seq) for at_seq, event in chunk]
                await batch.write(session)
            known.keep(batch.rows)
        dump = await table_dump(batched)
    assert applied == [True] * 20 + [False] + [True] * (len(events) - 20) + [False]
    assert known.tasks  # the rows were taken from what earlier batches kept
    assert dump == expected


async def test_one_batch_on_postgresql_gives_what_sqlite_gives(postgres_url: str, sessions: Sessions) -> None:
    """PostgreSQL's batch writes (events by COPY, upserts by ``unnest``, stored ids by ``= ANY``) store SQLite's."""
    events = [*people_scenario("e1"), *people_scenario("e2")[:14]]
    repeated = [*events, events[3], events[0]]
    feed = Feed(sessions)
    for event in repeated:
        await feed(event)
    expected = await table_dump(sessions)
    await upgrade(postgres_url)
    async with read_model(postgres_url) as postgres:
        async with postgres.begin() as session:
            applied = await apply_events(session, list(enumerate(repeated, 1)))
        async with postgres.begin() as session:  # the same again: every id is stored already
            again = await apply_events(session, list(enumerate(repeated, len(repeated) + 1)))
        dump = await table_dump(postgres)
    assert applied == [True] * len(events) + [False, False]
    assert again == [False] * len(repeated)
    assert dump == expected
    stored = {row["event_id"]: row for row in dump["execution_events"]}
    for event in events:
        row = stored[event.event_id]
        assert (row["ts"], row["type"], row["task_id"]) == (event.ts, event.type, event.task_id)
        assert row["data"] == event.model_dump(mode="json", by_alias=True)
