"""`planexe-ax run` end to end: real nats-server, real agents, SQLite and PostgreSQL read models."""

import json
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.cli import example_plan_path, load_plan, main
from planexe_ax.config import Settings
from tests.helpers.checks import assert_completed, assert_dependencies_hold

pytestmark = [pytest.mark.slow, pytest.mark.nats]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, nats_url: str, settings: Settings, database_url: str) -> dict[str, str]:
    values = {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": database_url,
        "PLANEXE_LAG_SCALE_S": "0.2",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run_json(plan_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["run", str(plan_path), "--json", "--timeout", "60"])
    return code, json.loads(capsys.readouterr().out)


def test_prospecting_plan_runs_to_completed(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(example_plan_path(), capsys)
    assert code == 0
    assert_completed(report)
    plan = load_plan(example_plan_path())
    assert_dependencies_hold(plan, report)
    assert [t["task_id"] for t in report["tasks"]] == [t.task_id for t in plan.tasks()]
    assert set(report) == {"execution_id", "plan_id", "status", "reason", "started_at", "finished_at", "tasks"} | {
        "trace_id"
    }
    outputs = Path(env["PLANEXE_DATA_DIR"]) / "outputs" / report["execution_id"]
    assert (outputs / "PROSPECTS.csv").read_text().startswith("business_name")
    assert list((outputs / "invites").glob("*.ics"))


def test_every_dependency_type_with_lag_holds(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = json.loads(example_plan_path().read_text())
    plan["plan_id"] = "deps_with_lag"
    plan["dependencies"] = [
        {"from": "task_1_1", "to": "task_1_2", "type": "finish_to_start", "lag_hours": 1},
        {"from": "task_1_2", "to": "task_1_3", "type": "start_to_start", "lag_hours": 1},
        {"from": "task_1_3", "to": "task_2_1", "type": "finish_to_finish", "lag_hours": 1},
        {"from": "task_2_1", "to": "task_2_2", "type": "start_to_finish", "lag_hours": 1},
        {"from": "task_2_2", "to": "task_2_3", "type": "finish_to_start"},
        {"from": "task_2_3", "to": "task_3_1", "type": "start_to_start"},
        {"from": "task_3_1", "to": "task_3_2", "type": "finish_to_finish"},
    ]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    code, report = run_json(path, capsys)
    assert code == 0
    assert_completed(report)
    assert_dependencies_hold(load_plan(path), report, lag_scale_s=0.2)


def failing_plan(tmp_path: Path, **top: str) -> Path:
    """The example plan with a subtask that fails for good at run time (its source file does not exist)."""
    plan = json.loads(example_plan_path().read_text())
    plan["phases"][0]["tasks"][0]["subtasks"][1]["params"] = {"operation": "import_json", "source": "missing.json"}
    plan.update(top)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_a_failing_subtask_fails_the_run_with_exit_1(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(failing_plan(tmp_path, on_failure="fail"), capsys)
    assert code == 1
    assert report["status"] == "FAILED"
    first = report["tasks"][0]
    assert first["status"] == "FAILED"
    assert first["subtasks"][1]["status"] == "FAILED"
    assert first["attempts"] >= 1
    assert all(t["status"] == "CANCELLED" for t in report["tasks"][1:])


def test_people_auto_answers_an_escalation_with_fail_so_the_run_ends(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(failing_plan(tmp_path)), "--json", "--timeout", "60", "--people", "auto"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1
    assert report["status"] == "FAILED"
    assert report["tasks"][0]["subtasks"][1]["status"] == "FAILED"
    assert all(t["status"] == "CANCELLED" for t in report["tasks"][1:])
    assert "answered automatically (--people auto): 1 escalation" in captured.err
