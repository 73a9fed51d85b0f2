"""Health, readiness, metrics and the API documentation of the gateway, on a real stack."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

ROUTES = {
    "/api/plans": {"get", "post"},
    "/api/plans/import": {"post"},
    "/api/plans/{plan_id}": {"get", "delete"},
    "/api/plans/{plan_id}/tasks": {"get"},
    "/api/executions": {"get", "post"},
    "/api/executions/{execution_id}": {"get", "patch"},
    "/api/executions/{execution_id}/tasks": {"get"},
    "/api/executions/{execution_id}/events": {"get"},
    "/api/inbox": {"get"},
    "/api/inbox/{item_id}": {"post"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/api/admin/metrics": {"get"},
}
"""Every route of the gateway's HTTP API so far, with its methods."""


async def scrape(stack: Stack) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """/metrics parsed: family name -> (sorted labels -> value)."""
    response = await stack.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        assert family.type == "gauge", family.name
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples[tuple(sorted(sample.labels.items()))] = sample.value
    return families


def single(families: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    samples = families[name]
    assert list(samples) == [()], name
    return samples[()]


def by_status(families: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> dict[str, float]:
    return {dict(labels)["status"]: value for labels, value in families[name].items()}


async def run_to_completion(stack: Stack, plan_id: str) -> str:
    started = await stack.client.post("/api/executions", json={"plan_id": plan_id})
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["execution_id"]

    async def completed() -> bool:
        return bool((await stack.client.get(f"/api/executions/{execution_id}")).json()["status"] == "COMPLETED")

    await eventually(completed)
    return execution_id


async def test_healthz_answers(stack: Stack) -> None:
    response = await stack.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_nats_and_the_read_model(stack: Stack) -> None:
    response = await stack.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"ready": True, "checks": {"nats": "ok", "database": "ok"}}


async def test_metrics_count_what_ran_and_agree_with_the_json(stack: Stack) -> None:
    document = example_document()
    assert (await stack.client.post("/api/plans", json=document)).status_code == 201
    ran = [await run_to_completion(stack, document["plan_id"]) for _ in range(2)]
    assert len(set(ran)) == 2

    async def caught_up() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        families = await scrape(stack)
        return families if single(families, "planexe_projector_lag_events") == 0 else None

    families = await eventually(caught_up)

    assert by_status(families, "planexe_executions") == {"COMPLETED": 2}
    assert by_status(families, "planexe_tasks") == {"COMPLETED": 16}
    assert by_status(families, "planexe_subtasks") == {"COMPLETED": 32}
    assert single(families, "planexe_subtasks_completed") == 32
    assert single(families, "planexe_subtasks_failed") == 0
    assert single(families, "planexe_subtasks_dispatched") >= 32
    assert single(families, "planexe_websockets_open") == 0
    assert single(families, "planexe_projector_checkpoint") > 0
    assert single(families, "planexe_gateway_uptime_seconds") > 0
    assert by_status(families, "planexe_agents").get("online", 0) >= 1

    admin = await stack.client.get("/api/admin/metrics")
    assert admin.status_code == 200, admin.text
    figures = admin.json()
    assert figures["executions"] == {"COMPLETED": 2}
    assert figures["tasks"] == by_status(families, "planexe_tasks")
    assert figures["subtasks"] == by_status(families, "planexe_subtasks")
    assert figures["agents"] == by_status(families, "planexe_agents")
    assert figures["subtask_attempts_dispatched"] == single(families, "planexe_subtasks_dispatched")
    assert figures["projector_lag_events"] == single(families, "planexe_projector_lag_events")
    assert figures["projector_checkpoint"] == single(families, "planexe_projector_checkpoint")
    assert figures["events_last_seq"] == figures["projector_checkpoint"]
    assert figures.get("websockets_open") == single(families, "planexe_websockets_open"), "a figure of /metrics"
    assert figures["uptime_s"] >= single(families, "planexe_gateway_uptime_seconds")


async def test_metrics_follow_executions_as_they_end(stack: Stack) -> None:
    document = example_document()
    assert (await stack.client.post("/api/plans", json=document)).status_code == 201
    before = await scrape(stack)
    assert by_status(before, "planexe_executions") == {}

    await run_to_completion(stack, document["plan_id"])

    after = await scrape(stack)
    assert by_status(after, "planexe_executions") == {"COMPLETED": 1}
    assert single(after, "planexe_projector_checkpoint") > single(before, "planexe_projector_checkpoint")


async def test_the_api_documentation_is_served(stack: Stack) -> None:
    docs = await stack.client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()
    assert "/openapi.json" in docs.text

    response = await stack.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "PlanExe-AX"
    paths = schema["paths"]
    missing = {path: methods - set(paths.get(path, {})) for path, methods in ROUTES.items()}
    assert {path: methods for path, methods in missing.items() if methods} == {}
    for path, methods in ROUTES.items():
        for method in methods:
            assert paths[path][method].get("summary"), f"{method.upper()} {path} has no summary"
