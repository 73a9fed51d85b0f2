"""The tests need nothing outside the repository: only tests/helpers/planexe_runs.py knows where the real
PlanExe samples are, and every test that uses them runs on tests/fixtures/planexe_run as well."""

from __future__ import annotations

import json
import re
from pathlib import Path

from planexe_ax.plans.importers import canonical_name
from tests.helpers.planexe_runs import FIXTURE, REPO, RUNS

TESTS = REPO / "tests"
LOCATOR = TESTS / "helpers" / "planexe_runs.py"


def test_only_the_locator_knows_where_the_samples_are() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (LOCATOR, Path(__file__)) and "planexe-samples" in path.read_text(encoding="utf-8")
    ]
    assert offenders == [], "use tests.helpers.planexe_runs (RUNS, sample()) so a clone anywhere skips nothing"


def test_no_test_is_skipped_for_want_of_the_samples() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted(TESTS.rglob("*.py"))
        if path != Path(__file__) and re.search(r"skip(if)?\((not )?SAMPLES", path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "parametrize over the fixture and the samples (tests.helpers.planexe_runs) instead"


def test_the_fixture_comes_first_in_every_run_list() -> None:
    assert RUNS[0] == FIXTURE


def test_the_fixture_is_a_planexe_run_in_the_numbered_format() -> None:
    names = sorted(p.name for p in FIXTURE.iterdir())
    assert all(name != canonical_name(name) for name in names), "PlanExe numbers every file it writes"
    for path in FIXTURE.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    assert {canonical_name(n) for n in names} >= {
        "wbs_level1.json",
        "wbs_level2.json",
        "wbs_level3.json",
        "wbs_project_level1_and_level2_and_level3.json",
        "task_dependencies_raw.json",
        "task_durations.json",
    }
