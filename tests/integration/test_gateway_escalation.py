"""Escalations over HTTP: work that fails waits in the inbox; retry (new params), complete, skip and fail answer it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.escalation import ANSWERED, FIXED_PARAMS, escalating_plan
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack

pytestmark = [pytest.mark.nats, pytest.mark.postgres]


async def get(stack: Stack, path: str, **params: Any) -> Any:
    response = await stack.client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def answer(stack: Stack, item: dict[str, Any], by: str, **body: Any) -> dict[str, Any]:
    """Answer ``item`` as the person ``by`` (their token)."""
    async with stack.client_as(stack.person(by)) as person:
        response = await person.post(f"/api/inbox/{item['item_id']}", json=body)
    assert response.status_code == 200, response.text
    closed: dict[str, Any] = response.json()
    return closed


def by_task(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for phase in tree["phases"] for t in phase["tasks"]}


async def test_each_answer_to_an_escalation_over_rest(stack: Stack) -> None:
    plan = escalating_plan("escalations_rest").model_dump(mode="json", by_alias=True)
    assert (await stack.client.post("/api/plans", json=plan)).status_code == 201
    started = await stack.client.post("/api/executions", json={"plan_id": plan["plan_id"]})
    execution_id = started.json()["execution_id"]

    async def four_open() -> dict[str, dict[str, Any]] | None:
        items = (await get(stack, "/api/inbox", execution_id=execution_id))["items"]
        return {i["task_id"]: i for i in items} if len(items) == 4 else None

    items = await eventually(four_open, timeout=30)
    assert sorted(items) == sorted(ANSWERED)
    assert {i["kind"] for i in items.values()} == {"escalation"}
    assert items["t_retry"]["params"]["source"] == "missing_retry.json"

    async def blocked() -> dict[str, Any] | None:
        body: dict[str, Any] = await get(stack, f"/api/executions/{execution_id}")
        return body if body["status"] == "BLOCKED" else None

    detail = await eventually(blocked)
    assert detail["counts"]["inbox_open"] == 4
    assert {b["subtask_id"] for b in detail["blockers"]} >= {"s_retry", "s_complete", "s_skip", "s_fail"}

    wrong = await stack.client.post(f"/api/inbox/{items['t_skip']['item_id']}", json={"action": "skip", "params": {}})
    assert (wrong.status_code, wrong.json()) == (409, {"detail": "params go with retry only, not with skip"})
    unfit = await stack.client.post(f"/api/inbox/{items['t_skip']['item_id']}", json={"action": "approve"})
    assert unfit.json() == {"detail": "cannot approve a escalation item; answer with retry or complete or skip or fail"}

    misfit = await stack.client.post(
        f"/api/inbox/{items['t_retry']['item_id']}", json={"action": "retry", "params": {"operation": "explode"}}
    )
    assert misfit.status_code == 422, misfit.text
    (problem,) = misfit.json()["problems"]
    assert (problem["subtask_id"], problem["action"], problem["field"]) == ("s_retry", "manage_csv", "params.operation")
    assert "explode" in problem["message"]
    assert len((await get(stack, "/api/inbox", execution_id=execution_id))["items"]) == 4, "nothing was answered"
    retried = await answer(stack, items["t_retry"], action="retry", by="ann", params=FIXED_PARAMS)
    assert (retried["status"], retried["resolution"], retried["resolved_by"]) == ("closed", "retried", "ann")
    assert retried["resolution_params"] == FIXED_PARAMS
    completed = await answer(stack, items["t_complete"], action="complete", by="bob", output={"rows": 12})
    assert completed["resolution_output"] == {"rows": 12}
    assert (await answer(stack, items["t_skip"], action="skip", by="ann"))["resolution"] == "skipped"

    async def moved_on() -> dict[str, dict[str, Any]] | None:
        tasks = by_task(await get(stack, f"/api/executions/{execution_id}/tasks"))
        done = [tasks[t]["status"] for t in ("t_retry", "t_complete", "t_skip", "t_after")]
        return tasks if done == ["COMPLETED", "COMPLETED", "SKIPPED", "COMPLETED"] else None

    tasks = await eventually(moved_on, timeout=30)
    assert tasks["t_skip"]["subtasks"][0]["status"] == "SKIPPED"
    assert tasks["t_complete"]["subtasks"][0]["agent_id"] == "person-bob"
    assert tasks["t_retry"]["subtasks"][0]["output"]["rows"] == 1
    assert (await get(stack, f"/api/executions/{execution_id}"))["status"] == "BLOCKED", "t_fail still waits"

    assert (await answer(stack, items["t_fail"], action="fail", by="ann", comment="no data"))["resolution"] == "failed"

    async def failed() -> dict[str, Any] | None:
        body: dict[str, Any] = await get(stack, f"/api/executions/{execution_id}")
        return body if body["status"] == "FAILED" else None

    end = await eventually(failed)
    assert "s_fail failed by ann: no data" in end["reason"]
    assert end["counts"]["inbox_open"] == 0
    closed = await stack.client.post(f"/api/inbox/{items['t_fail']['item_id']}", json={"action": "retry"})
    assert closed.status_code == 409
