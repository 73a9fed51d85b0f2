"""The plan catalog over HTTP: upload, replace, validate, list, page, delete and import, on a real stack."""

from __future__ import annotations

import copy
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.importers import import_planexe_run
from planexe_ax.plans.validation import parse_plan_text
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document, waiting_plan
from tests.helpers.planexe_runs import FIXTURE, runs_param, sample

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

JSON = {"content-type": "application/json"}


PROSPECTING = example_document()["plan_id"]


def small_plan(plan_id: str, title: str = "") -> dict[str, Any]:
    """A one-task plan."""
    doc = {"template": "# {n}\n", "variables": {"n": 1}}
    return {
        "plan_id": plan_id,
        "title": title or plan_id.title(),
        "goal": f"goal of {plan_id}",
        "phases": [
            {
                "phase_id": "p",
                "name": "Work",
                "tasks": [
                    {
                        "task_id": "t1",
                        "title": "Write",
                        "subtasks": [{"subtask_id": "s1", "action": "draft_document", "params": doc}],
                    }
                ],
            }
        ],
    }


def validate_message(text: str) -> str:
    """What `planexe-ax plan validate` says about this plan text (source ``plan``)."""
    with pytest.raises(PlanValidationError) as caught:
        parse_plan_text(text, "plan")
    return str(caught.value)


async def listed_ids(stack: Stack) -> list[str]:
    response = await stack.client.get("/api/plans", params={"limit": 500})
    assert response.status_code == 200, response.text
    return [item["plan_id"] for item in response.json()["items"]]


async def execution_status(stack: Stack, execution_id: str) -> str:
    response = await stack.client.get(f"/api/executions/{execution_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


# -- upload, read, replace ---------------------------------------------------------------------------------
async def test_an_uploaded_plan_is_readable_at_once(stack: Stack) -> None:
    document = example_document()
    created = await stack.client.post("/api/plans", json=document)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["plan_id"] == PROSPECTING
    assert body["title"] == document["title"]
    assert body["goal"] == document["goal"]
    assert (body["phases"], body["tasks"], body["subtasks"], body["risks"]) == (3, 8, 16, len(document["risks"]))
    assert body["created_at"].endswith("Z")
    assert [t["task_id"] for p in body["plan"]["phases"] for t in p["tasks"]] == [
        t["task_id"] for p in document["phases"] for t in p["tasks"]
    ]

    read = await stack.client.get(f"/api/plans/{PROSPECTING}")
    assert read.status_code == 200, read.text
    assert body.pop("warnings") == []  # the upload's answer says what the check warned of
    assert read.json() == body

    listing = (await stack.client.get("/api/plans")).json()
    assert listing["next_cursor"] is None
    assert listing["items"] == [{k: v for k, v in body.items() if k != "plan"}]


async def test_uploading_the_same_id_again_replaces_the_plan(stack: Stack) -> None:
    first = await stack.client.post("/api/plans", json=small_plan("hello", "Hello"))
    assert first.status_code == 201, first.text

    changed = small_plan("hello", "Hello again")
    changed["phases"][0]["tasks"].append(
        {
            "task_id": "t2",
            "title": "Send",
            "prerequisites": ["t1"],
            "subtasks": [{"subtask_id": "s2", "action": "echo"}],
        }
    )
    second = await stack.client.post("/api/plans", json=changed)
    assert second.status_code == 200, second.text
    assert (second.json()["title"], second.json()["tasks"]) == ("Hello again", 2)

    read = (await stack.client.get("/api/plans/hello")).json()
    assert read["title"] == "Hello again"
    assert [t["task_id"] for t in read["plan"]["phases"][0]["tasks"]] == ["t1", "t2"]
    assert read["created_at"] == first.json()["created_at"], "a replaced plan keeps its place in the catalog"
    items = (await stack.client.get("/api/plans")).json()["items"]
    assert [(i["plan_id"], i["title"]) for i in items] == [("hello", "Hello again")]


# -- invalid plans -----------------------------------------------------------------------------------------
def _missing_field() -> str:
    plan = small_plan("broken")
    del plan["phases"][0]["tasks"][0]["task_id"]
    return json.dumps(plan)


def _cycle() -> str:
    plan = small_plan("loop")
    tasks = plan["phases"][0]["tasks"]
    tasks.append(copy.deepcopy(tasks[0]) | {"task_id": "t2", "prerequisites": ["t1"]})
    tasks[1]["subtasks"][0]["subtask_id"] = "s2"
    tasks[0]["prerequisites"] = ["t2"]
    return json.dumps(plan)


def _unknown_prerequisite() -> str:
    plan = small_plan("orphan")
    plan["phases"][0]["tasks"][0]["prerequisites"] = ["t9"]
    return json.dumps(plan)


def _malformed_json() -> str:
    return json.dumps(small_plan("cut"))[:-7]


def _not_an_object() -> str:
    return json.dumps([small_plan("listed")])


def _bad_plan_id() -> str:
    return json.dumps(small_plan("a.b"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(_missing_field(), "plan: tasks[0]: task_id: Field required", id="missing-field"),
        pytest.param(_cycle(), "plan: dependency cycle: ", id="cycle"),
        pytest.param(
            _unknown_prerequisite(), "plan: task 't1' has unknown prerequisite 't9'", id="unknown-prerequisite"
        ),
        pytest.param(_malformed_json(), "plan: invalid JSON at line 1 column ", id="malformed-json"),
        pytest.param(_not_an_object(), "plan: a plan is a JSON object, got list", id="not-an-object"),
        pytest.param("", "plan: invalid JSON at line 1 column 1: ", id="empty-body"),
        pytest.param(_bad_plan_id(), "plan: plan_id: Value error, plan id 'a.b' must be ", id="bad-plan-id"),
    ],
)
async def test_an_invalid_plan_is_refused_with_the_message_of_plan_validate(
    stack: Stack, text: str, expected: str
) -> None:
    message = validate_message(text)
    assert message.startswith(expected), message  # the case tests what its name says

    response = await stack.client.post("/api/plans", content=text.encode(), headers=JSON)

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == message
    assert await listed_ids(stack) == []


# -- tasks -------------------------------------------------------------------------------------------------
async def test_the_tasks_of_a_plan_come_in_plan_order_with_phase_and_subtasks(stack: Stack) -> None:
    document = example_document()
    assert (await stack.client.post("/api/plans", json=document)).status_code == 201

    response = await stack.client.get(f"/api/plans/{PROSPECTING}/tasks")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plan_id"] == PROSPECTING
    expected = [(p["phase_id"], p["name"], t) for p in document["phases"] for t in p["tasks"]]
    assert len(body["items"]) == len(expected) == 8
    for item, (phase_id, phase_name, task) in zip(body["items"], expected, strict=True):
        assert (item["phase_id"], item["phase_name"]) == (phase_id, phase_name)
        assert (item["task_id"], item["title"]) == (task["task_id"], task["title"])
        assert [(s["subtask_id"], s["action"]) for s in item["subtasks"]] == [
            (s["subtask_id"], s["action"]) for s in task["subtasks"]
        ]
        assert [s["params"] for s in item["subtasks"]] == [s.get("params", {}) for s in task["subtasks"]]


async def test_an_unknown_plan_is_404(stack: Stack) -> None:
    for path in ("/api/plans/nope", "/api/plans/nope/tasks"):
        response = await stack.client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "unknown plan nope"}


