"""A plan that asks a built-in agent to fetch from this machine: the subtask fails naming PLANEXE_FETCH_ALLOW, and
the local server is never asked (real coordinator, agents, projector and gateway)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack
from tests.helpers.web_site import SiteHandler, serve_site

pytestmark = [pytest.mark.nats, pytest.mark.postgres]


def fetching_plan(url: str) -> dict[str, Any]:
    subtask = {"subtask_id": "s_fetch", "action": "web_scrape", "params": {"url": url}}
    task = {"task_id": "t_fetch", "title": "Read the admin page", "subtasks": [subtask]}
    return {"plan_id": "ssrf_probe", "goal": "Fetch a local page", "on_failure": "fail",
            "phases": [{"phase_id": "p1", "name": "Fetch", "tasks": [task]}]}  # fmt: skip


async def test_a_fetch_of_this_machine_fails_the_subtask_naming_the_setting(stack: Stack) -> None:
    with serve_site() as site:
        asked_before = len(SiteHandler.requests)
        plan = fetching_plan(f"{site}/good")
        assert (await stack.client.post("/api/plans", json=plan)).status_code == 201
        started = await stack.client.post("/api/executions", json={"plan_id": plan["plan_id"]})
        assert started.status_code == 201, started.text
        execution_id = started.json()["execution_id"]

        async def failed() -> dict[str, Any] | None:
            body: dict[str, Any] = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
            subtask: dict[str, Any] = body["phases"][0]["tasks"][0]["subtasks"][0]
            return subtask if subtask["status"] == "FAILED" else None

        subtask = await eventually(failed, timeout=30)
        assert "a loopback address; list it in PLANEXE_FETCH_ALLOW" in subtask["reason"]
        assert subtask["attempt"] == 1, "refused for good: not tried again"
        assert len(SiteHandler.requests) == asked_before, "the local server was never asked"
