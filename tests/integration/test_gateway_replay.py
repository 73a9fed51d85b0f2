"""Replay over HTTP: ``GET /api/executions/{id}?at_seq=N`` serves the execution as it was at an earlier event."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.gateway import Stack
from tests.integration.test_gateway_executions import all_events, people_plan, start, until_item, until_status, upload

pytestmark = [pytest.mark.nats, pytest.mark.postgres]


def subtask(tree: dict[str, Any], subtask_id: str) -> dict[str, Any]:
    found = [s for p in tree["phases"] for t in p["tasks"] for s in t["subtasks"] if s["subtask_id"] == subtask_id]
    assert len(found) == 1, subtask_id
    only: dict[str, Any] = found[0]
    return only


async def at(stack: Stack, execution_id: str, seq: int) -> dict[str, Any]:
    response = await stack.client.get(f"/api/executions/{execution_id}", params={"at_seq": seq})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_at_seq_serves_the_execution_as_it_was_at_that_event(stack: Stack) -> None:
    await upload(stack, people_plan("replayed", approval=True, work=1))
    execution_id = (await start(stack, "replayed"))["execution_id"]
    approval = await until_item(stack, execution_id, "approval")
    assert (await stack.client.post(f"/api/inbox/{approval['item_id']}", json={"action": "approve"})).is_success
    human = await until_item(stack, execution_id, "human_task")
    assert (await stack.client.post(f"/api/inbox/{human['item_id']}", json={"action": "complete"})).is_success
    now = await until_status(stack, execution_id, "COMPLETED")
    events = sorted(await all_events(stack, execution_id), key=lambda e: e["seq"])

    running = next(
        e
        for e in events
        if e["type"] == "subtask_state" and e["data"]["subtask_id"] == "w0_doc" and e["data"]["status"] == "RUNNING"
    )
    then = await at(stack, execution_id, running["seq"])
    assert (then["at_seq"], then["status"], now["status"]) == (running["seq"], "RUNNING", "COMPLETED")
    assert subtask(then["tree"], "w0_doc")["status"] == "RUNNING"
    assert then["counts"]["subtasks"].get("COMPLETED", 0) == 0
    assert then["inbox"] == []
    assert then["progress"] < now["progress"]

    opened = next(e for e in events if e["type"] == "inbox_opened" and e["data"]["kind"] == "approval")
    waiting = await at(stack, execution_id, opened["seq"])
    assert subtask(waiting["tree"], "w0_doc")["status"] == "COMPLETED"
    assert [(i["item_id"], i["status"]) for i in waiting["inbox"]] == [(approval["item_id"], "open")]
    assert waiting["counts"]["inbox_open"] == 1

    last = await at(stack, execution_id, 2**62)
    assert last["at_seq"] == events[-1]["seq"]
    assert last["status"] == "COMPLETED"
    assert {k: v for k, v in last.items() if k not in ("at_seq", "events", "tree", "inbox")} == now
    assert last["events"] == len({e["seq"] for e in events}), "the stored events (a task's move rides in one)"


async def test_at_seq_before_the_execution_or_of_an_unknown_one_is_404(stack: Stack) -> None:
    await upload(stack, people_plan("early", approval=True))
    await start(stack, "early")  # events of another execution come first in the stream
    execution_id = (await start(stack, "early"))["execution_id"]
    first = min(e["seq"] for e in await all_events(stack, execution_id))

    early = await stack.client.get(f"/api/executions/{execution_id}", params={"at_seq": first - 1})
    unknown = await stack.client.get("/api/executions/ghost", params={"at_seq": 5})
    zero = await stack.client.get(f"/api/executions/{execution_id}", params={"at_seq": 0})

    assert early.status_code == 404, early.text
    assert "no event yet" in early.json()["detail"]
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "unknown execution ghost"
    assert zero.status_code == 422
