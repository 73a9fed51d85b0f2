"""Import of PlanExe runs (tests/fixtures/planexe_run, and the real samples when present): counts, DAG,
baseline, variants and failures."""

from __future__ import annotations

import json
import shutil
import zipfile
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest

from planexe_ax.bus.plan import Plan
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.dag import topological_order
from planexe_ax.plans.importers import (
    ImportResult,
    PlanImportError,
    canonical_name,
    import_planexe_run,
    load_plan_source,
)
from planexe_ax.plans.validation import validate_plan
from tests.helpers.planexe_runs import FIXTURE, REPAIRED, RUNS, Repaired, runs_param, sample

Siblings = Literal["parallel", "sequential"]
MAIN_RUNS = runs_param([FIXTURE, *sample("20251114_paperclip_automation")])
"""The runs the variant and failure tests copy and edit: the fixture, and the main sample when present."""


def raw(folder: Path, name: str) -> Any:
    (path,) = [p for p in folder.iterdir() if canonical_name(p.name) == name]
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def imported(run: Path, siblings: Siblings = "parallel") -> ImportResult:
    return import_planexe_run(run, siblings=siblings)


def comparable(plan: Plan) -> dict[str, Any]:
    data = plan.model_dump(mode="json")
    data["metadata"]["import_report"].pop("source")
    data["metadata"]["import_report"].pop("files_used")
    return data


