"""A PlanExe run folder executes to COMPLETED with the built-in agents; people's work answered automatically.

Runs on tests/fixtures/planexe_run, and on a real sample too when the samples are present.
"""

import json
from pathlib import Path

import pytest

from planexe_ax.cli import main
from planexe_ax.config import Settings
from planexe_ax.plans.importers import import_planexe_run
from tests.helpers.checks import assert_completed
from tests.helpers.planexe_runs import FIXTURE, runs_param, sample

pytestmark = [pytest.mark.slow, pytest.mark.nats]


@pytest.mark.parametrize("run", runs_param([FIXTURE, *sample("20251110_4DWW_India")]))
def test_an_imported_planexe_run_executes_to_completed(
    run: Path,
    monkeypatch: pytest.MonkeyPatch,
    nats_url: str,
    settings: Settings,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": sqlite_url,
    }.items():
        monkeypatch.setenv(key, value)
    code = main(["run", str(run), "--people", "auto", "--json", "--timeout", "240"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    report = json.loads(captured.out)
    assert report["status"] == "COMPLETED"
    assert len(report["tasks"]) == len(import_planexe_run(run).plan.tasks())
    subtasks = [s for t in report["tasks"] for s in t["subtasks"]]
    people = [s for s in subtasks if s["agent_id"].startswith("person-")]
    agents = [s for s in subtasks if not s["agent_id"].startswith("person-")]
    assert people, "the plan has people's work"
    assert all(s["action"] == "human_task" for s in people)
    assert agents, "the plan has agents' work"
    assert "answered automatically (--people auto)" in captured.err
    summaries = [t for t in report["tasks"] if not t["subtasks"]]
    assert summaries, "level-2 summary tasks complete as milestones"
    for task in report["tasks"]:
        assert task["status"] == "COMPLETED"
    # a summary task finishes only after all its level-3 children
    assert_completed({**report, "tasks": [t for t in report["tasks"] if t["subtasks"]]})
