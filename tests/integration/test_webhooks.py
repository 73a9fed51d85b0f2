"""Webhooks against a real stack: registration and its checks, and signed deliveries to a receiver that fails,
goes down and recovers; every event arrives once after de-duplication, in order per execution, and the
delivery log shows every attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from planexe_ax.bus import PauseTask, WebhookDisabled
from planexe_ax.cli.services import BACKGROUND
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.tokens import Role
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document, running_stack
from tests.helpers.webhook_receiver import Receiver

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

PROSPECTING = example_document()["plan_id"]
FAST = {
    "fetch_allow": ["127.0.0.1"],
    "webhook_backoff_initial_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "webhook_poll_s": 0.1,
}


@pytest.fixture
async def hooks(settings: Settings, nats_url: str, postgres_url: str) -> AsyncIterator[Stack]:
    configured = settings.model_copy(update={**FAST, "fetch_allow": ["127.0.0.1"]})
    async with running_stack(configured, nats_url, postgres_url, (*BACKGROUND, "webhooks")) as started:
        yield started


async def register(stack: Stack, url: str, **fields: Any) -> dict[str, Any]:
    response = await stack.client.post("/api/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_webhook_is_registered_read_changed_rotated_and_deleted(hooks: Stack) -> None:
    created = await register(hooks, "http://127.0.0.1:9/hook", event_types=["execution_state"], description="ci")
    webhook_id = created["webhook_id"]
    assert created["secret"].startswith("whsec_")
    assert (created["status"], created["created_by"], created["event_types"]) == ("active", "tester",
                                                                                    ["execution_state"])  # fmt: skip
    seeds = await hooks.client.post("/api/webhooks/register", json={"url": "http://127.0.0.1:9/other"})
    assert seeds.status_code == 201, seeds.text

    listed = (await hooks.client.get("/api/webhooks")).json()["items"]
    assert [w["webhook_id"] for w in listed] == [webhook_id, seeds.json()["webhook_id"]]
    assert all("secret" not in w for w in listed)
    patched = await hooks.client.patch(f"/api/webhooks/{webhook_id}", json={"description": "nightly"})
    assert patched.json()["description"] == "nightly"
    rotated = (await hooks.client.post(f"/api/webhooks/{webhook_id}/rotate-secret")).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]

    assert (await hooks.client.delete(f"/api/webhooks/{webhook_id}")).status_code == 204
    gone = await hooks.client.get(f"/api/webhooks/{webhook_id}")
    assert (gone.status_code, gone.json()["detail"]) == (404, f"no webhook {webhook_id}")


async def test_targets_obey_the_egress_policy_and_need_the_operator_role(hooks: Stack) -> None:
    hooks.gateway.settings.fetch_allow = []  # this gateway only: loopback is no longer allowed
    refused = await hooks.client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert refused.status_code == 422, refused.text
    assert "loopback" in refused.json()["detail"]
    assert "PLANEXE_FETCH_ALLOW" in refused.json()["detail"]
    odd = await hooks.client.post("/api/webhooks", json={"url": "ftp://example.com/x"})
    assert (odd.status_code, odd.json()["detail"]) == (422, "url 'ftp://example.com/x' must be http:// or https:// "
                                                            "with a host")  # fmt: skip
    async with hooks.client_as(hooks.issue(Role.VIEWER, "vera")) as viewer:
        denied = await viewer.get("/api/webhooks")
    assert denied.status_code == 403
    assert "operator" in denied.json()["detail"]


async def all_events(stack: Stack, execution_id: str) -> list[dict[str, Any]]:
    page = (await stack.client.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})).json()
    return list(reversed(page["items"]))


async def deliveries(stack: Stack, webhook_id: str) -> list[dict[str, Any]]:
    page = (await stack.client.get(f"/api/webhooks/{webhook_id}/deliveries", params={"limit": 1000})).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def start(stack: Stack) -> str:
    response = await stack.client.post("/api/executions", json={"plan_id": PROSPECTING})
    assert response.status_code == 201, response.text
    return str(response.json()["execution_id"])


async def test_deliveries_survive_a_failing_then_absent_receiver_in_order_and_signed(hooks: Stack) -> None:
    receiver = Receiver(fail_first=3, go_down=True).start()
    try:
        hook = await register(hooks, receiver.url)
        receiver.secret = hook["secret"]
        assert (await hooks.client.post("/api/plans", json=example_document())).status_code in (200, 201)
        executions = [await start(hooks), await start(hooks)]

        async def refused_twice() -> bool:
            errors = [a["error"] or "" for d in await deliveries(hooks, hook["webhook_id"]) for a in d["attempts"]]
            return sum("Connect" in e for e in errors) >= 2

        await eventually(refused_twice, timeout=30)
        receiver.recover()

        async def everything_arrived() -> list[dict[str, Any]] | None:
            done = [(await hooks.client.get(f"/api/executions/{e}")).json()["status"] for e in executions]
            if done != ["COMPLETED", "COMPLETED"]:
                return None
            events = [event for e in executions for event in await all_events(hooks, e)]
            return events if {e["event_id"] for e in events} <= set(receiver.received) else None

        events = await eventually(everything_arrived, timeout=60)
        oldest = (await deliveries(hooks, hook["webhook_id"]))[-1]
        again = await hooks.client.post(f"/api/webhooks/{hook['webhook_id']}/deliveries/{oldest['delivery_id']}"
                                        "/redeliver")  # fmt: skip
        assert again.json() == {"delivery_id": oldest["delivery_id"], "status": "pending"}

        async def redelivered() -> bool:
            log = await deliveries(hooks, hook["webhook_id"])
            return receiver.duplicates == 1 and all(d["status"] == "delivered" for d in log)

        await eventually(redelivered)
    finally:
        receiver.stop()

    assert receiver.bad == []
    for execution_id in executions:
        arrived = [receiver.received[i] for i in receiver.arrival]
        order = [e["seq"] for e in arrived if e["data"]["execution_id"] == execution_id]
        assert order == sorted(order)
        assert len(order) == len([e for e in events if e["data"]["execution_id"] == execution_id])
    by_id = {e["event_id"]: e for e in events}
    assert all(receiver.received[i] == by_id[i] for i in by_id), "the body is the event as the REST API shows it"
    log = await deliveries(hooks, hook["webhook_id"])
    assert {d["event_id"] for d in log} == set(by_id)
    assert {d["status"] for d in log} == {"delivered"}
    attempts = [a for d in log for a in d["attempts"]]
    assert [a["status_code"] for a in attempts].count(500) == 3
    refused = [a for a in attempts if a["status_code"] is None]
    assert len(refused) >= 2
    assert all(a["error"] for a in refused)
    assert len(attempts) == receiver.requests + len(refused)
    again_log = [len(d["attempts"]) for d in log if d["delivery_id"] == oldest["delivery_id"]]
    assert again_log == [len(oldest["attempts"]) + 1]


async def test_a_receiver_that_never_answers_disables_its_webhook_with_the_reason(
    settings: Settings, nats_url: str, postgres_url: str
) -> None:
    # Long enough for a second attempt (0.05 s after the first) however late a busy machine makes the first.
    brief = settings.model_copy(update={**FAST, "fetch_allow": ["127.0.0.1"], "webhook_give_up_s": 2.0})
    async with running_stack(brief, nats_url, postgres_url, (*BACKGROUND, "webhooks")) as stack:
        hook = await register(stack, "http://127.0.0.1:9/nobody", event_types=["execution_state"])
        assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
        await start(stack)

        async def disabled() -> dict[str, Any] | None:
            found: dict[str, Any] = (await stack.client.get(f"/api/webhooks/{hook['webhook_id']}")).json()
            return found if found["status"] == "disabled" else None

        found = await eventually(disabled, timeout=30)
        assert found["disabled_reason"].startswith("gave up on event ")
        assert "ConnectError" in found["disabled_reason"]
        log = await deliveries(stack, hook["webhook_id"])
        assert log[-1]["status"] == "failed"
        assert len(log[-1]["attempts"]) >= 2
        assert {d["status"] for d in log[:-1]} <= {"pending"}


async def test_a_webhook_disabled_after_its_execution_ended_is_told_to_a_person_once(
    settings: Settings, nats_url: str, postgres_url: str
) -> None:
    brief = settings.model_copy(update={**FAST, "fetch_allow": ["127.0.0.1"], "webhook_give_up_s": 0.5})
    async with running_stack(brief, nats_url, postgres_url, (*BACKGROUND, "webhooks")) as stack:
        hook = await register(stack, "http://127.0.0.1:9/nobody?token=s3cret", event_types=["execution_state"])
        webhook = f"/api/webhooks/{hook['webhook_id']}"
        assert (await stack.client.patch(webhook, json={"status": "disabled"})).status_code == 200
        assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
        execution_id = await start(stack)

        async def ended() -> bool:
            return bool((await stack.client.get(f"/api/executions/{execution_id}")).json()["status"] == "COMPLETED")

        await eventually(ended, timeout=60)
        assert (await stack.client.patch(webhook, json={"status": "active"})).status_code == 200

        async def gave_up() -> dict[str, Any] | None:
            found: dict[str, Any] = (await stack.client.get(webhook)).json()
            return found if found["status"] == "disabled" and found["disabled_reason"] else None

        reason = (await eventually(gave_up, timeout=30))["disabled_reason"]
        assert reason.startswith("gave up on event ")

        async def notice() -> dict[str, Any] | None:
            page = await stack.client.get("/api/inbox", params={"execution_id": execution_id})
            items = [i for i in page.json()["items"] if i["kind"] == "acknowledge"]
            return items[0] if items else None

        item = await eventually(notice, timeout=30)
        assert (item["task_id"], item["subtask_id"], item["actions"]) == (None, None, ["acknowledge"])
        assert (item["title"], item["reason"]) == ("Webhook http://127.0.0.1:9/… disabled", reason)
        assert item["params"]["webhook_id"] == hook["webhook_id"]
        assert "s3cret" not in str(item), "a token in the URL stays out of the inbox"
        assert (await stack.client.get(f"/api/executions/{execution_id}")).json()["status"] == "COMPLETED"

        answered = await stack.client.post(f"/api/inbox/{item['item_id']}", json={"action": "acknowledge"})
        assert answered.status_code == 200, answered.text
        assert (answered.json()["status"], answered.json()["resolution"]) == ("closed", "acknowledged")

        # The same give-up sent again after the stream's duplicate window (another Nats-Msg-Id) opens nothing;
        # a command behind it that the coordinator refuses shows when it has read both.
        bus = stack.services.webhooks.bus  # type: ignore[union-attr]  # the stack runs webhooks
        events = await all_events(stack, execution_id)
        (opened,) = [e for e in events if e["type"] == "inbox_opened"]
        command = WebhookDisabled(command_id=opened["data"]["causation_id"], execution_id=execution_id,
                                  webhook_id=hook["webhook_id"], url="http://127.0.0.1:9/…",
                                  event_id=opened["data"]["params"]["event_id"], reason=reason)  # fmt: skip
        await bus.publish(bus.subjects.command(execution_id), command, msg_id=f"{command.command_id}:again")
        probe = PauseTask(execution_id=execution_id, task_id=next(e["data"]["task_id"] for e in events
                                                                   if e["type"] == "task_state"))  # fmt: skip
        await bus.send_command(probe)

        async def refused() -> list[dict[str, Any]] | None:
            seen = await all_events(stack, execution_id)
            return seen if any(e["data"].get("causation_id") == probe.command_id for e in seen) else None

        after = await eventually(refused, timeout=30)
    later = [(e["type"], e["data"].get("reason")) for e in after[len(events) :] if e["type"] != "audit_checkpoint"]
    assert later == [("command_rejected", "the execution is COMPLETED")]
    assert [e["data"]["kind"] for e in after if e["type"] == "inbox_opened"] == ["acknowledge"]
