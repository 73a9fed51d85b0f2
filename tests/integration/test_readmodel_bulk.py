"""The batch writes of planexe_ax.readmodel.bulk store what the ORM stores, inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import AwareDatetime, TypeAdapter
from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects import sqlite

from planexe_ax.bus import Phase, Plan, Subtask, Task
from planexe_ax.readmodel import db, fold, read_model, upgrade
from planexe_ax.readmodel.bulk import insert_events, insert_rows, sqlite_utc_text, upsert_rows
from planexe_ax.readmodel.models import (
    Base,
    Execution,
    ExecutionEvent,
    ExecutionSubtask,
    ExecutionTask,
    JsonText,
    PlanRow,
    PlanSubtask,
    PlanTask,
    UTCDateTime,
)
from planexe_ax.readmodel.projection import Batch


def table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


EVENTS = table(ExecutionEvent)
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def event_rows(first: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "stream_seq": seq,
            "event_id": f"ev{seq}",
            "execution_id": "x1",
            "type": "task_state",
            "task_id": "t1",
            "subtask_id": None,
            "agent_id": None,
            "attempt": None,
            "ts": T0 + timedelta(seconds=seq),
            "data": f'{{"event_id": "ev{seq}", "n": {seq}}}',
        }
        for seq in range(first, first + count)
    ]


@pytest.mark.parametrize("first_statement", [True, False], ids=["first-statement", "after-a-query"])
async def test_events_are_written_in_the_callers_transaction(database_url: str, first_statement: bool) -> None:
    """On PostgreSQL after a query by COPY, as the first statement by INSERT: both roll back with the rest."""
    await upgrade(database_url)
    async with read_model(database_url) as sessions:
        async with sessions() as session:
            await session.begin()
            if not first_statement:
                await session.execute(text("SELECT 1"))
            await insert_events(session, EVENTS, event_rows(1, 3))
            assert await session.scalar(select(func.count()).select_from(ExecutionEvent)) == 3
            await session.rollback()
        async with sessions.begin() as session:
            await insert_events(session, EVENTS, event_rows(4, 2))
        async with sessions() as session:
            stored = list(await session.scalars(select(ExecutionEvent).order_by(ExecutionEvent.stream_seq)))
    assert [(row.stream_seq, row.ts, row.data) for row in stored] == [
        (4, T0 + timedelta(seconds=4), {"event_id": "ev4", "n": 4}),
        (5, T0 + timedelta(seconds=5), {"event_id": "ev5", "n": 5}),
    ]


async def test_upserts_store_what_the_orm_reads_back(database_url: str) -> None:
    await upgrade(database_url)
    plus_two = timezone(timedelta(hours=2))
    subtask = {
        "execution_id": "x1", "task_id": "t1", "subtask_id": "s1", "action": "noop", "status": "RUNNING",
        "attempt": 1, "agent_id": "agent-1", "progress": 12.5, "output": None, "confidence": None, "error": None,
        "reason": "", "not_before": None, "deadline": datetime(2025, 3, 1, 12, 0, tzinfo=plus_two),
        "started_at": T0, "finished_at": None, "updated_at": T0,
    }  # fmt: skip
    async with read_model(database_url) as sessions:
        async with sessions.begin() as session:
            plan = {"plan_id": "p1", "title": "t", "goal": "g", "plan": {"phases": [], "n": 1.5}, "created_at": T0,
                    "deleted_at": None}  # fmt: skip
            await upsert_rows(session, table(PlanRow), [plan])
            execution = {"execution_id": "x1", "plan_id": "p1", "status": "RUNNING", "reason": "", "created_at": T0,
                         "started_at": T0, "finished_at": None, "updated_at": T0}  # fmt: skip
            await upsert_rows(session, table(Execution), [execution])
            task = {"execution_id": "x1", "task_id": "t1", "status": "RUNNING", "attempts": 1, "reason": "",
                    "started_at": T0, "finished_at": None}  # fmt: skip
            await upsert_rows(session, table(ExecutionTask), [task])
            await upsert_rows(session, table(ExecutionSubtask), [subtask])
        done = {**subtask, "status": "COMPLETED", "output": {"echo": {"i": 1}, "none": None}, "progress": 100.0,
                "finished_at": T0 + timedelta(minutes=1)}  # fmt: skip
        async with sessions.begin() as session:  # the same key again: every other column overwritten
            await upsert_rows(session, table(ExecutionSubtask), [done])
        async with sessions() as session:
            row = (await session.scalars(select(ExecutionSubtask))).one()
            stored_plan = (await session.scalars(select(PlanRow))).one()
            null_outputs = await session.scalar(
                select(func.count()).select_from(ExecutionSubtask).where(ExecutionSubtask.output.is_(None))
            )
    assert (row.status, row.progress, row.output) == ("COMPLETED", 100.0, {"echo": {"i": 1}, "none": None})
    assert row.deadline == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert (row.started_at, row.finished_at, row.not_before) == (T0, T0 + timedelta(minutes=1), None)
    assert stored_plan.plan == {"phases": [], "n": 1.5}
    assert null_outputs == 0


async def test_json_text_is_stored_as_the_json_it_is(database_url: str) -> None:
    """A JsonText value binds as it is (not as a JSON string); other values of the same columns are dumped."""
    await upgrade(database_url)
    document = '{"phases":[{"phase_id":"ph"}],"title":"caf\u00e9 \\"quoted\\"","n":1.5}'
    async with read_model(database_url) as sessions:
        async with sessions.begin() as session:
            plans = [{"plan_id": p, "title": "t", "goal": "g", "plan": plan, "created_at": T0, "deleted_at": None}
                     for p, plan in (("p1", JsonText(document)), ("p2", {"as": "dict"}))]  # fmt: skip
            await upsert_rows(session, table(PlanRow), plans)
            task = {"plan_id": "p1", "task_id": "t1", "phase_id": "ph", "phase_name": "all", "title": "t",
                    "description": "", "assignee_role": None, "estimated_hours": 1.5, "position": 0}  # fmt: skip
            await insert_rows(session, table(PlanTask), [task])
            subtasks = [{"plan_id": "p1", "task_id": "t1", "subtask_id": f"s{i}", "action": "noop", "description": "",
                         "params": params, "position": i}
                        for i, params in enumerate([JsonText('{"i":0}'), {"i": 1}])]  # fmt: skip
            await insert_rows(session, table(PlanSubtask), subtasks)
        async with sessions() as session:
            stored = {row.plan_id: row.plan for row in await session.scalars(select(PlanRow))}
            params = [row.params for row in await session.scalars(select(PlanSubtask).order_by(PlanSubtask.position))]
            hours = await session.scalar(select(PlanTask.estimated_hours))
    assert stored == {
        "p1": {"phases": [{"phase_id": "ph"}], "title": 'caf\u00e9 "quoted"', "n": 1.5},
        "p2": {"as": "dict"},
    }
    assert params == [{"i": 0}, {"i": 1}]
    assert hours == 1.5


async def test_a_plan_folded_again_is_replaced_only_when_it_changed(database_url: str) -> None:
    """The stored document (read back as a dict) against the one folded (JSON text): equal leaves the rows be."""

    def plan(subtask_ids: list[str]) -> Plan:
        tasks = [Task(task_id="t1", title="one", subtasks=[Subtask(subtask_id=s, action="noop") for s in subtask_ids])]
        return Plan(plan_id="p1", goal="g", title="t", phases=[Phase(phase_id="ph", name="all", tasks=tasks)])

    await upgrade(database_url)
    async with read_model(database_url) as sessions:
        for subtask_ids, written, replaced in ((["s1", "s2"], True, False), (["s1", "s2"], False, False),
                                               (["s3"], True, True)):  # fmt: skip
            async with sessions.begin() as session:
                batch = Batch()
                await batch.load(session, plan_ids=["p1"])
                fold.fold_plan(batch.rows, plan(subtask_ids), T0)
                assert ("plans" in batch.rows.changed, "p1" in batch.rows.plans_replaced) == (written, replaced)
                await batch.write(session)
            async with sessions() as session:
                stored = (await session.scalars(select(PlanRow))).one()
                ids = list(await session.scalars(select(PlanSubtask.subtask_id).order_by(PlanSubtask.position)))
            assert stored.plan == plan(subtask_ids).model_dump(mode="json", by_alias=True)
            assert ids == subtask_ids


@pytest.mark.parametrize(
    "value",
    [
        datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        datetime(2025, 3, 1, 9, 0, 5, 123456, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2025, 1, 1, 2, 0, 0, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        TypeAdapter(AwareDatetime).validate_json('"2026-12-04T12:26:41.257098Z"'),  # pydantic's own TzInfo
        TypeAdapter(AwareDatetime).validate_json('"2026-02-28T23:59:59.5-01:00"'),
    ],
)
def test_sqlite_times_are_bound_as_sqlalchemy_binds_them(value: datetime) -> None:
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert sqlite_utc_text(value) == process(value)


def test_a_naive_time_is_refused_as_the_orm_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(datetime(2025, 3, 1, 9, 0))  # noqa: DTZ001 - the naive time is the point


def test_sqlite_binds_a_time_as_the_bulk_writes_store_it() -> None:
    """bulk registers sqlite_utc_text as sqlite3's adapter of datetime: aware times bound as UTC text, naive refused."""
    connection = sqlite3.connect(":memory:")
    try:
        value = datetime(2025, 3, 1, 11, 0, 5, 7, tzinfo=timezone(timedelta(hours=2)))
        assert connection.execute("SELECT ?", (value,)).fetchone() == ("2025-03-01 09:00:05.000007",)
        with pytest.raises(ValueError, match="naive"):
            connection.execute("SELECT ?", (datetime(2025, 3, 1, 9, 0),))  # noqa: DTZ001 - the naive time is the point
    finally:
        connection.close()


def test_a_null_binds_as_null_on_sqlite() -> None:
    """None is adapted to itself (planexe_ax.readmodel.db registers it): bound, it is SQL NULL, not text."""
    assert db.SQLITE_BUSY_TIMEOUT_MS  # imported: the adapter is registered
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    connection = sqlite3.connect(":memory:")
    try:
        assert connection.execute("SELECT ? IS NULL, typeof(?)", (None, None)).fetchone() == (1, "null")
    finally:
        connection.close()