# -- listing -----------------------------------------------------------------------------------------------
async def test_pages_of_two_walk_every_plan_once_newest_first(stack: Stack) -> None:
    uploaded = [f"plan{i}" for i in range(5)]
    for plan_id in uploaded:
        assert (await stack.client.post("/api/plans", json=small_plan(plan_id))).status_code == 201

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await stack.client.get("/api/plans", params=params)).json()
        seen += [item["plan_id"] for item in page["items"]]
        sizes.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == uploaded[::-1]
    assert sizes == [2, 2, 1]


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "WzFd", "WyJ5ZXN0ZXJkYXkiLCAicCJd"],  # garbage, [1], ["yesterday", "p"]
)
async def test_a_cursor_the_api_did_not_hand_out_is_400(stack: Stack, cursor: str) -> None:
    response = await stack.client.get("/api/plans", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"]


async def test_a_limit_out_of_range_is_422(stack: Stack) -> None:
    response = await stack.client.get("/api/plans", params={"limit": 0})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("query.limit: ")


# -- delete ------------------------------------------------------------------------------------------------
async def test_a_deleted_plan_is_gone(stack: Stack) -> None:
    for plan_id in ("keep", "drop"):
        assert (await stack.client.post("/api/plans", json=small_plan(plan_id))).status_code == 201

    deleted = await stack.client.delete("/api/plans/drop")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await stack.client.get("/api/plans/drop")).status_code == 404
    assert (await stack.client.get("/api/plans/drop/tasks")).status_code == 404
    assert await listed_ids(stack) == ["keep"]
    again = await stack.client.delete("/api/plans/drop")
    assert again.status_code == 404
    assert again.json() == {"detail": "unknown plan drop"}


async def test_a_deleted_plan_can_be_uploaded_again(stack: Stack) -> None:
    assert (await stack.client.post("/api/plans", json=small_plan("again", "First"))).status_code == 201
    assert (await stack.client.delete("/api/plans/again")).status_code == 204

    response = await stack.client.post("/api/plans", json=small_plan("again", "Second"))

    assert response.status_code == 201, response.text
    assert (await stack.client.get("/api/plans/again")).json()["title"] == "Second"
    assert await listed_ids(stack) == ["again"]


async def test_deleting_an_unknown_plan_is_404(stack: Stack) -> None:
    response = await stack.client.delete("/api/plans/never")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown plan never"}


