"""How well the rule decomposer's actions match the meaning of tasks, against tasks labelled by hand.

``tests/fixtures/decomposition_labels.json`` holds tasks of the four PlanExe samples with the actions an
agent could fairly do as that task's work (empty: a person's work). A proposed action counts as right
when it is among the task's labels; precision and recall are per action.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planexe_ax.bus import Plan, Task
from planexe_ax.plans.decompose import RuleBasedDecomposer
from planexe_ax.plans.importers import import_planexe_run

LABELS = Path(__file__).resolve().parents[1] / "fixtures" / "decomposition_labels.json"
FIXTURE_LABELS = Path(__file__).resolve().parents[1] / "fixtures" / "planexe_run_labels.json"
"""Every executable task of tests/fixtures/planexe_run, labelled the same way."""
PERSON = "person"


@dataclass(frozen=True)
class Labelled:
    """One labelled task: where it comes from, its title and the actions that fit it."""

    sample: str
    task_id: str
    title: str
    expected: frozenset[str]


@dataclass(frozen=True)
class Score:
    """Counts and ratios of one action (or of ``person``: tasks given to people only)."""

    action: str
    right: int
    wrong: int
    missed: int

    @property
    def precision(self) -> float:
        """Of the tasks given this action, the share where it fits (1.0 when never given)."""
        given = self.right + self.wrong
        return self.right / given if given else 1.0

    @property
    def recall(self) -> float:
        """Of the tasks this action fits, the share given it (1.0 when it fits none)."""
        fits = self.right + self.missed
        return self.right / fits if fits else 1.0


def labelled(path: Path = LABELS) -> list[Labelled]:
    """The labelled tasks of ``path``, in file order."""
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["tasks"]
    return [Labelled(r["sample"], r["task_id"], r["title"], frozenset(r["expected"])) for r in rows]


def title_only(item: Labelled) -> tuple[Task, Plan]:
    """The task as its title alone, in a one-task plan with a start time (so meetings have a date)."""
    task = Task(task_id="t1", title=item.title)
    phase = {"phase_id": "p", "name": "Work", "tasks": [task.model_dump()]}
    start = datetime(2026, 1, 5, tzinfo=UTC)
    plan = Plan.model_validate({"plan_id": "labelled", "goal": item.title, "start_time": start, "phases": [phase]})
    return task, plan


def proposed(task: Task, plan: Plan) -> frozenset[str]:
    """The agent actions the rule decomposer gives ``task``."""
    return frozenset(s.action for s in RuleBasedDecomposer().decompose_task(task, plan) if not s.human_required)


def scores(items: Iterable[Labelled], predict: Callable[[Labelled], frozenset[str]]) -> dict[str, Score]:
    """Precision and recall per action, and for ``person`` (no agent action given, none expected)."""
    counts: dict[str, list[int]] = {}
    for item in items:
        got = predict(item)
        for action in got | item.expected:
            right, wrong, missed = counts.setdefault(action, [0, 0, 0])
            counts[action] = [right + (action in got and action in item.expected),
                              wrong + (action in got and action not in item.expected),
                              missed + (action not in got and action in item.expected)]  # fmt: skip
        person = counts.setdefault(PERSON, [0, 0, 0])
        person[0] += not got and not item.expected
        person[1] += not got and bool(item.expected)
        person[2] += bool(got) and not item.expected
    return {action: Score(action, *c) for action, c in sorted(counts.items())}


def table(found: dict[str, Score]) -> str:
    """The scores as lines: action, right, wrong, missed, precision, recall."""
    head = f"{'action':<26}{'right':>6}{'wrong':>6}{'missed':>7}{'precision':>10}{'recall':>8}"
    rows = [
        f"{s.action:<26}{s.right:>6}{s.wrong:>6}{s.missed:>7}{s.precision:>10.2f}{s.recall:>8.2f}"
        for s in found.values()
    ]
    return "\n".join([head, *rows])


def whole_tasks(samples: Path) -> Callable[[Labelled], frozenset[str]]:
    """A predictor that decomposes each labelled task as its run has it (description, roles, schedule).

    Args:
        samples: The folder that holds the run folders the labels name (``Labelled.sample``).
    """
    plans: dict[str, Plan] = {}

    def predict(item: Labelled) -> frozenset[str]:
        if item.sample not in plans:
            plans[item.sample] = import_planexe_run(samples / item.sample).plan
        plan = plans[item.sample]
        task = next(t for t in plan.tasks() if t.task_id == item.task_id)
        return proposed(task, plan)

    return predict
