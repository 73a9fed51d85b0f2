"""The agents API and the HTTP agent protocol, against a whole stack (coordinator, projector, agents, gateway)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from planexe_ax.bus import Bus, Subjects, TaskOffer
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan
from tests.helpers.gateway import Stack

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

HTTP_ACTION = "http_only_work"
"""An action no built-in agent offers: only the HTTP agents of these tests can do it."""


def http_plan(plan_id: str) -> dict[str, Any]:
    """A plan of one task with one subtask that only an HTTP agent can do."""
    document = make_plan({"t1": 1}, plan_id=plan_id).model_dump(mode="json", by_alias=True, exclude_none=True)
    for sub in document["phases"][0]["tasks"][0]["subtasks"]:
        sub["action"] = HTTP_ACTION
    return document


async def register(client: httpx.AsyncClient, agent_id: str, name: str = "Larry") -> httpx.Response:
    body = {"agent_id": agent_id, "name": name, "role": "tests", "capabilities": [{"action": HTTP_ACTION}]}
    return await client.post("/api/agents/register", json=body)


async def start_execution(stack: Stack, plan_id: str = "http-plan") -> str:
    assert (await stack.client.post("/api/plans", json=http_plan(plan_id))).status_code == 201
    started = await stack.client.post("/api/executions", json={"plan_id": plan_id})
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["execution_id"]
    return execution_id


async def lease(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    """Poll for work until an offer comes (the coordinator dispatches right after the execution starts)."""

    async def work() -> dict[str, Any] | None:
        answer = await client.get(f"/api/agents/{agent_id}/work")
        assert answer.status_code in (200, 204), answer.text
        return answer.json() if answer.status_code == 200 else None

    return await eventually(work, timeout=5)


def report(offer: dict[str, Any], agent_id: str, event_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "event_type": event_type,
        "task_id": offer["task_id"],
        "subtask_id": offer["subtask_id"],
        "attempt": offer["lease"]["attempt"],
        **fields,
    }


async def post(client: httpx.AsyncClient, offer: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/api/executions/{offer['execution_id']}/events", json=body)


async def test_register_shows_the_agent_online_with_its_capabilities(stack: Stack) -> None:
    created = await register(stack.client, "larry-1")
    assert created.status_code == 201, created.text
    assert created.json()["online"] is True

    agent = (await stack.client.get("/api/agents/larry-1")).json()
    assert agent["status"] == "online"
    assert agent["last_heartbeat"] is not None
    assert [cap["action"] for cap in agent["capabilities"]] == [HTTP_ACTION]
    caps = (await stack.client.get("/api/agents/larry-1/capabilities")).json()
    assert caps == {"agent_id": "larry-1", "online": True, "capabilities": agent["capabilities"]}
    listed = (await stack.client.get("/api/agents")).json()["items"]
    assert "larry-1" in {item["agent_id"] for item in listed}

    again = await register(stack.client, "larry-1", name="Larry the second")
    assert again.status_code == 200
    assert (await stack.client.get("/api/agents/larry-1")).json()["name"] == "Larry the second"


async def test_registration_names_the_bad_field(stack: Stack) -> None:
    bad_id = await stack.client.post("/api/agents/register", json={"agent_id": "a.b", "name": "x"})
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"].startswith("agent_id:")
    body = {"agent_id": "ok", "name": "x", "capabilities": [{"action": "Not A Token"}]}
    bad_action = await stack.client.post("/api/agents/register", json=body)
    assert bad_action.status_code == 422
    assert bad_action.json()["detail"].startswith("capabilities.0.action:")


async def test_unknown_agent_is_404(stack: Stack) -> None:
    assert (await stack.client.get("/api/agents/nobody")).status_code == 404
    assert (await stack.client.get("/api/agents/nobody/capabilities")).status_code == 404
    work = await stack.client.get("/api/agents/nobody/work")
    assert work.status_code == 404
    assert "register" in work.json()["detail"]
    heartbeat = {"agent_id": "nobody", "event_type": "heartbeat"}
    assert (await stack.client.post("/api/executions/e1/events", json=heartbeat)).status_code == 404


async def test_no_work_is_204_with_retry_after(stack: Stack) -> None:
    assert (await register(stack.client, "idle-1")).status_code == 201
    answer = await stack.client.get("/api/agents/idle-1/work")
    assert answer.status_code == 204
    assert int(answer.headers["Retry-After"]) >= 1
    beat = await stack.client.post("/api/executions/any/events", json={"agent_id": "idle-1", "event_type": "heartbeat"})
    assert beat.status_code == 200
    assert beat.json()["lease"] is None


async def test_http_agent_completes_an_execution(stack: Stack) -> None:
    await register(stack.client, "larry-1")
    execution_id = await start_execution(stack)
    offer = await lease(stack.client, "larry-1")
    assert (offer["execution_id"], offer["action"], offer["lease"]["attempt"]) == (execution_id, HTTP_ACTION, 1)
    assert offer["lease"]["lease_id"] == f"{execution_id}:{offer['subtask_id']}:1"

    started = await post(stack.client, offer, report(offer, "larry-1", "started"))
    assert started.status_code == 200, started.text
    assert started.json()["lease"]["lease_id"] == offer["lease"]["lease_id"]
    progress = await post(stack.client, offer, report(offer, "larry-1", "progress", percent=40, message="half"))
    assert progress.status_code == 200, progress.text
    tree = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    assert tree["phases"][0]["tasks"][0]["subtasks"][0]["progress"] == 40

    done = await post(stack.client, offer, report(offer, "larry-1", "task_complete", output={"breeders": 23}))
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["event_id"].startswith(f"{offer['lease']['lease_id']}:result:")
    assert answer["subtask_status"] == "COMPLETED"
    assert answer["lease"] is None
    subtask = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()["phases"][0]["tasks"][0]
    assert subtask["subtasks"][0]["output"] == {"breeders": 23}
    assert subtask["subtasks"][0]["agent_id"] == "larry-1"

    async def completed() -> bool:
        detail = (await stack.client.get(f"/api/executions/{execution_id}")).json()
        return bool(detail["status"] == "COMPLETED")

    await eventually(completed, timeout=5)


async def test_a_result_posted_twice_is_applied_once(stack: Stack) -> None:
    await register(stack.client, "larry-1")
    execution_id = await start_execution(stack)
    offer = await lease(stack.client, "larry-1")
    body = report(offer, "larry-1", "task_complete", output={"n": 1})
    first = await post(stack.client, offer, body)
    second = await post(stack.client, offer, body)
    assert first.status_code == second.status_code == 200
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert first.json()["seq"] == second.json()["seq"]
    events = await stack.client.get(f"/api/executions/{execution_id}/events", params={"type": "subtask_result"})
    assert len(events.json()["items"]) == 1
    failed = await post(stack.client, offer, report(offer, "larry-1", "task_error", error="too late"))
    assert failed.status_code == 409


async def test_a_bad_event_is_422_naming_the_field(stack: Stack) -> None:
    offer = {"execution_id": "e1", "task_id": "t1", "subtask_id": "t1_s0", "lease": {"attempt": 1}}
    too_much = await post(stack.client, offer, report(offer, "larry-1", "progress", percent=150))
    assert too_much.status_code == 422
    assert too_much.json()["detail"].startswith("percent:")
    unknown = await post(stack.client, offer, report(offer, "larry-1", "finished"))
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("event_type:")
    no_attempt = await post(stack.client, offer, {**report(offer, "larry-1", "started"), "attempt": None})
    assert no_attempt.status_code == 422
    assert "attempt required" in no_attempt.json()["detail"]


async def test_events_on_a_lease_the_agent_does_not_hold_are_409(stack: Stack) -> None:
    await register(stack.client, "larry-1")
    await register(stack.client, "marie-1", name="Marie")
    await start_execution(stack)
    offer = await lease(stack.client, "larry-1")

    other_agent = await post(stack.client, offer, report(offer, "marie-1", "started"))
    assert other_agent.status_code == 409
    assert "another agent" in other_agent.json()["detail"]
    wrong_attempt = await post(stack.client, offer, {**report(offer, "larry-1", "started"), "attempt": 2})
    assert wrong_attempt.status_code == 409
    assert (await post(stack.client, offer, report(offer, "larry-1", "started"))).status_code == 200


async def test_an_attempt_the_coordinator_took_away_is_409(stack: Stack) -> None:
    await register(stack.client, "larry-1")
    execution_id = await start_execution(stack)
    offer = await lease(stack.client, "larry-1")
    assert (await post(stack.client, offer, report(offer, "larry-1", "started"))).status_code == 200
    cancelled = await stack.client.patch(f"/api/executions/{execution_id}", json={"status": "CANCELLED"})
    assert cancelled.status_code == 200, cancelled.text

    late = await post(stack.client, offer, report(offer, "larry-1", "task_complete", output={}))
    assert late.status_code == 409
    assert "taken away" in late.json()["detail"]
    events = await stack.client.get(f"/api/executions/{execution_id}/events", params={"type": "subtask_result"})
    assert events.json()["items"] == []


async def test_a_quiet_agent_goes_offline_and_its_work_goes_to_another(stack: Stack) -> None:
    stack.gateway.extras["agent_bridge"].window_s = 0.5  # minutes in production; short here
    await register(stack.client, "larry-1")
    await register(stack.client, "marie-1", name="Marie")
    await start_execution(stack)
    first = await lease(stack.client, "larry-1")

    second = await lease(stack.client, "marie-1")  # polling keeps Marie heard from; Larry stays quiet
    assert (second["subtask_id"], second["lease"]["attempt"]) == (first["subtask_id"], 1)
    assert second["lease"]["delivered"] == 2

    async def larry_offline() -> bool:
        return (await stack.client.get("/api/agents/larry-1")).json()["online"] is False

    await eventually(larry_offline, timeout=8)
    # Larry is heard from again: taken back (its card has expired), online again; Marie, quiet by now, gave the
    # offer back in the meantime, so Larry gets it a second time.
    back = await stack.client.get("/api/agents/larry-1/work")
    assert back.status_code == 200
    assert (back.json()["subtask_id"], back.json()["lease"]["delivered"]) == (first["subtask_id"], 3)

    async def larry_online() -> bool:
        return (await stack.client.get("/api/agents/larry-1")).json()["online"] is True

    await eventually(larry_online, timeout=5)


async def test_a_rejection_goes_to_another_agent_on_its_direct_consumer(stack: Stack) -> None:
    await register(stack.client, "larry-1")
    await register(stack.client, "marie-1", name="Marie")
    execution_id = await start_execution(stack)
    offer = await lease(stack.client, "larry-1")
    no = report(offer, "larry-1", "rejected", reason_code="missing_tool", reason="no phone")
    rejected = await post(stack.client, offer, no)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["subtask_status"] == "DISPATCHED"  # attempt 2, pinned to the other capable agent

    again = await lease(stack.client, "marie-1")
    assert (again["subtask_id"], again["lease"]["attempt"]) == (offer["subtask_id"], 2)
    tree = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    assert tree["phases"][0]["tasks"][0]["subtasks"][0]["agent_id"] == "marie-1"


async def test_offers_held_at_shutdown_are_given_back_at_once(stack: Stack, bus: Bus) -> None:
    await register(stack.client, "larry-1")
    await start_execution(stack)
    offer = await lease(stack.client, "larry-1")
    await stack.server.stop()

    sub = await bus.js.pull_subscribe_bind(Subjects.capability_consumer(HTTP_ACTION), bus.subjects.tasks_stream)
    (msg,) = await sub.fetch(1, timeout=2)  # well within the 5 s lease: the offer was nak'ed, not abandoned
    assert TaskOffer.model_validate_json(msg.data).msg_id == offer["lease"]["lease_id"]
    assert msg.metadata.num_delivered == 2
    await msg.nak()
    await sub.unsubscribe()
