"""A plan written the way planners write (words for CSV operations, any document name, a rate as a phrase, a
rubric as a comma-separated string) runs to COMPLETED with the built-in agents."""

import json
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.cli import main
from planexe_ax.config import Settings
from tests.helpers.checks import assert_completed

pytestmark = [pytest.mark.slow, pytest.mark.nats]

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "planexe_ax" / "examples" / "website_refresh.json"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, nats_url: str, settings: Settings, database_url: str) -> Path:
    values = {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": database_url,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return settings.data_dir


def outputs(report: dict[str, Any]) -> dict[str, Any]:
    return {s["subtask_id"]: s["output"] for t in report["tasks"] for s in t["subtasks"]}


def test_the_four_shapes_of_the_issue_complete(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(EXAMPLE.read_text())
    params = {s["subtask_id"]: s["params"] for p in document["phases"] for t in p["tasks"] for s in t["subtasks"]}
    assert params["leads_create"]["operation"] == "create"
    assert params["agenda_doc"]["template"] == "Meeting agenda"
    assert params["quote_hourly"]["rate_structure"] == "$80/h"
    assert params["score_sites"]["scoring_rubric"] == "mobile friendly, SSL, contact form"

    code = main(["run", str(EXAMPLE), "--json", "--timeout", "60"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0, report
    assert_completed(report)
    out = outputs(report)
    assert [out[s]["operation"] for s in ("leads_create", "leads_add", "leads_fix")] == ["write", "append", "update"]
    assert out["agenda_doc"]["title"] == "Meeting agenda"
    assert (out["quote_hourly"]["total"], out["quote_hourly"]["basis"]) == (1920.0, "hourly")
    assert out["quote_fixed"]["basis"] == "fixed"
    assert out["score_read"]["rows"] == out["score_sites"]["qualified"] == 3
    folder = env / "outputs" / report["execution_id"]
    assert (folder / out["agenda_doc"]["file"]).read_text().startswith("# Meeting agenda\n\n## Attendees\n")
