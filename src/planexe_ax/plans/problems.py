"""Problems found in a plan, each on one line that says where it is, and what a person can act on.

A location reads like ``tasks[3] (t_x)`` or ``tasks[3] (t_x) subtask s2``: the task's place among all
the plan's tasks (in phase order) and its id, so both a reader of the file and a reader of the ids
find it.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from planexe_ax.errors import PlanValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan (or, with ``warning``, worth knowing before it runs).

    Attributes:
        where: The location, e.g. ``tasks[3] (t_x) subtask s2``; empty for the plan itself.
        message: What is wrong and what is expected.
        subtask_id: The subtask involved, if any.
        action: The subtask's action, for a params problem.
        field: The field involved (``params.operation``, ``prerequisites``), if any.
        warning: True when the plan can run anyway.
        ids: Task or subtask ids involved.
    """

    where: str
    message: str
    subtask_id: str | None = None
    action: str | None = None
    field: str | None = None
    warning: bool = False
    ids: tuple[str, ...] = ()

    def line(self) -> str:
        """The problem as one line: ``<where>: <message>``."""
        return f"{self.where}: {self.message}" if self.where else self.message

    def as_json(self) -> dict[str, Any]:
        """The problem as JSON for the HTTP API."""
        data: dict[str, Any] = {"where": self.where, "message": self.message, "line": self.line()}
        data.update({k: v for k, v in (("subtask_id", self.subtask_id), ("action", self.action)) if v})
        if self.field:
            data["field"] = self.field
        return data


@dataclass
class Problems:
    """Problems collected over every check, so that a plan's author sees them all at once."""

    items: list[Problem] = field(default_factory=list)

    def extend(self, problems: Sequence[Problem]) -> None:
        """Add ``problems``."""
        self.items.extend(problems)

    @property
    def errors(self) -> list[Problem]:
        """The problems that stop the plan."""
        return [p for p in self.items if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        """The problems worth knowing that do not stop the plan."""
        return [p for p in self.items if p.warning]

    def raise_errors(self, source: str) -> None:
        """Raise the errors, if any, as one :class:`PlanValidationError`, one line per error.

        Raises:
            PlanValidationError: Its message has a line ``<source>: <problem>`` per error; ``problems``
                holds them as :class:`Problem`.
        """
        errors = self.errors
        if errors:
            raise plan_error(source, errors)


def plan_error(source: str, errors: Sequence[Problem]) -> PlanValidationError:
    """A :class:`PlanValidationError` that names every problem of ``errors`` on its own line."""
    ids = [i for problem in errors for i in problem.ids]
    return PlanValidationError("\n".join(f"{source}: {p.line()}" for p in errors), ids, errors)


def suggestion(name: str, known: Collection[str]) -> str:
    """``; did you mean "x"?`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f'; did you mean "{close[0]}"?' if close else ""


class Locator:
    """Names places in a plan document from the paths pydantic and the checks use.

    Args:
        raw: The plan as parsed JSON (ids are read from it, so a plan that failed validation is named too).
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self._task_index: dict[tuple[int, int], int] = {}
        count = 0
        for p, phase in enumerate(_list(raw.get("phases"))):
            for t, _ in enumerate(_list(phase.get("tasks") if isinstance(phase, dict) else None)):
                self._task_index[(p, t)] = count
                count += 1

    def split(self, loc: Sequence[str | int]) -> tuple[str, str, str | None]:
        """The place (``tasks[3] (t_x)``), the rest of the path as a field name, and the subtask id if any."""
        path = list(loc)
        if len(path) >= 2 and path[0] == "phases" and isinstance(path[1], int):
            phase = _at(self.raw, "phases", path[1])
            if len(path) >= 4 and path[2] == "tasks" and isinstance(path[3], int):
                task = _at(phase, "tasks", path[3])
                where = self.task(path[1], path[3], task)
                if len(path) >= 6 and path[4] == "subtasks" and isinstance(path[5], int):
                    sub = _at(task, "subtasks", path[5])
                    sub_id = _id(sub, "subtask_id")
                    label = f"subtask {sub_id}" if sub_id else f"subtasks[{path[5]}]"
                    return f"{where} {label}", dotted(path[6:]), sub_id
                return where, dotted(path[4:]), None
            return f"phases[{path[1]}]{_paren(_id(phase, 'phase_id'))}", dotted(path[2:]), None
        if len(path) >= 2 and path[0] in ("dependencies", "risks") and isinstance(path[1], int):
            item = _at(self.raw, str(path[0]), path[1])
            label = _id(item, "risk_id") if path[0] == "risks" else _dependency(item)
            return f"{path[0]}[{path[1]}]{_paren(label)}", dotted(path[2:]), None
        return "", dotted(path), None

    def task(self, phase_index: int, task_index: int, task: Any) -> str:
        """``tasks[k] (task_id)`` for the task at ``phases[phase_index].tasks[task_index]``."""
        k = self._task_index.get((phase_index, task_index), task_index)
        return f"tasks[{k}]{_paren(_id(task, 'task_id'))}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _at(container: Any, key: str, index: int) -> Any:
    items = _list(container.get(key)) if isinstance(container, dict) else []
    return items[index] if 0 <= index < len(items) else None


def _id(item: Any, key: str) -> str:
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, str) else ""


def _paren(label: str) -> str:
    return f" ({label})" if label else ""


def _dependency(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    return f"{item.get('from', '?')} -> {item.get('to', '?')}"


def dotted(path: Sequence[str | int]) -> str:
    """A path as ``a.b[0].c``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
