"""Executions, their events and the inbox over HTTP: start, list, page, steer, answer people's work, on a real stack."""

from __future__ import annotations

from typing import Any

import pytest

from planexe_ax.ws_gateway.tokens import Role
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

DOC = {"template": "# {n}\n", "variables": {"n": 1}}


PROSPECTING = example_document()["plan_id"]


def task(task_id: str, after: list[dict[str, Any]], subtask_id: str, action: str, **flags: Any) -> dict[str, Any]:
    """One task of one subtask, after the last of ``after``."""
    params = {"params": DOC} if action == "draft_document" else {}
    sub = {"subtask_id": subtask_id, "action": action, **params}
    prerequisites = [after[-1]["task_id"]] if after else []
    return {"task_id": task_id, "title": task_id.title(), "prerequisites": prerequisites, **flags, "subtasks": [sub]}


def people_plan(plan_id: str = "people", *, approval: bool = True, work: int = 0) -> dict[str, Any]:
    """``work`` agent tasks in a chain, then (optionally) a task behind an approval gate, then a call by a person."""
    tasks: list[dict[str, Any]] = []
    for i in range(work):
        tasks.append(task(f"w{i}", tasks, f"w{i}_doc", "draft_document"))
    if approval:
        tasks.append(task("budget", tasks, "budget_doc", "draft_document", approval_required=True))
    tasks.append(task("call", tasks, "call_carol", "human_task", human_required=True))
    return {"plan_id": plan_id, "goal": "people", "phases": [{"phase_id": "p", "name": "Work", "tasks": tasks}]}


async def upload(stack: Stack, plan: dict[str, Any]) -> None:
    response = await stack.client.post("/api/plans", json=plan)
    assert response.status_code in (200, 201), response.text


