"""Plans are checked before they run, over HTTP: unknown fields, params against the built-in models and cards."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from planexe_ax.readmodel.projection import PLANS_CHECKPOINT
from tests.helpers.gateway import Stack, example_document

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

CARD_ACTION = "plant_tree"
CARD_SCHEMA = {
    "type": "object",
    "properties": {"species": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
    "required": ["species"],
}


def broken_document() -> dict[str, Any]:
    """The example plan with a misspelt field and an operation that manage_csv cannot do."""
    document = copy.deepcopy(example_document())
    task = document["phases"][0]["tasks"][1]
    task["prerequisits"] = task.pop("prerequisites")
    task["subtasks"][1]["params"]["operation"] = "juggle"
    return document


def card_plan(params: dict[str, Any]) -> dict[str, Any]:
    sub = {"subtask_id": "plant", "action": CARD_ACTION, "params": params}
    task = {"task_id": "t1", "title": "Plant", "subtasks": [sub]}
    return {"plan_id": "trees", "goal": "plant trees", "phases": [{"phase_id": "p", "name": "P", "tasks": [task]}]}


async def test_a_plan_with_a_bad_param_and_a_misspelt_field_is_refused_naming_both(stack: Stack) -> None:
    response = await stack.client.post("/api/plans", json=broken_document())

    assert response.status_code == 422, response.text
    body = response.json()
    lines = body["detail"].splitlines()
    assert len(lines) == len(body["problems"]) == 2
    assert 'plan: tasks[1] (task_1_2): unknown field "prerequisits"; did you mean "prerequisites"?' in lines
    param = next(p for p in body["problems"] if p.get("action"))
    assert (param["subtask_id"], param["action"], param["field"]) == ("task_1_2_2", "manage_csv", "params.operation")
    assert "(got 'juggle')" in param["message"]
    assert (await stack.client.get("/api/plans")).json()["items"] == []


async def test_params_of_an_action_a_registered_agent_offers_are_checked_against_its_card(stack: Stack) -> None:
    unknown = await stack.client.post("/api/plans", json=card_plan({"count": 0}))
    assert unknown.status_code == 201, unknown.text  # no agent offers it yet: a warning, not a refusal
    assert any(f"action '{CARD_ACTION}'" in w for w in unknown.json()["warnings"])

    card = {"action": CARD_ACTION, "params_schema": CARD_SCHEMA}
    body = {"agent_id": "gardener-1", "name": "Gardener", "role": "tests", "capabilities": [card]}
    assert (await stack.client.post("/api/agents/register", json=body)).status_code == 201

    refused = await stack.client.post("/api/plans", json=card_plan({"count": 0, "specie": "oak"}))
    assert refused.status_code == 422, refused.text
    messages = {p["field"]: p["message"] for p in refused.json()["problems"]}
    assert sorted(messages) == ["params.count", "params.specie", "params.species"]
    assert "minimum of 1" in messages["params.count"]
    assert messages["params.species"] == "action plant_tree: params.species: required, missing"
    assert 'did you mean "species"?' in messages["params.specie"]
    accepted = await stack.client.post("/api/plans", json=card_plan({"species": "oak", "count": 3}))
    assert accepted.status_code == 200, accepted.text  # replaces the plan uploaded before the card
    assert accepted.json()["warnings"] == []


async def test_an_execution_of_a_catalog_plan_whose_params_do_not_fit_is_refused(stack: Stack) -> None:
    document = copy.deepcopy(example_document())
    document["phases"][0]["tasks"][0]["subtasks"][0]["params"]["max_results"] = "lots"
    # Stored straight into the bucket, as a plan uploaded before the check existed would be.
    revision = await stack.gateway.bus.put_plan(document["plan_id"], json.dumps(document).encode())
    await stack.gateway.wait_projected(revision, PLANS_CHECKPOINT)

    response = await stack.client.post("/api/executions", json={"plan_id": document["plan_id"]})

    assert response.status_code == 422, response.text
    problem = response.json()["problems"][0]
    assert (problem["subtask_id"], problem["field"]) == ("task_1_1_1", "params.max_results")
    assert (await stack.client.get("/api/executions")).json()["items"] == []
