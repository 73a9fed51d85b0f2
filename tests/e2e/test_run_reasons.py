"""Say why: `run --json` gives each subtask's error and attempts; the summary names tasks by title, with reasons."""

import json
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.cli import main
from planexe_ax.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.nats]

TITLE = "Email the shortlist to Carol"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, nats_url: str, settings: Settings, database_url: str) -> None:
    values = {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": database_url,
        "PLANEXE_SMTP_URL": "smtp://127.0.0.1:9",  # nothing listens there: every attempt fails, retryably
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def failing_plan(tmp_path: Path) -> Path:
    email = {"to": "carol@example.com", "subject": "Shortlist", "body": "Attached."}
    retry = {"max_attempts": 2, "initial_delay_s": 0}
    sub = {"subtask_id": "send", "action": "send_email", "params": email, "retry_policy": retry}
    note = {"subtask_id": "note", "action": "draft_document", "params": {"template": "Cover note"}}
    tasks = [
        {"task_id": "t_note", "title": "Write the cover note", "subtasks": [note]},
        {"task_id": "t_mail", "title": TITLE, "prerequisites": ["t_note"], "subtasks": [sub]},
    ]
    plan = {
        "plan_id": "reasons",
        "goal": "say why",
        "on_failure": "fail",
        "phases": [{"phase_id": "p", "name": "P", "tasks": tasks}],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def subtask(report: dict[str, Any], subtask_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for t in report["tasks"] for s in t["subtasks"] if s["subtask_id"] == subtask_id)
    return found


def test_run_json_gives_each_subtask_its_error_and_attempts(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(failing_plan(tmp_path)), "--json", "--timeout", "60"])
    report = json.loads(capsys.readouterr().out)

    assert code == 1
    assert report["status"] == "FAILED"
    assert "send" in report["reason"]
    sent = subtask(report, "send")
    assert (sent["status"], sent["attempts"]) == ("FAILED", 2)
    assert "SMTP 127.0.0.1:9 failed" in sent["error"]
    note = subtask(report, "note")
    assert (note["status"], note["attempts"], note["error"]) == ("COMPLETED", 1, None)
    assert [t["title"] for t in report["tasks"]] == ["Write the cover note", TITLE]


def test_the_summary_names_tasks_by_title_and_says_why_work_failed(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # a terminal wide enough that no cell of the table wraps
    code = main(["run", str(failing_plan(tmp_path)), "--timeout", "60"])
    out = " ".join(capsys.readouterr().out.split())

    assert code == 1
    assert "Write the cover note" in out
    assert "t_note" not in out
    assert f"FAILED {TITLE} / send (send_email, 2 attempts): RetryableError: SMTP 127.0.0.1:9 failed" in out
    assert "FAILED: subtask send failed after 2 attempt(s)" in out


def test_exec_status_and_list_read_the_same_reasons(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["run", str(failing_plan(tmp_path)), "--json", "--timeout", "60"]) == 1
    execution_id = json.loads(capsys.readouterr().out)["execution_id"]

    assert main(["exec", "status", execution_id, "--json"]) == 0
    assert subtask(json.loads(capsys.readouterr().out), "send")["attempts"] == 2
    monkeypatch.setenv("COLUMNS", "240")
    assert main(["exec", "status", execution_id]) == 0
    assert f"FAILED {TITLE} / send (send_email, 2 attempts)" in capsys.readouterr().out

    assert main(["exec", "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(i["execution_id"], i["status"], i["plan_id"]) for i in items] == [(execution_id, "FAILED", "reasons")]
    assert main(["exec", "list", "--status", "completed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == []
    assert main(["exec", "list", "--plan", "reasons"]) == 0
    listed = capsys.readouterr().out
    assert execution_id in listed
    assert "FAILED" in listed