def copy_renamed(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        shutil.copyfile(p, dst / canonical_name(p.name))
    return dst


def longest_path_days(level2: list[str], pairs: set[tuple[str, str]], days: dict[str, float]) -> float:
    """Independent of the importer: the longest chain of the dependency file over level-2 durations."""
    finish: dict[str, float] = {}

    def fin(t: str) -> float:
        if t not in finish:
            finish[t] = days[t] + max((fin(a) for a, b in pairs if b == t), default=0.0)
        return finish[t]

    return max(fin(t) for t in level2)


@pytest.mark.parametrize("run", runs_param(RUNS))
def test_counts_match_the_files(run: Path) -> None:
    folder = run
    level2, level3 = raw(folder, "wbs_level2.json"), raw(folder, "wbs_level3.json")
    deps = raw(folder, "task_dependencies_raw.json")["task_dependency_details"]
    pairs = {(d, e["dependent_task_id"]) for e in deps for d in e["depends_on_task_id_list"]}
    plan = imported(run).plan
    assert len(plan.phases) == len(level2)
    assert [p.phase_id for p in plan.phases] == [p["id"] for p in level2]
    assert len(plan.tasks()) == sum(len(p["subtasks"]) for p in level2) + len(level3)
    assert {(d.from_, d.to) for d in plan.dependencies} == pairs
    assert len(plan.dependencies) == len(pairs)
    assert len(plan.risks) == len(raw(folder, "identify_risks_raw.json")["risks"])
    by_id = {t.task_id: t for t in plan.tasks()}
    for leaf in level3:
        assert by_id[leaf["id"]].parent_id == leaf["parent_id"]
        assert by_id[leaf["id"]].title == leaf["name"]
    # structure: each summary waits on its children, each child inherits its parent's dependencies.
    for leaf in level3:
        assert leaf["id"] in by_id[leaf["parent_id"]].prerequisites
        inherited = {a for a, b in pairs if b == leaf["parent_id"]}
        assert set(by_id[leaf["id"]].prerequisites) == inherited
    report = imported(run).report
    assert report["counts"]["dependencies"] == len(pairs)
    assert report["start_time"] == raw(folder, "start_time.json")["server_iso_utc"].replace("Z", "+00:00")
    assert report["go_no_go"]["verdict"] in {"go", "go_with_caution", "no_go"}


@pytest.mark.parametrize("run", runs_param(RUNS))
def test_dag_is_acyclic_and_resolves(run: Path) -> None:
    plan = imported(run).plan
    ids = [t.task_id for t in plan.tasks()]
    edges = [(d.from_, d.to) for d in plan.all_dependencies()]
    assert {e for edge in edges for e in edge} <= set(ids)
    order = topological_order(ids, edges)
    position = {t: i for i, t in enumerate(order)}
    assert all(position[a] < position[b] for a, b in edges)
    validate_plan(plan, run.name)


@pytest.mark.parametrize("run", runs_param(RUNS))
@pytest.mark.parametrize("siblings", ["parallel", "sequential"])
def test_critical_path_is_what_the_durations_imply(run: Path, siblings: Siblings) -> None:
    folder = run
    level2 = [s["id"] for p in raw(folder, "wbs_level2.json") for s in p["subtasks"]]
    deps = raw(folder, "task_dependencies_raw.json")["task_dependency_details"]
    pairs = {(d, e["dependent_task_id"]) for e in deps for d in e["depends_on_task_id_list"]}
    given = {d["task_id"]: d["days_realistic"] for d in raw(folder, "task_durations.json")}
    result = imported(run, siblings)
    plan = result.plan
    by_id = {t.task_id: t for t in plan.tasks()}
    # unknown (-1) durations are repaired; take the estimate the import reports for those only.
    days = {t: float(given[t]) if given[t] > 0 else float(by_id[t].days_realistic or 0) for t in level2}
    repaired = [t for t in level2 if given[t] <= 0]
    assert all(any(t in line for line in result.repairs) for t in repaired)
    base = plan.metadata["baseline"]
    assert base["total_days"] == pytest.approx(longest_path_days(level2, pairs, days))
    assert result.report["critical_path_days"] == pytest.approx(base["total_days"])
    path = base["critical_path"]
    assert path
    assert base["tasks"][path[-1]]["earliest_finish"] == pytest.approx(base["total_days"])
    assert all(base["tasks"][t]["slack"] == pytest.approx(0) for t in path)
    for t in plan.tasks():
        for pre in t.prerequisites:
            assert base["tasks"][t.task_id]["earliest_start"] >= base["tasks"][pre]["earliest_finish"] - 1e-9
    # a summary spans its children: it finishes when the last child finishes.
    for t in plan.tasks():
        kids = [k for k in plan.tasks() if k.parent_id == t.task_id]
        if kids:
            last = max(base["tasks"][k.task_id]["earliest_finish"] for k in kids)
            assert base["tasks"][t.task_id]["earliest_finish"] == pytest.approx(last)


@pytest.mark.parametrize("run", runs_param(RUNS))
def test_every_executable_task_is_decomposed(run: Path) -> None:
    plan = imported(run).plan
    parents = {t.parent_id for t in plan.tasks()}
    for task in plan.tasks():
        if task.task_id in parents:
            assert task.subtasks == []
            continue
        assert task.subtasks
        for sub in task.subtasks:
            assert sub.decomposition_confidence is not None
            assert sub.decomposition_reason
    share = imported(run).report["decomposition"]
    assert share["undecomposed"] == 0
    assert share["agent_share"] + share["human_share"] == pytest.approx(1, abs=0.002)


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_renamed_copy_imports_identically(run: Path, tmp_path: Path) -> None:
    copy = copy_renamed(run, tmp_path / "run")
    assert not any(p.name[0].isdigit() for p in copy.iterdir())
    result = import_planexe_run(copy)
    assert comparable(result.plan) == comparable(imported(run).plan)
    assert result.repairs == imported(run).repairs


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_zip_with_a_folder_inside_imports_identically(run: Path, tmp_path: Path) -> None:
    archive = tmp_path / "run.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(run.iterdir()):
            zf.write(p, f"{run.name}/{p.name}")
        zf.writestr(f"__MACOSX/{run.name}/._018-5-wbs_level2.json", b"\x00\x05junk")
        zf.writestr(f"{run.name}/.DS_Store", b"\x00junk")
    result = load_plan_source(archive)
    assert comparable(result.plan) == comparable(imported(run).plan)
    assert f"{run.name}/018-5-wbs_level2.json" in result.report["files_used"]


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_truncated_copy_lists_the_missing_files(run: Path, tmp_path: Path) -> None:
    copy = copy_renamed(run, tmp_path / "run")
    for name in (
        "wbs_level2.json",
        "wbs_level3.json",
        "wbs_project_level1_and_level2_and_level3.json",
        "task_durations.json",
    ):
        (copy / name).unlink()
    with pytest.raises(PlanImportError, match="missing") as info:
        load_plan_source(copy)
    message = str(info.value)
    for name in ("wbs_level2.json", "wbs_level3.json", "task_durations.json"):
        assert name in message
    assert "wbs_level1.json " not in message.split("missing:")[1]


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_missing_flat_files_fall_back_to_the_full_tree(run: Path, tmp_path: Path) -> None:
    copy = copy_renamed(run, tmp_path / "run")
    (copy / "wbs_level3.json").unlink()
    result = import_planexe_run(copy)
    flat = imported(run).plan
    assert [t.task_id for t in result.plan.tasks()] == [t.task_id for t in flat.tasks()]
    assert [t.title for t in result.plan.tasks()] == [t.title for t in flat.tasks()]
    assert result.plan.dependencies == flat.dependencies
    assert result.plan.metadata["baseline"]["total_days"] == flat.metadata["baseline"]["total_days"]


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_corrupt_json_names_the_file_line_and_column(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    target = copy / "021-task_dependencies_raw.json"
    target.write_text(target.read_text(encoding="utf-8")[:300], encoding="utf-8")
    with pytest.raises(PlanImportError, match=r"021-task_dependencies_raw\.json: invalid JSON at line \d+ column \d+"):
        import_planexe_run(copy)


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_wrong_shape_names_the_file(run: Path, tmp_path: Path) -> None:
    copy = copy_renamed(run, tmp_path / "run")
    (copy / "wbs_level2.json").write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(PlanImportError, match=r"wbs_level2\.json: expected a list of phases"):
        import_planexe_run(copy)


@pytest.mark.parametrize("known", REPAIRED, ids=lambda known: known.run.name)
def test_strict_refuses_a_run_that_needs_repairs(known: Repaired) -> None:
    result = imported(known.run)
    assert len(result.repairs) == known.repairs
    assert any(known.task_id in line and "estimated" in line for line in result.repairs)
    with pytest.raises(PlanValidationError, match=f"strict import refuses {known.repairs} repair") as info:
        import_planexe_run(known.run, strict=True)
    assert known.task_id in str(info.value)
    assert result.plan.metadata["import_report"]["repairs"] == result.repairs


@pytest.mark.parametrize("run", runs_param(RUNS))
def test_a_run_with_every_duration_known_passes_strict(run: Path, tmp_path: Path) -> None:
    copy = copy_renamed(run, tmp_path / "run")
    path = copy / "task_durations.json"
    durations = json.loads(path.read_text(encoding="utf-8"))
    for item in durations:
        for key in ("days_min", "days_realistic", "days_max"):
            if item[key] <= 0:
                item[key] = 5
    path.write_text(json.dumps(durations), encoding="utf-8")
    result = import_planexe_run(copy, strict=True)
    assert result.repairs == []


@pytest.mark.parametrize("known", REPAIRED, ids=lambda known: known.run.name)
def test_unequal_list_lengths_are_read(known: Repaired) -> None:
    notes = imported(known.run).report["notes"]
    assert sum("explanations" in n for n in notes) == known.unequal_lists


def _edit_dependencies(copy: Path, edit: Any) -> None:
    path = copy / "task_dependencies_raw.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data["task_dependency_details"])
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_cycle_and_unknown_id_are_repaired(run: Path, tmp_path: Path) -> None:
    copy = copy_renamed(run, tmp_path / "run")
    first = imported(run).plan.dependencies[0]

    def edit(details: list[dict[str, Any]]) -> None:
        details.append(
            {
                "dependent_task_id": first.from_,
                "depends_on_task_id_list": [first.to, "no-such-id"],
                "depends_on_task_explanation_list": [],
            }
        )

    _edit_dependencies(copy, edit)
    result = import_planexe_run(copy)
    assert any(f"{first.to} -> {first.from_} closes the cycle" in r for r in result.repairs)
    assert any("unknown id no-such-id; dropped" in r for r in result.repairs)
    assert result.plan.dependencies == imported(run).plan.dependencies
    assert result.plan.metadata["import_report"]["repairs"] == result.repairs
    with pytest.raises(PlanValidationError, match="closes the cycle"):
        import_planexe_run(copy, strict=True)


def test_a_dependency_on_a_phase_stands_for_its_tasks(tmp_path: Path) -> None:
    copy = copy_renamed(FIXTURE, tmp_path / "run")
    plan = imported(FIXTURE).plan
    first, last = plan.phases[0], plan.phases[-1]
    level2 = [t.task_id for t in first.tasks if t.parent_id is None]
    opening = [t for t in last.tasks if t.parent_id is None][-1]

    def edit(details: list[dict[str, Any]]) -> None:
        details.append(
            {
                "dependent_task_id": opening.task_id,
                "depends_on_task_id_list": [first.phase_id],
                "depends_on_task_explanation_list": ["The opening waits for the whole first phase."],
            }
        )

    _edit_dependencies(copy, edit)
    result = import_planexe_run(copy)
    assert any(f"{first.phase_id} is a phase; used its tasks instead" in r for r in result.repairs)
    added = {(d.from_, d.to) for d in result.plan.dependencies} - {(d.from_, d.to) for d in plan.dependencies}
    assert added == {(task_id, opening.task_id) for task_id in level2}


def test_roles_come_from_team_md_without_the_team_json(tmp_path: Path) -> None:
    copy = copy_renamed(FIXTURE, tmp_path / "run")
    (copy / "enrich_team_members_environment_info.json").unlink()
    roles = import_planexe_run(copy).plan.roles_required
    assert roles == imported(FIXTURE).plan.roles_required
    assert roles[:4] == ["Project Manager", "Bicycle Mechanic", "Volunteer Coordinator", "Procurement Coordinator"]


@pytest.mark.parametrize("run", MAIN_RUNS)
def test_sequential_siblings_chain_the_children(run: Path) -> None:
    plan = imported(run, "sequential").plan
    tasks = plan.tasks()
    parent = tasks[0]
    kids = [t for t in tasks if t.parent_id == parent.task_id]
    assert len(kids) > 1
    assert all(kids[i - 1].task_id in kids[i].prerequisites for i in range(1, len(kids)))
    assert sum(k.days_realistic or 0 for k in kids) == pytest.approx(parent.days_realistic or 0)


def test_json_source_is_not_ours(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError):
        load_plan_source(tmp_path / "plan.json")


def test_missing_path_and_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(PlanImportError, match="no such file or folder"):
        load_plan_source(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(PlanImportError, match="not a PlanExe run folder"):
        load_plan_source(tmp_path / "x.txt")
    with pytest.raises(PlanImportError, match=r"missing: wbs_level1\.json"):
        load_plan_source(tmp_path)


def test_canonical_name() -> None:
    assert canonical_name("018-5-wbs_level2.json") == "wbs_level2.json"
    assert canonical_name("019-wbs_project_level1_and_level2.json") == "wbs_project_level1_and_level2.json"
    assert canonical_name("022-1-1-task_durations_raw.json") == "task_durations_raw.json"
    assert canonical_name("wbs_level2.json") == "wbs_level2.json"