async def test_a_plan_with_a_running_execution_cannot_be_deleted(stack: Stack) -> None:
    assert (await stack.client.post("/api/plans", json=waiting_plan())).status_code == 201
    started = await stack.client.post("/api/executions", json={"plan_id": "waiting"})
    assert started.status_code == 201, started.text
    execution_id = started.json()["execution_id"]

    refused = await stack.client.delete("/api/plans/waiting")

    assert refused.status_code == 409, refused.text
    assert execution_id in refused.json()["detail"]
    assert "waiting" in await listed_ids(stack)
    cancelled = await stack.client.patch(f"/api/executions/{execution_id}", json={"status": "CANCELLED"})
    assert cancelled.status_code == 200, cancelled.text
    assert (await stack.client.delete("/api/plans/waiting")).status_code == 204


async def test_the_plan_of_a_finished_execution_can_be_deleted_and_the_execution_stays(stack: Stack) -> None:
    assert (await stack.client.post("/api/plans", json=example_document())).status_code == 201
    started = await stack.client.post("/api/executions", json={"plan_id": PROSPECTING})
    assert started.status_code == 201, started.text
    execution_id = started.json()["execution_id"]
    await eventually(lambda: _is(stack, execution_id, "COMPLETED"))

    assert (await stack.client.delete(f"/api/plans/{PROSPECTING}")).status_code == 204

    assert (await stack.client.get(f"/api/plans/{PROSPECTING}")).status_code == 404
    detail = await stack.client.get(f"/api/executions/{execution_id}")
    assert detail.status_code == 200, detail.text
    assert (detail.json()["plan_id"], detail.json()["status"]) == (PROSPECTING, "COMPLETED")
    assert detail.json()["title"] == example_document()["title"]
    tree = await stack.client.get(f"/api/executions/{execution_id}/tasks")
    assert tree.status_code == 200, tree.text
    assert sum(len(p["tasks"]) for p in tree.json()["phases"]) == 8
    listed = (await stack.client.get("/api/executions")).json()["items"]
    assert [item["execution_id"] for item in listed] == [execution_id]
    events = await stack.client.get(f"/api/executions/{execution_id}/events", params={"limit": 5})
    newest = [item for item in events.json()["items"] if item["type"] != "audit_checkpoint"]  # the end's checkpoint
    assert newest[0]["data"]["status"] == "COMPLETED"
    again = await stack.client.post("/api/executions", json={"plan_id": PROSPECTING})
    assert again.status_code == 404, again.text


async def _is(stack: Stack, execution_id: str, status: str) -> bool:
    return await execution_status(stack, execution_id) == status


# -- import ------------------------------------------------------------------------------------------------
def zip_folder(folder: Path, target: Path) -> bytes:
    """The zip of a run folder, its files inside a folder of the same name (as PlanExe ships them)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return target.read_bytes()


@pytest.mark.parametrize("run", runs_param([FIXTURE, *sample("20251110_4DWW_India")]))
async def test_the_zip_of_a_planexe_run_is_imported(stack: Stack, run: Path, tmp_path: Path) -> None:
    body = zip_folder(run, tmp_path / "run.zip")
    expected = import_planexe_run(run).plan

    response = await stack.client.post("/api/plans/import", content=body, headers={"content-type": "application/zip"})

    assert response.status_code == 201, response.text
    imported = response.json()
    report = imported["import_report"]
    assert isinstance(report, dict)
    assert report
    assert imported["plan"]["metadata"]["import_report"] == report
    assert imported["plan_id"] == expected.plan_id
    assert imported["tasks"] == len(expected.tasks())
    assert imported["subtasks"] == sum(len(task.subtasks) for task in expected.tasks())
    read = await stack.client.get(f"/api/plans/{imported['plan_id']}")
    assert read.status_code == 200, read.text
    assert read.json()["tasks"] == imported["tasks"]
    assert await listed_ids(stack) == [imported["plan_id"]]
    assert tempfile.gettempdir() not in report["source"], "the report names a temporary file of the server"


async def test_an_empty_import_is_422(stack: Stack) -> None:
    response = await stack.client.post("/api/plans/import", content=b"", headers={"content-type": "application/zip"})
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": "send the zip of a PlanExe run folder as the request body"}


async def test_an_import_that_is_not_a_zip_is_422_with_a_clear_detail(stack: Stack) -> None:
    response = await stack.client.post(
        "/api/plans/import", content=b"these are not the bytes of a zip", headers={"content-type": "application/zip"}
    )

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "not a PlanExe run folder or a .zip of one" in detail
    assert tempfile.gettempdir() not in detail, "the detail names a temporary file of the server"
    assert await listed_ids(stack) == []


async def test_a_zip_that_is_not_a_planexe_run_is_422_naming_what_is_missing(stack: Stack, tmp_path: Path) -> None:
    target = tmp_path / "other.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")

    response = await stack.client.post(
        "/api/plans/import", content=target.read_bytes(), headers={"content-type": "application/zip"}
    )

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "not a complete PlanExe run; missing: " in detail
    assert "wbs_level2" in detail
    assert tempfile.gettempdir() not in detail, "the detail names a temporary file of the server"
