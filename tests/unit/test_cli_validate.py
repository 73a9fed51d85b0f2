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
    assert "tasks[1] (task_1_2): title: Field required" in err


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


def test_every_problem_is_named_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    task = plan["phases"][0]["tasks"][1]
    task["prerequisits"] = task.pop("prerequisites")
    task["subtasks"][1]["params"]["operation"] = "juggle"
    plan["phases"][2]["tasks"][0]["subtasks"][1]["params"]["rate_structure"] = {"hourly_rate": -5}
    plan["phases"][0]["tasks"][0]["subtasks"][0]["params"]["max_results"] = "many"
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert all(line.startswith("planexe-ax: ") for line in lines)
    assert 'tasks[1] (task_1_2): unknown field "prerequisits"; did you mean "prerequisites"?' in err
    assert "tasks[1] (task_1_2) subtask task_1_2_2: action manage_csv: params.operation: Input should be" in err
    assert "(got 'juggle')" in err
    assert "subtask task_1_1_1: action search_google_maps: params.max_results:" in err
    assert "action build_quote: params.rate_structure.hourly_rate: Input should be greater than or equal to 0" in err


def test_a_misspelt_param_is_an_error_an_unrelated_one_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = base_plan()
    params = plan["phases"][0]["tasks"][0]["subtasks"][0]["params"]
    params["max_result"] = params.pop("max_results")
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert 'params.max_result: unknown field "max_result"; did you mean "max_results"?' in err
    params["max_results"] = params.pop("max_result")
    params["mood"] = "cheerful"
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 0, err
    assert "warning:" in err
    assert "params.mood: not a parameter of search_google_maps, ignored" in err


def test_an_action_no_agent_offers_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = base_plan()
    plan["phases"][0]["tasks"][0]["subtasks"][0]["action"] = "fly_drone"
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 0, err
    assert "subtask task_1_1_1: no built-in or registered agent offers action 'fly_drone'" in err
    assert err.splitlines()[-1].startswith("valid: ")


def test_unknown_field_without_a_close_name_points_at_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = base_plan()
    plan["owner"] = "sales"
    plan["phases"][1]["tasks"][0]["subtasks"][0]["colour"] = "blue"
    plan["dependencies"][0]["lag_hour"] = 2
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 2
    assert 'plan.json: unknown field "owner"; free-form data goes under "metadata"' in err
    assert 'tasks[3] (task_2_1) subtask task_2_1_1: unknown field "colour"' in err
    assert 'dependencies[0] (task_1_2 -> task_1_3): unknown field "lag_hour"; did you mean "lag_hours"?' in err


def test_work_for_people_is_not_checked_against_agent_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = base_plan()
    sub = plan["phases"][0]["tasks"][0]["subtasks"][0]
    sub["human_required"] = True
    sub["params"] = {"max_results": "a few"}
    code, err = validate(write(tmp_path, plan), capsys)
    assert code == 0, err


def test_schema_actions_prints_each_built_in_action_with_its_accepted_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "schema", "--actions"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert len(schemas) == 10
    assert "upsert" in schemas["manage_csv"]["properties"]["operation"]["enum"]
    assert "$80/h" in schemas["build_quote"]["properties"]["rate_structure"]["examples"]
