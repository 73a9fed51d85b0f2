import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.cli import example_plan_path, main


def write(tmp_path: Path, data: object, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def base_plan() -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(example_plan_path().read_text())
    return plan


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["plan", "validate", str(path)])
    err = capsys.readouterr().err.strip()
    return code, err


def test_the_example_plan_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = validate(example_plan_path(), capsys)
    assert code == 0
    assert "prospect_dog_breeders_q1: 8 tasks" in err


def test_cycle_lists_the_tasks_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["dependencies"].append({"from": "task_3_2", "to": "task_1_3"})
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "dependency cycle: task_1_3 -> task_2_1 -> " in err
    assert "task_3_2 -> task_1_3" in err


def test_dependency_on_unknown_task_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["dependencies"].append({"from": "task_9_9", "to": "task_1_3"})
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert "unknown task 'task_9_9'" in err


def test_prerequisite_on_unknown_task_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["phases"][0]["tasks"][0]["prerequisites"] = ["ghost"]
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert "task 'task_1_1' has unknown prerequisite 'ghost'" in err


def test_duplicate_task_id_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["phases"][1]["tasks"][0]["task_id"] = "task_1_1"
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert "duplicate task id 'task_1_1'" in err


def test_duplicate_subtask_id_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["phases"][2]["tasks"][0]["subtasks"][0]["subtask_id"] = "task_1_1_1"
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert "duplicate subtask id 'task_1_1_1'" in err


def test_malformed_json_gives_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = validate(write(tmp_path, '{\n  "plan_id": "p",\n  "goal": oops\n}'), capsys)
    assert code == 2
    assert "invalid JSON at line 3 column 11" in err


def test_unknown_dependency_type_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["dependencies"][0]["type"] = "whenever"
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert "unknown dependency type 'whenever' in dependency task_1_2 -> task_1_3" in err
    assert "finish_to_start" in err


def test_missing_field_names_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    del plan["phases"][0]["tasks"][1]["title"]
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert "phases.0.tasks.1.title: Field required" in err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = validate(tmp_path / "nope.json", capsys)
    assert code == 2
    assert "no such file or folder" in err


def test_schema_is_printed_as_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Plan"
    assert "finish_to_start" in json.dumps(schema)


def test_the_installed_command_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[1, 2")
    proc = subprocess.run(
        [sys.executable, "-m", "planexe_ax", "plan", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "invalid JSON" in proc.stderr
