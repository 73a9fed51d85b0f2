"""The baseline schedule of a plan: critical path method over the task DAG (pure, no I/O).

Times are in working days from the project start (day 0). A task's duration comes from the
``durations_days`` argument, else from ``estimated_hours`` (8 hours a day), else 0. Lags are in hours
(``Dependency.lag_hours``) and count as ``lag_hours / 8`` days.

Every dependency says that ``to`` waits on ``from``:

- ``finish_to_start``: ``to`` starts at or after ``from`` finishes, plus the lag;
- ``start_to_start``: ``to`` starts at or after ``from`` starts, plus the lag;
- ``finish_to_finish``: ``to`` finishes at or after ``from`` finishes, plus the lag;
- ``start_to_finish``: ``to`` finishes at or after ``from`` starts, plus the lag.

No task starts before day 0. Slack is total float (latest start minus earliest start); a task with
zero slack is critical. The critical path is one chain of critical tasks, each driving the next,
from a task that starts on day 0 to a task that finishes on the last day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planexe_ax.bus.plan import Dependency, DependencyType, Plan
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.dag import topological_order

HOURS_PER_DAY = 8.0
_EPS = 1e-9


@dataclass(frozen=True)
class TaskTimes:
    """When one task may run, in days from the project start."""

    duration: float
    earliest_start: float
    earliest_finish: float
    latest_start: float
    latest_finish: float

    @property
    def slack(self) -> float:
        """Total float: how far the task can slip without moving the project end."""
        return self.latest_start - self.earliest_start

    @property
    def critical(self) -> bool:
        """Whether the task has no slack."""
        return abs(self.slack) <= 1e-6


@dataclass(frozen=True)
class Schedule:
    """A computed schedule.

    Attributes:
        times: Per task id, its earliest/latest start and finish.
        order: Task ids in a topological order (every task after everything it waits on).
        critical_path: One chain of critical tasks from the start to the end of the project.
        total_days: The project duration in working days.
    """

    times: dict[str, TaskTimes]
    order: list[str]
    critical_path: list[str]
    total_days: float
    critical_tasks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored as ``plan.metadata["baseline"]``."""
        return {
            "unit": "working_days",
            "total_days": round(self.total_days, 6),
            "critical_path": list(self.critical_path),
            "critical_tasks": list(self.critical_tasks),
            "tasks": {
                tid: {
                    "duration": round(t.duration, 6),
                    "earliest_start": round(t.earliest_start, 6),
                    "earliest_finish": round(t.earliest_finish, 6),
                    "latest_start": round(t.latest_start, 6),
                    "latest_finish": round(t.latest_finish, 6),
                    "slack": round(t.slack, 6),
                }
                for tid, t in self.times.items()
            },
        }


def baseline(plan: Plan, durations_days: dict[str, float]) -> Schedule:
    """Compute the baseline schedule of ``plan``.

    Args:
        plan: The plan; its ``all_dependencies()`` (explicit dependencies and prerequisites) are honoured.
        durations_days: Working days per task id. Missing tasks use ``estimated_hours / 8``, else 0.

    Returns:
        The schedule: earliest/latest start and finish and slack per task, critical path, total days.

    Raises:
        PlanValidationError: on a dependency cycle (named), an unknown task id or a negative duration.
    """
    tasks = plan.tasks()
    durations: dict[str, float] = {}
    for task in tasks:
        days = durations_days.get(task.task_id)
        if days is None:
            days = (task.estimated_hours or 0.0) / HOURS_PER_DAY
        if days < 0:
            raise PlanValidationError(f"task '{task.task_id}' has a negative duration ({days} days)", [task.task_id])
        durations[task.task_id] = float(days)
    deps = plan.all_dependencies()
    order = topological_order(durations, [(d.from_, d.to) for d in deps])
    preds: dict[str, list[Dependency]] = {tid: [] for tid in order}
    succs: dict[str, list[Dependency]] = {tid: [] for tid in order}
    for dep in deps:
        preds[dep.to].append(dep)
        succs[dep.from_].append(dep)
    es = _forward(order, durations, preds)
    total = max((es[t] + durations[t] for t in order), default=0.0)
    lf = _backward(order, durations, succs, total)
    times = {t: TaskTimes(durations[t], es[t], es[t] + durations[t], lf[t] - durations[t], lf[t]) for t in order}
    critical = [t for t in order if times[t].critical]
    path = _critical_chain(order, times, preds, total)
    return Schedule(times=times, order=order, critical_path=path, total_days=total, critical_tasks=critical)


def _lag(dep: Dependency) -> float:
    return dep.lag_hours / HOURS_PER_DAY


def earliest_start_allowed(dep: Dependency, pred_start: float, pred_finish: float, duration: float) -> float:
    """The earliest start of ``dep.to`` that ``dep`` allows, given the times of ``dep.from_``.

    Args:
        dep: The dependency.
        pred_start: Start of ``dep.from_`` in days.
        pred_finish: Finish of ``dep.from_`` in days.
        duration: Duration of ``dep.to`` in days.

    Returns:
        The bound on the start of ``dep.to`` in days.
    """
    lag = _lag(dep)
    if dep.type is DependencyType.FINISH_TO_START:
        return pred_finish + lag
    if dep.type is DependencyType.START_TO_START:
        return pred_start + lag
    if dep.type is DependencyType.FINISH_TO_FINISH:
        return pred_finish + lag - duration
    return pred_start + lag - duration  # start_to_finish


def _forward(order: list[str], dur: dict[str, float], preds: dict[str, list[Dependency]]) -> dict[str, float]:
    es: dict[str, float] = {}
    for tid in order:
        bounds = [earliest_start_allowed(d, es[d.from_], es[d.from_] + dur[d.from_], dur[tid]) for d in preds[tid]]
        es[tid] = max([0.0, *bounds])
    return es


def _backward(
    order: list[str], dur: dict[str, float], succs: dict[str, list[Dependency]], total: float
) -> dict[str, float]:
    lf: dict[str, float] = {}
    for tid in reversed(order):
        bounds = [total]
        for dep in succs[tid]:
            nxt_lf, lag = lf[dep.to], _lag(dep)
            nxt_ls = nxt_lf - dur[dep.to]
            if dep.type is DependencyType.FINISH_TO_START:
                bounds.append(nxt_ls - lag)
            elif dep.type is DependencyType.START_TO_START:
                bounds.append(nxt_ls - lag + dur[tid])
            elif dep.type is DependencyType.FINISH_TO_FINISH:
                bounds.append(nxt_lf - lag)
            else:  # start_to_finish
                bounds.append(nxt_lf - lag + dur[tid])
        lf[tid] = min(bounds)
    return lf


def _critical_chain(
    order: list[str], times: dict[str, TaskTimes], preds: dict[str, list[Dependency]], total: float
) -> list[str]:
    """Walk back from the first critical task that ends the project through driving critical predecessors."""
    ends = [t for t in order if times[t].critical and abs(times[t].earliest_finish - total) <= _EPS]
    if not ends:
        return []
    chain = [ends[0]]
    while True:
        cur = times[chain[-1]]
        driver = next(
            (
                d.from_
                for d in preds[chain[-1]]
                if times[d.from_].critical
                and abs(
                    earliest_start_allowed(
                        d, times[d.from_].earliest_start, times[d.from_].earliest_finish, cur.duration
                    )
                    - cur.earliest_start
                )
                <= _EPS
            ),
            None,
        )
        if driver is None or driver in chain:
            break
        chain.append(driver)
    return list(reversed(chain))
