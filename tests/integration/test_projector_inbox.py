"""People in the loop in the read model: inbox items, waiting subtasks, the inbox queries; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from planexe_ax.bus import InboxClosed, InboxOpened, SubtaskState, TaskStatus
from planexe_ax.readmodel import inbox_item, inbox_items, make_engine, make_session_factory, table_dump, upgrade
from planexe_ax.readmodel.models import ExecutionSubtask, ExecutionTask
from tests.helpers.projector_factories import Feed, Sessions, at, created, people_scenario

pytestmark = pytest.mark.postgres


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    await upgrade(database_url)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    await engine.dispose()


def position(events: list[Any], event_type: str, item_id: str | None = None) -> int:
    """Index of the first event of ``event_type`` (for ``item_id``) in ``events``."""
    return next(
        i
        for i, e in enumerate(events)
        if e.type == event_type and (item_id is None or getattr(e, "item_id", None) == item_id)
    )


async def subtask(sessions: Sessions, task_id: str, subtask_id: str) -> ExecutionSubtask:
    async with sessions() as session:
        row = await session.get(ExecutionSubtask, ("e1", task_id, subtask_id))
    assert row is not None
    return row


REVIEW_OPEN = {
    "item_id": "e1-s1-5",
    "execution_id": "e1",
    "task_id": "t1",
    "subtask_id": "s1",
    "attempt": 2,
    "kind": "review",
    "title": "web_search",
    "reason": "confidence 0.40 below 0.70",
    "action": "web_search",
    "params": {"q": "x"},
    "output": {"n": 3},
    "confidence": 0.4,
    "actions": ["accept", "edit", "reject"],
    "status": "open",
    "resolution": None,
    "resolved_by": None,
    "comment": None,
    "resolution_output": None,
    "resolution_params": None,
    "opened_at": "2025-03-01T09:00:11Z",
    "closed_at": None,
}


async def item_json(sessions: Sessions, item_id: str) -> dict[str, Any] | None:
    item = await inbox_item(sessions, item_id)
    return None if item is None else item.model_dump()


async def items_json(sessions: Sessions, **where: Any) -> list[dict[str, Any]]:
    return [item.model_dump() for item in await inbox_items(sessions, **where)]


async def test_inbox_items_open_and_close(sessions: Sessions) -> None:
    events = people_scenario()
    feed = Feed(sessions)
    cut = position(events, "inbox_closed", "e1-s1-5")
    assert all(await feed(*events[:cut]))
    assert await item_json(sessions, "e1-s1-5") == REVIEW_OPEN

    assert all(await feed(*events[cut:]))
    assert await item_json(sessions, "e1-s1-5") == {
        **REVIEW_OPEN,
        "status": "closed",
        "resolution": "edited",
        "resolved_by": "bob",
        "comment": "",
        "resolution_output": {"n": 4},
        "closed_at": "2025-03-01T09:00:12Z",
    }
    approval = await item_json(sessions, "e1-t1-1")
    assert approval is not None
    assert {k: approval[k] for k in ("kind", "task_id", "subtask_id", "attempt", "action", "params", "output")} == {
        "kind": "approval", "task_id": "t1", "subtask_id": None, "attempt": None, "action": "", "params": {},
        "output": None,
    }  # fmt: skip
    assert (approval["status"], approval["resolution"], approval["resolved_by"], approval["comment"]) == (
        "closed",
        "approved",
        "ann",
        "go",
    )
    assert (approval["opened_at"], approval["closed_at"]) == ("2025-03-01T09:00:02Z", "2025-03-01T09:00:03Z")
    assert await item_json(sessions, "nope") is None


async def test_waiting_states_of_subtasks_and_tasks(sessions: Sessions) -> None:
    events = people_scenario()
    feed = Feed(sessions)

    await feed(*events[: position(events, "inbox_opened", "e1-t1-1")])
    async with sessions() as session:
        task = await session.get(ExecutionTask, ("e1", "t1"))
    assert task is not None
    assert (task.status, task.reason) == ("AWAITING_APPROVAL", "approval")

    await feed(*events[position(events, "inbox_opened", "e1-t1-1") : position(events, "task_reassigned")])
    s1 = await subtask(sessions, "t1", "s1")
    assert (s1.status, s1.reason, s1.not_before, s1.error, s1.attempt) == (
        "RETRY_WAIT",
        "rejected by a1: missing_tool",
        at(10),
        None,
        1,
    )

    await feed(*events[position(events, "task_reassigned") : position(events, "inbox_opened", "e1-s1-5")])
    s1 = await subtask(sessions, "t1", "s1")
    assert (s1.status, s1.not_before, s1.confidence, s1.agent_id, s1.finished_at) == (
        "AWAITING_HUMAN",
        None,
        0.4,
        "a2",
        None,
    )

    await feed(*events[position(events, "inbox_opened", "e1-s1-5") :])
    s1 = await subtask(sessions, "t1", "s1")
    assert (s1.status, s1.reason, s1.output, s1.confidence, s1.error, s1.finished_at) == (
        "COMPLETED",
        "edited by bob",
        {"n": 4},
        0.4,
        None,
        at(12),
    )
    s2 = await subtask(sessions, "t1", "s2")
    assert (s2.status, s2.reason, s2.deadline, s2.error, s2.finished_at) == (
        "BLOCKED",
        "waiting for a reply",
        at(74),
        None,
        None,
    )
    s3 = await subtask(sessions, "t2", "s3")
    assert (s3.status, s3.agent_id, s3.output, s3.reason, s3.progress) == (
        "COMPLETED",
        "person-ann",
        {"sent": True},
        "completed by ann",
        100.0,
    )
    dump = await table_dump(sessions)
    assert [row["type"] for row in dump["execution_events"]] == [e.type for e in events]


async def test_failed_keeps_the_reason_as_error_and_other_states_do_not(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(created())
    for t, status in enumerate([TaskStatus.BLOCKED, TaskStatus.AWAITING_APPROVAL, TaskStatus.FAILED], start=1):
        await feed(
            SubtaskState(execution_id="e1", ts=at(t), task_id="t1", subtask_id="s1", status=status, reason=f"why {t}")
        )
        row = await subtask(sessions, "t1", "s1")
        assert (row.status, row.reason) == (status.value, f"why {t}")
        assert row.error == ("why 3" if status == TaskStatus.FAILED else None)


async def test_inbox_queries_filter_and_sort(sessions: Sessions) -> None:
    feed = Feed(sessions)
    await feed(*people_scenario("e1"))
    await feed(
        created("e2", 100),
        InboxOpened(execution_id="e2", ts=at(5), item_id="e2-early", kind="approval", task_id="t1"),
        InboxOpened(execution_id="e2", ts=at(200), item_id="e2-late", kind="human_task", task_id="t2"),
        InboxClosed(
            execution_id="e2", ts=at(201), item_id="e2-late", resolution="cancelled", comment="execution ended"
        ),
    )

    def ids(items: list[dict[str, Any]]) -> list[str]:
        return [item["item_id"] for item in items]

    assert ids(await items_json(sessions)) == ["e2-early", "e1-s2-4"]
    assert ids(await items_json(sessions, include_closed=True)) == [
        "e1-t1-1",
        "e2-early",
        "e1-s1-5",
        "e1-s3-2",
        "e1-s2-4",
        "e2-late",
    ]
    assert ids(await items_json(sessions, execution_id="e1")) == ["e1-s2-4"]
    assert ids(await items_json(sessions, execution_id="e2", include_closed=True)) == ["e2-early", "e2-late"]
    assert await items_json(sessions, execution_id="nope", include_closed=True) == []

    everything = await items_json(sessions, include_closed=True)
    assert json.loads(json.dumps(everything)) == everything  # JSON-ready as it is
    assert all(set(item) == set(REVIEW_OPEN) for item in everything)
    assert [await item_json(sessions, item_id) for item_id in ids(everything)] == everything
    late = await item_json(sessions, "e2-late")
    assert late is not None
    assert (late["resolution"], late["resolved_by"], late["resolution_output"]) == ("cancelled", "", None)


async def test_inbox_edge_cases_are_stored_only(sessions: Sessions) -> None:
    feed = Feed(sessions)
    opened = InboxOpened(execution_id="e1", ts=at(1), item_id="i1", kind="approval", title="first")
    await feed(
        InboxOpened(execution_id="ghost", ts=at(0), item_id="g1", kind="approval"),  # unknown execution
        created(),
        InboxClosed(execution_id="e1", ts=at(1), item_id="nope", resolution="approved"),  # unknown item
        opened,
        InboxOpened(execution_id="e1", ts=at(2), item_id="i1", kind="review", title="again"),  # same item id
        InboxClosed(execution_id="e1", ts=at(3), item_id="i1", resolution="approved", by="ann"),
        InboxClosed(execution_id="e1", ts=at(4), item_id="i1", resolution="rejected", by="bob"),  # closed already
    )
    assert await feed(opened) == [False]  # the same event id again
    dump = await table_dump(sessions)
    assert len(dump["execution_events"]) == 7
    [item] = dump["inbox_items"]
    assert (item["item_id"], item["kind"], item["title"], item["opened_at"]) == ("i1", "approval", "first", at(1))
    assert (item["status"], item["resolution"], item["resolved_by"], item["closed_at"]) == (
        "closed",
        "approved",
        "ann",
        at(3),
    )
