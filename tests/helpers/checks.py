"""Assertions over the JSON of `planexe-ax run --json`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from planexe_ax.bus import DependencyType, Plan


def _t(value: str | None) -> datetime:
    assert value is not None, "timestamp missing"
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), f"{value} is not UTC"
    return parsed


def assert_dependencies_hold(plan: Plan, report: dict[str, Any], lag_scale_s: float = 0.0) -> None:
    """Every dependency of ``plan`` holds in the recorded start and finish times."""
    tasks = {task["task_id"]: task for task in report["tasks"]}
    for dep in plan.all_dependencies():
        pred, succ = tasks[dep.from_], tasks[dep.to]
        lag = timedelta(seconds=dep.lag_hours * lag_scale_s)
        moment = {
            DependencyType.FINISH_TO_START: (succ["started_at"], pred["finished_at"]),
            DependencyType.START_TO_START: (succ["started_at"], pred["started_at"]),
            DependencyType.FINISH_TO_FINISH: (succ["finished_at"], pred["finished_at"]),
            DependencyType.START_TO_FINISH: (succ["finished_at"], pred["started_at"]),
        }[dep.type]
        assert _t(moment[0]) >= _t(moment[1]) + lag, f"{dep.type.value} {dep.from_} -> {dep.to} broken: {moment}"


def assert_completed(report: dict[str, Any]) -> None:
    """The execution and every task and subtask completed, each subtask by an agent, once."""
    assert report["status"] == "COMPLETED"
    _t(report["started_at"])
    assert _t(report["finished_at"]) >= _t(report["started_at"])
    for task in report["tasks"]:
        assert task["status"] == "COMPLETED", task
        assert _t(task["finished_at"]) >= _t(task["started_at"])
        for sub in task["subtasks"]:
            assert sub["status"] == "COMPLETED", sub
            assert sub["agent_id"], sub
            assert isinstance(sub["output"], dict)
