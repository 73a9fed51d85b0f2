"""Read and check a plan: every problem becomes one line that names it and the ids involved."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planexe_ax.bus.plan import DependencyType, Plan
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.dag import find_cycle


def parse_plan_text(text: str, source: str = "plan") -> Plan:
    """Parse and validate the JSON text of a plan.

    Raises:
        PlanValidationError: on malformed JSON (with line and column), a schema error, or a structural problem.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanValidationError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise PlanValidationError(f"{source}: a plan is a JSON object, got {type(raw).__name__}")
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        raise PlanValidationError(f"{source}: {_first_error(exc, raw)}") from exc
    validate_plan(plan, source)
    return plan


def load_plan_file(path: Path) -> Plan:
    """Read a plan JSON file; a missing or unreadable file is a PlanValidationError too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanValidationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PlanValidationError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    return parse_plan_text(text, str(path))


def _first_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    error = exc.errors()[0]
    loc = error["loc"]
    if len(loc) == 3 and loc[0] == "dependencies" and loc[2] == "type" and isinstance(loc[1], int):
        dep = raw["dependencies"][loc[1]]
        expected = ", ".join(t.value for t in DependencyType)
        return (
            f"unknown dependency type {error.get('input')!r} in dependency {dep.get('from')} -> {dep.get('to')}; "
            f"expected one of {expected}"
        )
    where = ".".join(str(part) for part in loc) or "plan"
    return f"{where}: {error['msg']}"


def validate_plan(plan: Plan, source: str = "plan") -> None:
    """Check ids, references and cycles of a schema-valid plan.

    Raises:
        PlanValidationError: naming the first problem found and the ids involved.
    """
    tasks = plan.tasks()
    _no_duplicates("phase id", [p.phase_id for p in plan.phases], source)
    _no_duplicates("task id", [t.task_id for t in tasks], source)
    _no_duplicates("subtask id", [s.subtask_id for t in tasks for s in t.subtasks], source)
    known = {t.task_id for t in tasks}
    for dep in plan.dependencies:
        for end in (dep.from_, dep.to):
            if end not in known:
                raise PlanValidationError(
                    f"{source}: dependency {dep.from_} -> {dep.to} names unknown task '{end}'", [end]
                )
    for task in tasks:
        for pre in task.prerequisites:
            if pre not in known:
                raise PlanValidationError(f"{source}: task '{task.task_id}' has unknown prerequisite '{pre}'", [pre])
        _check_subtasks(task.task_id, task.subtasks, source)
    edges = [(d.from_, d.to) for d in plan.all_dependencies()]
    cycle = find_cycle([t.task_id for t in tasks], edges)
    if cycle:
        raise PlanValidationError(f"{source}: dependency cycle: {' -> '.join(cycle)}", cycle[:-1])


def _no_duplicates(what: str, ids: list[str], source: str) -> None:
    dupes = [value for value, count in Counter(ids).items() if count > 1]
    if dupes:
        raise PlanValidationError(f"{source}: duplicate {what} '{dupes[0]}'", dupes)


def _check_subtasks(task_id: str, subtasks: list[Any], source: str) -> None:
    ids = [s.subtask_id for s in subtasks]
    edges: list[tuple[str, str]] = []
    for sub in subtasks:
        for dep in sub.dependencies or []:
            if dep not in ids:
                where = f"subtask '{sub.subtask_id}' depends on unknown subtask '{dep}'"
                raise PlanValidationError(f"{source}: {where} (not in task '{task_id}')", [dep])
            edges.append((dep, sub.subtask_id))
    cycle = find_cycle(ids, edges)
    if cycle:
        loop = " -> ".join(cycle)
        raise PlanValidationError(f"{source}: subtask dependency cycle in task '{task_id}': {loop}", cycle)
