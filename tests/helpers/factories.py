"""Build plans and drive the pure core in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from planexe_ax.bus import Plan, SubtaskResult, SubtaskStarted
from planexe_ax.bus.messages import EventBase
from planexe_ax.coordinator.state import Effect, Emit, Offer

E = TypeVar("E", bound=EventBase)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_plan(
    tasks: dict[str, int] | list[str],
    deps: list[tuple[str, str, str, float]] | None = None,
    plan_id: str = "p1",
    **extra: Any,
) -> Plan:
    """A plan with one phase; ``tasks`` maps task id -> number of subtasks (action ``echo``)."""
    counts = tasks if isinstance(tasks, dict) else dict.fromkeys(tasks, 1)
    return Plan.model_validate(
        {
            "plan_id": plan_id,
            "goal": "test",
            "phases": [
                {
                    "phase_id": "ph1",
                    "name": "Phase",
                    "tasks": [
                        {
                            "task_id": task_id,
                            "title": task_id.upper(),
                            "subtasks": [
                                {"subtask_id": f"{task_id}_s{i}", "action": "echo", "params": {"n": i}}
                                for i in range(count)
                            ],
                        }
                        for task_id, count in counts.items()
                    ],
                }
            ],
            "dependencies": [{"from": a, "to": b, "type": kind, "lag_hours": lag} for a, b, kind, lag in (deps or [])],
            **extra,
        }
    )


def offers(effects: list[Any]) -> list[str]:
    """Subtask ids offered by a list of effects."""
    return [e.offer.subtask_id for e in effects if isinstance(e, Offer)]


def emitted(effects: list[Any]) -> list[tuple[str, str | None, str]]:
    """(type, task or subtask id, status) of every decision event in ``effects``."""
    out: list[tuple[str, str | None, str]] = []
    for effect in effects:
        if isinstance(effect, Emit):
            event = effect.event
            out.append((event.type, event.subtask_id or event.task_id, str(getattr(event, "status", ""))))
    return out


def decision(effect: Effect, kind: type[E]) -> E:
    """The event of type ``kind`` that ``effect`` emits (fails the test when it emits something else)."""
    assert isinstance(effect, Emit), effect
    assert isinstance(effect.event, kind), effect.event
    return effect.event


def result(
    execution_id: str, subtask_id: str, attempt: int = 1, ok: bool = True, agent_id: str = "agent-1", **kw: Any
) -> SubtaskResult:
    return SubtaskResult(
        execution_id=execution_id, subtask_id=subtask_id, attempt=attempt, ok=ok, agent_id=agent_id, **kw
    )


def started(execution_id: str, subtask_id: str, attempt: int = 1, agent_id: str = "agent-1") -> SubtaskStarted:
    return SubtaskStarted(execution_id=execution_id, subtask_id=subtask_id, attempt=attempt, agent_id=agent_id)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def echo_plan() -> Plan:
    """Two tasks in a row, each subtask an `echo` the test agent does."""
    document = make_plan({"a": 2, "b": 1}, [("a", "b", "finish_to_start", 0)]).model_dump(mode="json", by_alias=True)
    for task in document["phases"][0]["tasks"]:
        for sub in task["subtasks"]:
            sub["params"] = {"text": sub["subtask_id"]}
    return Plan.model_validate(document)