async def start(stack: Stack, plan_id: str) -> dict[str, Any]:
    response = await stack.client.post("/api/executions", json={"plan_id": plan_id})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def detail(stack: Stack, execution_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/executions/{execution_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_status(stack: Stack, execution_id: str, status: str) -> dict[str, Any]:
    """The execution once it has ``status`` (polled, 10 s at most)."""

    async def reached() -> dict[str, Any] | None:
        body = await detail(stack, execution_id)
        return body if body["status"] == status else None

    return await eventually(reached)


async def open_items(stack: Stack, execution_id: str) -> list[dict[str, Any]]:
    response = await stack.client.get("/api/inbox", params={"execution_id": execution_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def until_item(stack: Stack, execution_id: str, kind: str) -> dict[str, Any]:
    """The open inbox item of ``kind`` once the execution waits on it."""

    async def opened() -> dict[str, Any] | None:
        return next((i for i in await open_items(stack, execution_id) if i["kind"] == kind), None)

    return await eventually(opened)


async def all_events(stack: Stack, execution_id: str, **filters: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/executions/{execution_id}/events", params={"limit": 1000, **filters})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def walk(stack: Stack, execution_id: str, cursor: str | None, limit: int = 5) -> list[dict[str, Any]]:
    """Every event from ``cursor`` on, page by page."""
    seen: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await stack.client.get(f"/api/executions/{execution_id}/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


# -- start and read ----------------------------------------------------------------------------------------
async def test_an_execution_starts_reads_back_at_once_and_completes(stack: Stack) -> None:
    await upload(stack, example_document())

    created = await start(stack, PROSPECTING)

    execution_id = created["execution_id"]
    assert created["plan_id"] == PROSPECTING
    assert created["title"] == example_document()["title"]
    assert created["status"] in ("CREATED", "QUEUED", "RUNNING", "COMPLETED")
    counts = created["counts"]
    assert (counts["tasks_total"], counts["subtasks_total"]) == (8, 16)
    assert (sum(counts["tasks"].values()), sum(counts["subtasks"].values()), counts["inbox_open"]) == (8, 16, 0)
    read = await detail(stack, execution_id)
    assert read["execution_id"] == execution_id
    assert read["created_at"] == created["created_at"]

    done = await until_status(stack, execution_id, "COMPLETED")
    assert done["progress"] == 100.0
    assert done["counts"] == {
        "tasks": {"COMPLETED": 8},
        "subtasks": {"COMPLETED": 16},
        "tasks_total": 8,
        "subtasks_total": 16,
        "inbox_open": 0,
    }
    assert (done["current_tasks"], done["blockers"]) == ([], [])
    assert done["finished_at"] >= done["started_at"]
    tree = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    subtasks = [s for p in tree["phases"] for t in p["tasks"] for s in t["subtasks"]]
    assert len(subtasks) == 16
    assert {s["status"] for s in subtasks} == {"COMPLETED"}
    assert all(s["agent_id"] for s in subtasks)


async def test_an_execution_of_an_unknown_plan_is_404(stack: Stack) -> None:
    response = await stack.client.post("/api/executions", json={"plan_id": "nope"})
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "unknown plan nope"}


async def test_an_execution_without_a_plan_id_is_422_naming_it(stack: Stack) -> None:
    response = await stack.client.post("/api/executions", json={"agent_id": "a1"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "plan_id: Field required"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent_id": "a.b"}, "agent_id"),
        ({"pins": {"task_1_1": "two words"}}, "pins"),
    ],
)
async def test_an_agent_id_that_cannot_be_a_subject_token_is_422(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    await upload(stack, example_document())
    stack.gateway.write_timeout_s = 2.0  # a wedged coordinator answers 503 in 2 s rather than 10

    response = await stack.client.post("/api/executions", json={"plan_id": PROSPECTING, **body})

    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field)
    assert "must be 1-128 characters of letters, digits, '_' or '-'" in response.json()["detail"]
    assert (await stack.client.get("/api/executions")).json()["items"] == []
    fine = await start(stack, PROSPECTING)
    await until_status(stack, fine["execution_id"], "COMPLETED")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/executions/ghost", None),
        ("PATCH", "/api/executions/ghost", {"status": "PAUSED"}),
        ("GET", "/api/executions/ghost/events", None),
        ("GET", "/api/executions/ghost/tasks", None),
    ],
)
async def test_an_unknown_execution_is_404(stack: Stack, method: str, path: str, body: dict[str, str] | None) -> None:
    response = await stack.client.request(method, path, json=body)
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "unknown execution ghost"}


# -- listing -----------------------------------------------------------------------------------------------
async def test_executions_are_listed_newest_first_filtered_and_paged(stack: Stack) -> None:
    await upload(stack, example_document())
    await upload(stack, people_plan("waiting", approval=False))
    finished = [(await start(stack, PROSPECTING))["execution_id"] for _ in range(3)]
    waiting = (await start(stack, "waiting"))["execution_id"]
    for execution_id in finished:
        await until_status(stack, execution_id, "COMPLETED")
    await until_item(stack, waiting, "human_task")
    await until_status(stack, waiting, "BLOCKED")  # waiting on a person

    everything = (await stack.client.get("/api/executions")).json()
    assert [i["execution_id"] for i in everything["items"]] == [waiting, *finished[::-1]]
    assert everything["next_cursor"] is None

    by_plan = (await stack.client.get("/api/executions", params={"plan_id": PROSPECTING})).json()["items"]
    assert [i["execution_id"] for i in by_plan] == finished[::-1]
    assert {(i["status"], i["progress"], i["title"]) for i in by_plan} == {
        ("COMPLETED", 100.0, example_document()["title"])
    }
    completed = (await stack.client.get("/api/executions", params={"status": "COMPLETED"})).json()["items"]
    assert [i["execution_id"] for i in completed] == finished[::-1]
    blocked = (await stack.client.get("/api/executions", params={"status": "BLOCKED"})).json()["items"]
    assert [(i["execution_id"], i["plan_id"]) for i in blocked] == [(waiting, "waiting")]
    none = await stack.client.get("/api/executions", params={"plan_id": "waiting", "status": "COMPLETED"})
    assert none.json() == {"items": [], "next_cursor": None}

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"plan_id": PROSPECTING, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await stack.client.get("/api/executions", params=params)).json()
        pages.append([i["execution_id"] for i in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [finished[:0:-1], finished[:1]]


async def test_listing_by_an_unknown_status_is_422(stack: Stack) -> None:
    response = await stack.client.get("/api/executions", params={"status": "BOGUS"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("query.status: ")


async def test_listing_with_a_bad_cursor_is_400(stack: Stack) -> None:
    response = await stack.client.get("/api/executions", params={"cursor": "WzFd"})
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "cursor 'WzFd' is not one this API handed out"}


# -- steering ----------------------------------------------------------------------------------------------
async def test_a_waiting_execution_pauses_resumes_and_cancels(stack: Stack) -> None:
    await upload(stack, people_plan("waiting", approval=False))
    execution_id = (await start(stack, "waiting"))["execution_id"]
    await until_item(stack, execution_id, "human_task")
    await until_status(stack, execution_id, "BLOCKED")  # waiting on a person
    url = f"/api/executions/{execution_id}"

    paused = await stack.client.patch(url, json={"status": "PAUSED", "reason": "lunch"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["status"], paused.json()["reason"]) == ("PAUSED", "lunch")
    assert (await detail(stack, execution_id))["status"] == "PAUSED"

    resumed = await stack.client.patch(url, json={"status": "RUNNING"})
    assert resumed.status_code == 200, resumed.text
    # RUNNING again, and at once BLOCKED on the person: the answer may show either, never PAUSED
    assert resumed.json()["status"] in ("RUNNING", "BLOCKED")
    assert (await detail(stack, execution_id))["status"] in ("RUNNING", "BLOCKED")
    states = [e["data"]["status"] for e in await all_events(stack, execution_id, type="execution_state")]
    assert states[:2] in (["RUNNING", "PAUSED"], ["BLOCKED", "RUNNING"])
    await until_status(stack, execution_id, "BLOCKED")

    again = await stack.client.patch(url, json={"status": "RUNNING"})
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "cannot resume a BLOCKED execution"}

    cancelled = await stack.client.patch(url, json={"status": "CANCELLED", "reason": "not needed"})
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["reason"]) == ("CANCELLED", "not needed")
    after = await detail(stack, execution_id)
    assert after["status"] == "CANCELLED"
    assert after["finished_at"]
    assert await open_items(stack, execution_id) == []


async def test_pausing_a_completed_execution_is_409_with_the_coordinators_reason(stack: Stack) -> None:
    await upload(stack, example_document())
    execution_id = (await start(stack, PROSPECTING))["execution_id"]
    await until_status(stack, execution_id, "COMPLETED")

    response = await stack.client.patch(f"/api/executions/{execution_id}", json={"status": "PAUSED"})

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "cannot pause a COMPLETED execution"}
    rejected = await all_events(stack, execution_id, type="command_rejected")
    assert [e["data"]["reason"] for e in rejected] == ["cannot pause a COMPLETED execution"]
    assert (await detail(stack, execution_id))["status"] == "COMPLETED"


@pytest.mark.parametrize("body", [{"status": "DONE"}, {"status": "COMPLETED"}, {}])
async def test_a_patch_to_a_status_one_cannot_ask_for_is_422(stack: Stack, body: dict[str, str]) -> None:
    await upload(stack, people_plan("waiting", approval=False))
    execution_id = (await start(stack, "waiting"))["execution_id"]

    response = await stack.client.patch(f"/api/executions/{execution_id}", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("status: ")


# -- events ------------------------------------------------------------------------------------------------
async def test_events_come_newest_first_filtered_and_in_pages_of_five(stack: Stack) -> None:
    await upload(stack, example_document())
    execution_id = (await start(stack, PROSPECTING))["execution_id"]
    await until_status(stack, execution_id, "COMPLETED")

    async def signed_to_the_end() -> list[dict[str, Any]] | None:
        """Every event once the end's checkpoint, stored after the end, is in the read model too."""
        events = await all_events(stack, execution_id)
        end = next(e["seq"] for e in events if e["type"] == "execution_state")
        newest = events[0]
        return events if newest["type"] == "audit_checkpoint" and newest["data"]["up_to_seq"] >= end else None

    events = await eventually(signed_to_the_end)

    assert len(events) > 20
    assert seqs(events) == sorted(seqs(events), reverse=True)
    shared = [e for e in events if seqs(events).count(e["seq"]) > 1]  # a task's move and the decision it rode in
    assert shared
    assert {e["type"] for e in shared} == {"task_state", "subtask_state"}
    last = next(e for e in events if e["type"] != "audit_checkpoint")
    assert last["type"] == "execution_state"
    assert last["data"]["status"] == "COMPLETED"
    assert events[-1]["type"] == "execution_created"
    for event in events:
        assert event["data"]["execution_id"] == execution_id
        assert (event["type"], event["event_id"]) == (event["data"]["type"], event["data"]["event_id"])
    assert await walk(stack, execution_id, None) == events
    assert await walk(stack, execution_id, None, limit=1) == events, "a page may end inside a stored event"

    states = await all_events(stack, execution_id, type="subtask_state")
    assert states == [e for e in events if e["type"] == "subtask_state"]
    assert len(states) >= 16
    of_task = await all_events(stack, execution_id, task_id="task_1_1")
    assert of_task == [e for e in events if e["task_id"] == "task_1_1"]
    assert {e["type"] for e in of_task} >= {"task_state", "subtask_state"}
    for moved in (e for e in of_task if e["type"] == "task_state"):  # each rode in its subtask's decision
        carrier = next(e for e in of_task if e["seq"] == moved["seq"] and e["type"] == "subtask_state")
        assert carrier["data"]["task_state"] == moved["data"]
        assert of_task.index(moved) == of_task.index(carrier) - 1, "listed on its own just before it (newest first)"
    task_moves = await all_events(stack, execution_id, type="task_state")
    assert task_moves == [e for e in events if e["type"] == "task_state"]
    assert {e["data"]["status"] for e in task_moves} >= {"RUNNING", "COMPLETED"}
    agent_id = next(e["agent_id"] for e in events if e["agent_id"])
    by_agent = await all_events(stack, execution_id, agent_id=agent_id)
    assert by_agent == [e for e in events if e["agent_id"] == agent_id]
    assert by_agent
    both = await all_events(stack, execution_id, type="subtask_state", task_id="task_1_1")
    assert both == [e for e in of_task if e["type"] == "subtask_state"]
    assert await all_events(stack, execution_id, type="no_such_type") == []


async def test_an_events_cursor_the_api_did_not_hand_out_is_400(stack: Stack) -> None:
    await upload(stack, people_plan("waiting", approval=False))
    execution_id = (await start(stack, "waiting"))["execution_id"]
    # not base64 JSON; ["x"]; [true]; [2 ** 70] (no stream sequence is that large)
    for cursor in ("garbage!", "WyJ4Il0", "W3RydWVd", "WzExODA1OTE2MjA3MTc0MTEzMDM0MjRd"):
        response = await stack.client.get(f"/api/executions/{execution_id}/events", params={"cursor": cursor})
        assert response.status_code == 400, f"cursor {cursor}: {response.status_code} {response.text}"
        assert "not one this API handed out" in response.json()["detail"]


async def test_event_pages_neither_repeat_nor_skip_while_new_events_arrive(stack: Stack) -> None:
    await upload(stack, people_plan("chain", approval=False, work=4))
    execution_id = (await start(stack, "chain"))["execution_id"]
    item = await until_item(stack, execution_id, "human_task")
    url = f"/api/executions/{execution_id}/events"
    first = (await stack.client.get(url, params={"limit": 5})).json()
    assert len(first["items"]) == 5
    assert first["next_cursor"]
    newest_then = first["items"][0]["seq"]

    answered = await stack.client.post(f"/api/inbox/{item['item_id']}", json={"action": "complete"})
    assert answered.status_code == 200, answered.text

    async def arrived() -> bool:
        newest = (await stack.client.get(url, params={"limit": 1})).json()["items"][0]
        return bool(newest["seq"] > newest_then)

    await eventually(arrived)
    rest = await walk(stack, execution_id, first["next_cursor"])
    await until_status(stack, execution_id, "COMPLETED")
    final = await all_events(stack, execution_id)
    assert final[0]["seq"] > newest_then, "events arrived between the pages"
    paged = first["items"] + rest
    assert seqs(paged) == sorted(seqs(paged), reverse=True)
    assert [e["event_id"] for e in paged] == list(dict.fromkeys(e["event_id"] for e in paged)), "none repeated"
    assert paged == [e for e in final if e["seq"] <= newest_then]


# -- inbox -------------------------------------------------------------------------------------------------
async def test_people_answer_the_inbox_and_the_execution_goes_on(stack: Stack) -> None:
    await upload(stack, people_plan("gated"))
    execution_id = (await start(stack, "gated"))["execution_id"]

    approval = await until_item(stack, execution_id, "approval")
    assert (approval["task_id"], approval["status"], approval["actions"]) == ("budget", "open", ["approve", "reject"])
    assert [i["item_id"] for i in await open_items(stack, execution_id)] == [approval["item_id"]]
    assert (await detail(stack, execution_id))["counts"]["inbox_open"] == 1

    wrong = await stack.client.post(f"/api/inbox/{approval['item_id']}", json={"action": "complete"})
    assert wrong.status_code == 409, wrong.text
    assert wrong.json() == {"detail": "cannot complete a approval item; answer with approve or reject"}

    async with stack.client_as(stack.issue(Role.APPROVER, "ann")) as ann:
        body = {"action": "approve", "by": "mallory", "comment": "fits"}
        approved = await ann.post(f"/api/inbox/{approval['item_id']}", json=body)
    assert approved.status_code == 200, approved.text
    closed = approved.json()
    assert (closed["item_id"], closed["status"], closed["resolution"]) == (approval["item_id"], "closed", "approved")
    assert (closed["resolved_by"], closed["comment"]) == ("ann", "fits"), "the token's name, not the body's"
    assert closed["closed_at"]

    human = await until_item(stack, execution_id, "human_task")
    assert (human["task_id"], human["subtask_id"], human["actions"]) == ("call", "call_carol", ["complete", "reject"])
    assert [i["item_id"] for i in await open_items(stack, execution_id)] == [human["item_id"]]
    async with stack.client_as(stack.issue(Role.APPROVER, "bob")) as bob:
        done = await bob.post(
            f"/api/inbox/{human['item_id']}", json={"action": "complete", "output": {"reached": True}}
        )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["resolution"]) == ("closed", "completed")
    assert done.json()["resolution_output"] == {"reached": True}

    finished = await until_status(stack, execution_id, "COMPLETED")
    assert finished["counts"]["inbox_open"] == 0
    tree = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    call = tree["phases"][0]["tasks"][-1]["subtasks"][0]
    assert (call["agent_id"], call["output"]) == ("person-bob", {"reached": True})
    every = {"execution_id": execution_id, "include_closed": True}
    history = (await stack.client.get("/api/inbox", params=every)).json()
    assert [(i["item_id"], i["status"]) for i in history["items"]] == [
        (approval["item_id"], "closed"),
        (human["item_id"], "closed"),
    ]

    again = await stack.client.post(f"/api/inbox/{approval['item_id']}", json={"action": "approve"})
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": f"inbox item {approval['item_id']} is closed (approved)"}


async def test_answering_an_unknown_inbox_item_is_404(stack: Stack) -> None:
    response = await stack.client.post("/api/inbox/ghost-item", json={"action": "approve"})
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "unknown inbox item ghost-item"}


async def test_an_answer_that_is_no_inbox_action_is_422(stack: Stack) -> None:
    response = await stack.client.post("/api/inbox/ghost-item", json={"action": "shrug"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("action: ")
