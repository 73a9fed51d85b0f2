"""Check every subtask's ``params`` against its action's parameter schema, before anything runs.

Pure: the caller gives the schemas, a mapping action -> schema, where a schema is either a pydantic
params model (the built-in actions, checked offline) or a JSON schema (from a registered agent's
card, checked with ``jsonschema``). Work a person does (``human_required``) is not checked: no
agent receives its params.

A field the schema does not name is an error when it is close to one it names (a misspelling
loses the value silently) and a warning otherwise (the action ignores it). An action no schema
knows is a warning: its agent may join later, and at run time it waits as any unserved action does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ValidationError

from planexe_ax.bus import CapabilityCard
from planexe_ax.bus.plan import Plan, Subtask
from planexe_ax.plans.problems import Problem, dotted, suggestion

ParamsSchema = type[BaseModel] | Mapping[str, Any]
"""A pydantic params model, or the JSON schema of the params (``CapabilityCard.params_schema``)."""

FieldError = tuple[str, str]
"""(field path, what is expected)."""


def action_schemas(
    builtin: Mapping[str, ParamsSchema], capabilities: Iterable[CapabilityCard]
) -> dict[str, ParamsSchema]:
    """The schemas to check with: the built-in actions' models, and the agent cards' JSON schemas for the others.

    Args:
        builtin: Action -> params model of the built-in actions.
        capabilities: The capabilities of the registered agents' cards; when several offer an action, the
            first one's schema is used.
    """
    found: dict[str, ParamsSchema] = {}
    for cap in capabilities:
        found.setdefault(cap.action, cap.params_schema)
    return {**found, **builtin}


def check_params(plan: Plan, schemas: Mapping[str, ParamsSchema]) -> list[Problem]:
    """Every params problem of ``plan``: errors, and warnings for actions no schema knows.

    Args:
        plan: A plan that passed the structural checks.
        schemas: Action -> params schema.

    Returns:
        Problems in plan order; each error names the subtask, its action, the field and what is expected.
    """
    checkers: dict[str, _Checker] = {}
    problems: list[Problem] = []
    for index, task in enumerate(plan.tasks()):
        where = f"tasks[{index}] ({task.task_id})"
        for sub in task.subtasks:
            if task.human_required or sub.human_required:
                continue
            schema = schemas.get(sub.action)
            if schema is None:
                problems.append(_unknown_action(where, sub))
                continue
            checker = checkers.get(sub.action) or checkers.setdefault(sub.action, _Checker.of(schema))
            problems.extend(checker.problems(f"{where} subtask {sub.subtask_id}", sub, task.task_id))
    return problems


def check_subtask_params(
    subtask_id: str, action: str, params: dict[str, Any], schemas: Mapping[str, ParamsSchema]
) -> list[Problem]:
    """The params errors of one subtask's new ``params`` (a person's retry), as ``check_params`` finds them.

    Returns:
        Errors only, each naming the subtask, the action, the field and what is expected; none when no
        schema knows the action (its agent checks what it gets).
    """
    schema = schemas.get(action)
    if schema is None:
        return []
    sub = Subtask(subtask_id=subtask_id, action=action, params=params)
    found = _Checker.of(schema).problems(f"subtask {subtask_id}", sub, "")
    return [problem for problem in found if not problem.warning]


def _unknown_action(where: str, sub: Subtask) -> Problem:
    message = (
        f"no built-in or registered agent offers action {sub.action!r}; its params are not checked, "
        "and it waits for an agent that offers it"
    )
    return Problem(f"{where} subtask {sub.subtask_id}", message, sub.subtask_id, sub.action, warning=True)


class _Checker:
    """Params checks for one action: field errors from the schema, and fields the schema does not name."""

    def __init__(self, known: frozenset[str] | None, validate: Any) -> None:
        self.known = known
        self.validate = validate

    @classmethod
    def of(cls, schema: ParamsSchema) -> _Checker:
        if isinstance(schema, type):
            return cls(_model_fields(schema), lambda params: _pydantic_errors(schema, params))
        validator = _json_validator(schema)
        if validator is None:
            return cls(None, lambda params: [("", "the agent card's params schema is not a valid JSON schema")])
        props = schema.get("properties")
        known = frozenset(props) if isinstance(props, dict) else None
        return cls(known, lambda params: list(_json_errors(validator, params)))

    def problems(self, where: str, sub: Subtask, task_id: str) -> Iterator[Problem]:
        def problem(name: str, message: str, warning: bool = False) -> Problem:
            text = f"action {sub.action}: {name + ': ' if name else ''}{message}"
            return Problem(where, text, sub.subtask_id, sub.action, name or None, warning, (task_id, sub.subtask_id))

        for name, expected in self.validate(sub.params):
            yield problem(f"params.{name}" if name else "params", expected)
        for name in sorted(set(sub.params) - (self.known or set(sub.params))):
            hint = suggestion(name, self.known or ())
            if hint:
                yield problem(f"params.{name}", f'unknown field "{name}"{hint}')
            else:
                known = ", ".join(sorted(self.known or ()))
                yield problem(f"params.{name}", f"not a parameter of {sub.action}, ignored (it takes {known})", True)


def _model_fields(model: type[BaseModel]) -> frozenset[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return frozenset(names)


def _pydantic_errors(model: type[BaseModel], params: dict[str, Any]) -> list[FieldError]:
    try:
        model.model_validate(params)
    except ValidationError as exc:
        return [(dotted(e["loc"]), _expected(e["msg"], e["type"], e.get("input"))) for e in exc.errors()]
    return []


def _expected(msg: str, kind: str, given: Any) -> str:
    if kind == "missing":
        return "required, missing"
    if isinstance(given, str | int | float | bool):
        return f"{msg} (got {given!r:.80})"
    return msg


def _json_validator(schema: Mapping[str, Any]) -> Validator | None:
    try:
        document = dict(schema)
        cls = validator_for(document, default=Draft202012Validator)
        cls.check_schema(document)
    except SchemaError:
        return None
    return cls(document)


def _json_errors(validator: Validator, params: dict[str, Any]) -> Iterator[FieldError]:
    for error in sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        required = error.validator_value
        if error.validator == "required" and isinstance(error.instance, dict) and isinstance(required, list):
            missing = [name for name in required if name not in error.instance]
            for name in missing:
                yield dotted((*path, name)), "required, missing"
            continue
        yield dotted(tuple(path)), error.message
