"""``planexe-ax plan import|show|decompose|validate`` through ``cli.main``, on PlanExe runs (the fixture, and
the real samples when present)."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from planexe_ax.bus.plan import Plan
from planexe_ax.cli import example_plan_path, main
from planexe_ax.plans.importers import canonical_name, import_planexe_run
from tests.helpers.planexe_runs import FIXTURE, REPAIRED, RUNS, SHOWN, Repaired, Shown, runs_param, sample

MAIN_RUNS = runs_param([FIXTURE, *sample("20251114_paperclip_automation")])
CLAY_RUNS = runs_param([FIXTURE, *sample("20260215_nuuk_clay_workshop")])
Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def copy_without(run: Path, tmp_path: Path, *names: str) -> Path:
    dst = tmp_path / "run"
    dst.mkdir()
    for p in run.iterdir():
        if canonical_name(p.name) not in names:
            shutil.copyfile(p, dst / p.name)
    return dst


@pytest.mark.parametrize("folder", runs_param(RUNS))
def test_import_prints_the_summary_of_each_run(folder: Path, capsys: Capture) -> None:
    code, out, err = run(capsys, "import", str(folder))
    report = import_planexe_run(folder).report
    counts = report["counts"]
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("imported: ")
    assert f"  phases: {counts['phases']}" in lines
    assert any(ln.startswith(f"  tasks: {counts['tasks']} ({counts['executable_tasks']} executable") for ln in lines)
    assert any(ln.startswith(f"  dependencies: {counts['dependencies']} from the dependency file") for ln in lines)
    assert any(ln.startswith(f"  critical path: {report['critical_path_days']:g} days") for ln in lines)
    assert any(ln.startswith("  decomposition (rules): agents ") and "people" in ln for ln in lines)
    repairs = [ln.removeprefix("    repair: ") for ln in lines if ln.startswith("    repair: ")]
    assert repairs == report["repairs"]
    assert f"  repairs: {len(repairs)}" in lines


@pytest.mark.parametrize("folder", CLAY_RUNS)
def test_import_json_is_the_plan_with_its_report_and_runs_through_validate(
    folder: Path, tmp_path: Path, capsys: Capture
) -> None:
    code, out, _ = run(capsys, "import", str(folder), "--json")
    assert code == 0
    data = json.loads(out)
    plan = Plan.model_validate(data)
    report = data["metadata"]["import_report"]
    assert report["counts"]["tasks"] == len(plan.tasks())
    assert report["decomposer"] == "rules"
    assert report["decomposition"]["undecomposed"] == 0
    assert "baseline" in data["metadata"]
    assert all("from" in dep for dep in data["dependencies"])
    saved = tmp_path / "clay.json"
    saved.write_text(out)
    code, _, err = run(capsys, "validate", str(saved))
    assert code == 0, err
    assert f"valid: {plan.plan_id}" in err


@pytest.mark.parametrize("folder", MAIN_RUNS)
def test_sequential_siblings_chain_the_level_3_tasks(folder: Path, capsys: Capture) -> None:
    _, parallel, _ = run(capsys, "import", str(folder), "--json")
    _, sequential, _ = run(capsys, "import", str(folder), "--json", "--siblings", "sequential")
    reports = [json.loads(o)["metadata"]["import_report"] for o in (parallel, sequential)]
    assert [r["siblings"] for r in reports] == ["parallel", "sequential"]
    assert reports[1]["counts"]["structural_dependencies"] > reports[0]["counts"]["structural_dependencies"]
    _, out, _ = run(capsys, "import", str(folder), "--siblings", "sequential")
    assert "from the WBS (siblings sequential)" in out


@pytest.mark.parametrize("source", MAIN_RUNS)
def test_truncated_folder_names_the_missing_files(source: Path, tmp_path: Path, capsys: Capture) -> None:
    folder = copy_without(
        source, tmp_path, "task_durations.json", "wbs_level3.json", "wbs_project_level1_and_level2_and_level3.json"
    )
    code, out, err = run(capsys, "import", str(folder))
    assert code == 2
    assert out == ""
    assert "not a complete PlanExe run; missing:" in err
    assert "task_durations.json" in err
    assert "wbs_level3.json (or wbs_project_level1_and_level2_and_level3.json)" in err


@pytest.mark.parametrize("source", MAIN_RUNS)
def test_corrupt_json_names_the_file_line_and_column(source: Path, tmp_path: Path, capsys: Capture) -> None:
    folder = copy_without(source, tmp_path)
    (path,) = [p for p in folder.iterdir() if canonical_name(p.name) == "task_dependencies_raw.json"]
    path.write_text('{\n  "task_dependency_details": [\n    {"dependent_task_id": \n')
    code, _, err = run(capsys, "import", str(folder))
    assert code == 2
    assert f"{path.name}: invalid JSON at line 4 column 1" in err


@pytest.mark.parametrize("known", REPAIRED, ids=lambda known: known.run.name)
def test_strict_refuses_the_repairs(known: Repaired, capsys: Capture) -> None:
    code, out, err = run(capsys, "import", str(known.run), "--strict")
    assert code == 2
    assert out == ""
    assert f"strict import refuses {known.repairs} repair(s)" in err
    assert known.task_title in err
    code, _, err = run(capsys, "validate", str(known.run), "--strict")
    assert code == 2
    assert "strict import refuses" in err


def test_show_prints_the_example_plan(capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", str(example_plan_path()))
    assert code == 0
    assert "Phase Research & Lead Generation [phase_1]" in out
    assert "Identify 50+ dog breeders in CT/RI border [task_1_1]" in out
    assert "search_google_maps: Search Google Maps" in out
    assert "after: task_1_2" in out


def test_show_json_is_the_plan(capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", str(example_plan_path()), "--json")
    assert code == 0
    data = json.loads(out)
    assert data == json.loads(example_plan_path().read_text()) | data
    assert Plan.model_validate(data).plan_id == "prospect_dog_breeders_q1"


@pytest.mark.parametrize("known", SHOWN, ids=lambda known: known.run.name)
def test_show_prints_a_run_with_subtasks_risks_and_baseline(known: Shown, capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", str(known.run))
    assert code == 0
    assert f"Phase {known.phase}" in out
    assert known.leaf in out
    assert "[people] human_task" in out
    assert "Risks" in out
    assert known.risk_area in out
    assert f"Baseline: {known.baseline_days} working days; critical path: " in out


@pytest.mark.parametrize("folder", CLAY_RUNS)
def test_decompose_prints_actions_confidences_and_the_share(folder: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "decompose", str(folder))
    assert code == 0
    for action in ("search_google_maps", "draft_document", "human_task (people)"):
        assert action in out
    assert re.search(r"│\s+0\.\d\d\s+│", out), "each step's confidence is printed"
    assert "matched" in out
    summary = import_planexe_run(folder).report["decomposition"]
    assert f"Share: agents {summary['agent_share'] * 100:.1f}%, people {summary['human_share'] * 100:.1f}%" in out


@pytest.mark.parametrize("folder", CLAY_RUNS)
def test_decompose_with_fewer_capabilities_gives_people_more(folder: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "decompose", str(folder), "--json", "--capabilities", "draft_document")
    assert code == 0
    data = json.loads(out)
    actions = {s["action"] for t in data["tasks"] for s in t["subtasks"]}
    assert actions == {"draft_document", "human_task"}
    full = import_planexe_run(folder).report["decomposition"]
    assert data["summary"]["human_share"] > full["human_share"]


def test_decompose_redo_runs_the_rules_on_a_json_plan(capsys: Capture) -> None:
    code, out, _ = run(capsys, "decompose", str(example_plan_path()), "--json", "--redo")
    assert code == 0
    subs = [s for t in json.loads(out)["tasks"] for s in t["subtasks"]]
    assert all("decomposition_confidence" in s for s in subs)


def test_llm_decomposer_needs_a_base_url(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    monkeypatch.delenv("PLANEXE_LLM_BASE_URL", raising=False)
    code, _, err = run(capsys, "decompose", str(FIXTURE), "--decomposer", "llm")
    assert code == 2
    assert "PLANEXE_LLM_BASE_URL" in err


@pytest.mark.parametrize("known", SHOWN, ids=lambda known: known.run.name)
def test_validate_a_run_folder_and_its_zip(known: Shown, tmp_path: Path, capsys: Capture) -> None:
    code, _, err = run(capsys, "validate", str(known.run))
    assert code == 0
    assert err.startswith(f"valid: {known.plan_id}: ")
    archive = tmp_path / "run.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in known.run.iterdir():
            zf.write(p, f"{known.run.name}/{p.name}")
    code, _, err_zip = run(capsys, "validate", str(archive), "--siblings", "sequential")
    assert code == 0
    assert err_zip == err


def test_a_missing_plan_is_exit_2(tmp_path: Path, capsys: Capture) -> None:
    code, _, err = run(capsys, "show", str(tmp_path / "nope"))
    assert code == 2
    assert "no such file or folder" in err
