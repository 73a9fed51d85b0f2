"""PlanExe run folders for tests: the small run under tests/fixtures always, the real samples when present.

The real samples (a few MB of PlanExe output) live outside the repository. They are found at
``$PLANEXE_SAMPLES_DIR`` when that is set (to any path: a path that does not exist means "none"), else at
``../shared/planexe-samples`` beside the repository. Tests parametrize over :data:`RUNS`, so a clone
anywhere runs every test on the fixture, and on the samples as well where they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "planexe_run"
SAMPLES_ENV = "PLANEXE_SAMPLES_DIR"


def samples_dir() -> Path:
    """Where the real PlanExe samples are looked for."""
    configured = os.environ.get(SAMPLES_ENV)
    return Path(configured) if configured else REPO.parent / "shared" / "planexe-samples"


SAMPLES_DIR = samples_dir()
SAMPLES: list[Path] = sorted(p for p in SAMPLES_DIR.iterdir() if p.is_dir()) if SAMPLES_DIR.is_dir() else []
RUNS: list[Path] = [FIXTURE, *SAMPLES]
"""Every run folder to test on: the fixture first."""


def sample(name: str) -> list[Path]:
    """The sample folder ``name`` as a one-item list, or an empty list without the samples."""
    return [p for p in SAMPLES if p.name == name]


def runs_param(runs: list[Path]) -> list[object]:
    """``runs`` as pytest params with the folder name as id."""
    return [pytest.param(run, id=run.name) for run in runs]


@dataclass(frozen=True)
class Repaired:
    """What a default import of ``run`` repairs, read off its files by hand.

    Attributes:
        run: The run folder.
        repairs: How many repairs the import makes.
        task_id: A level-2 task whose duration is -1 (unknown) and gets estimated.
        task_title: That task's title.
        unequal_lists: Dependency entries whose id and explanation lists differ in length.
    """

    run: Path
    repairs: int
    task_id: str
    task_title: str
    unequal_lists: int


@dataclass(frozen=True)
class Shown:
    """What ``plan show`` and ``plan validate`` print for ``run``, read off its files by hand.

    Attributes:
        run: The run folder.
        plan_id: The WBS root id (``wbs_level1.json``).
        phase: The name of a phase.
        leaf: A level-3 task as printed: "<title> [<first 8 of its id>] | role: <role>".
        risk_area: The area of a risk.
        baseline_days: The critical path of the baseline, in working days.
    """

    run: Path
    plan_id: str
    phase: str
    leaf: str
    risk_area: str
    baseline_days: int


REPAIRED = [
    Repaired(
        FIXTURE,
        repairs=2,  # task "Set Up Parts Inventory Tracking" and phase "Equip the Workshop" have -1 days
        task_id="34937758-4bbb-4473-94e3-d5d5c634548b",
        task_title="Set Up Parts Inventory Tracking",
        unequal_lists=1,  # "Fit Out the Workshop Floor": 2 ids, 1 explanation
    ),
    *(
        Repaired(run, 3, "128dec6e-8d59-4189-a461-63e92509ab1d", "Monitor System Performance and Uptime", 5)
        for run in sample("20251114_paperclip_automation")
    ),
]
SHOWN = [
    Shown(
        FIXTURE,
        plan_id="2286290b-6474-4f7e-8a1c-6815291bc338",
        phase="Secure the Workshop Space",
        leaf="Research Local Storefront Listings [6cd06618] | role: Project Manager",
        risk_area="Regulatory & Permitting",
        baseline_days=41,  # 8 + 10 + 15 + 6 + 2: assess, lease, permit, fit-out, opening
    ),
    *(
        Shown(
            run,
            plan_id="c0116ebd-d576-42fa-a84b-dfa64afc7411",
            phase="Establish Supply Chain Resilience",
            leaf="Collect Historical Shipping Data [9eb63024] | role: Project Manager",
            risk_area="Regulatory & Permitting",
            baseline_days=96,
        )
        for run in sample("20260215_nuuk_clay_workshop")
    ),
]
