"""Read and check a plan: every problem becomes one line that names it and the ids involved.

All problems are reported at once: fields the format does not know (with the closest known name),
schema errors, unknown ids and cycles, and, given the actions' schemas, every subtask's params.
"""

from __future__ import annotations

import json
import types
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from planexe_ax.bus.plan import DependencyType, Plan
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.dag import find_cycle
from planexe_ax.plans.params import ParamsSchema, check_params
from planexe_ax.plans.problems import Locator, Problem, Problems, plan_error, suggestion


@dataclass(frozen=True)
class CheckedPlan:
    """A plan that passed every check, with the warnings found on the way."""

    plan: Plan
    warnings: list[Problem]


def check_plan_text(text: str, source: str = "plan", schemas: Mapping[str, ParamsSchema] | None = None) -> CheckedPlan:
    """Parse and check the JSON text of a plan, reporting every problem at once.

    Args:
        text: The plan document.
        source: How messages name the document (a path, ``plan``, ``upload``).
        schemas: Action -> params schema; ``None`` leaves params unchecked.

    Raises:
        PlanValidationError: one line per problem: malformed JSON (with line and column), unknown fields,
            schema errors, structural problems, params that do not fit their action.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanValidationError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise PlanValidationError(f"{source}: a plan is a JSON object, got {type(raw).__name__}")
    return check_plan_data(raw, source, schemas)


def check_plan_data(
    raw: dict[str, Any], source: str = "plan", schemas: Mapping[str, ParamsSchema] | None = None
) -> CheckedPlan:
    """:func:`check_plan_text` for a plan already parsed from JSON."""
    locate = Locator(raw)
    problems = Problems()
    problems.extend(unknown_fields(raw, locate))
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        problems.extend([_schema_problem(error, raw, locate) for error in exc.errors()])
        raise plan_error(source, problems.errors) from exc
    return check_plan(plan, source, schemas, problems)


def check_plan(
    plan: Plan, source: str = "plan", schemas: Mapping[str, ParamsSchema] | None = None, found: Problems | None = None
) -> CheckedPlan:
    """Check a schema-valid plan: structure, then params (with ``schemas``).

    Raises:
        PlanValidationError: one line per problem, including those already ``found``.
    """
    problems = found or Problems()
    problems.extend(structural_problems(plan))
    if schemas is not None:
        problems.extend(check_params(plan, schemas))
    problems.raise_errors(source)
    return CheckedPlan(plan, problems.warnings)


def parse_plan_text(text: str, source: str = "plan", schemas: Mapping[str, ParamsSchema] | None = None) -> Plan:
    """The plan of :func:`check_plan_text`, without its warnings."""
    return check_plan_text(text, source, schemas).plan


def load_plan_file(path: Path, schemas: Mapping[str, ParamsSchema] | None = None) -> CheckedPlan:
    """Read and check a plan JSON file; a missing or unreadable file is a PlanValidationError too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanValidationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PlanValidationError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    return check_plan_text(text, str(path), schemas)


def unknown_fields(raw: dict[str, Any], locate: Locator) -> list[Problem]:
    """Fields of the plan document that the plan format does not have, each with the closest known name."""
    problems = []
    for loc, name, known in _unknown(raw, Plan, ()):
        where, _, sub_id = locate.split(loc)
        hint = suggestion(name, known) or '; free-form data goes under "metadata"'
        problems.append(Problem(where, f'unknown field "{name}"{hint}', sub_id, field=name))
    return problems


def _unknown(raw: dict[str, Any], model: type[BaseModel], loc: tuple[str | int, ...]) -> Iterator[Any]:
    fields = dict(model.model_fields)
    fields.update({info.alias: info for info in model.model_fields.values() if info.alias})
    for key, value in raw.items():
        info = fields.get(key)
        if info is None:
            yield loc, key, sorted(fields)
            continue
        nested, many = _nested_model(info.annotation)
        if nested is None:
            continue
        items = enumerate(value) if many and isinstance(value, list) else [(None, value)]
        for index, item in items:
            if isinstance(item, dict):
                yield from _unknown(item, nested, (*loc, key) if index is None else (*loc, key, index))


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally, or as a list), and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _nested_model(arg)
            if found[0] is not None:
                return found
    if origin is list:
        inner, _ = _nested_model(get_args(annotation)[0])
        return inner, inner is not None
    return None, False


def _schema_problem(error: Any, raw: dict[str, Any], locate: Locator) -> Problem:
    loc = error["loc"]
    where, field, sub_id = locate.split(loc)
    if len(loc) == 3 and loc[0] == "dependencies" and loc[2] == "type" and isinstance(loc[1], int):
        dep = raw["dependencies"][loc[1]]
        expected = ", ".join(t.value for t in DependencyType)
        message = (
            f"unknown dependency type {error.get('input')!r} in dependency {dep.get('from')} -> {dep.get('to')}; "
            f"expected one of {expected}"
        )
        return Problem("", message, field="type")
    message = f"{field}: {error['msg']}" if field else str(error["msg"])
    return Problem(where, message, sub_id, field=field or None)


def validate_plan(plan: Plan, source: str = "plan") -> None:
    """Check ids, references and cycles of a schema-valid plan.

    Raises:
        PlanValidationError: naming every problem found and the ids involved, one line each.
    """
    problems = structural_problems(plan)
    if problems:
        raise plan_error(source, problems)


def structural_problems(plan: Plan) -> list[Problem]:
    """Duplicate ids, references to unknown tasks or subtasks, and cycles."""
    tasks = plan.tasks()
    found = _duplicates("phase id", [p.phase_id for p in plan.phases])
    found += _duplicates("task id", [t.task_id for t in tasks])
    found += _duplicates("subtask id", [s.subtask_id for t in tasks for s in t.subtasks])
    known = {t.task_id for t in tasks}
    for dep in plan.dependencies:
        for end in (dep.from_, dep.to):
            if end not in known:
                found.append(Problem("", f"dependency {dep.from_} -> {dep.to} names unknown task '{end}'", ids=(end,)))
    for task in tasks:
        for pre in task.prerequisites:
            if pre not in known:
                found.append(Problem("", f"task '{task.task_id}' has unknown prerequisite '{pre}'", ids=(pre,)))
        found += _subtask_problems(task.task_id, task.subtasks)
    if not found:
        edges = [(d.from_, d.to) for d in plan.all_dependencies()]
        cycle = find_cycle([t.task_id for t in tasks], edges)
        if cycle:
            found.append(Problem("", f"dependency cycle: {' -> '.join(cycle)}", ids=tuple(cycle[:-1])))
    return found


def _duplicates(what: str, ids: list[str]) -> list[Problem]:
    return [Problem("", f"duplicate {what} '{value}'", ids=(value,)) for value, n in Counter(ids).items() if n > 1]


def _subtask_problems(task_id: str, subtasks: Sequence[Any]) -> list[Problem]:
    ids = [s.subtask_id for s in subtasks]
    edges: list[tuple[str, str]] = []
    found = []
    for sub in subtasks:
        for dep in sub.dependencies or []:
            if dep not in ids:
                where = f"subtask '{sub.subtask_id}' depends on unknown subtask '{dep}'"
                found.append(Problem("", f"{where} (not in task '{task_id}')", sub.subtask_id, ids=(dep,)))
            else:
                edges.append((dep, sub.subtask_id))
    cycle = find_cycle(ids, edges)
    if cycle:
        loop = " -> ".join(cycle)
        found.append(Problem("", f"subtask dependency cycle in task '{task_id}': {loop}", ids=tuple(cycle)))
    return found
