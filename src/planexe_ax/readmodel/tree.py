"""The task tree of an execution: the plan document's phases → tasks → subtasks joined with their live rows."""

from __future__ import annotations

from typing import Any

from planexe_ax.bus import Plan, TaskStatus
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.schedule import baseline
from planexe_ax.readmodel.models import ExecutionSubtask, ExecutionTask
from planexe_ax.readmodel.schemas import (
    ExecutionTree,
    PlannedTimes,
    PlanOverview,
    PlanTaskEntry,
    TreePhase,
    TreeSubtask,
    TreeTask,
)

PENDING = TaskStatus.PENDING.value
NOT_STARTED: dict[str, Any] = {
    "status": PENDING,
    "attempt": 0,
    "agent_id": None,
    "progress": 0.0,
    "output": None,
    "confidence": None,
    "error": None,
    "reason": "",
    "started_at": None,
    "finished_at": None,
    "updated_at": None,
}
"""The live fields of a subtask that has no row yet; a row gives the columns of the same names."""


def tasks_of(document: dict[str, Any]) -> list[PlanTaskEntry]:
    """Every task of a plan document, in plan order, with its phase and subtasks."""
    return [
        PlanTaskEntry.model_validate({"phase_id": phase["phase_id"], "phase_name": phase.get("name", ""), **task})
        for phase in document.get("phases", [])
        for task in phase.get("tasks", [])
    ]


def task_titles(document: dict[str, Any]) -> dict[str, str]:
    """Task id to title, for every task of a plan document."""
    return {
        task["task_id"]: task.get("title", "")
        for phase in document.get("phases", [])
        for task in phase.get("tasks", [])
    }


def planned_schedule(document: dict[str, Any]) -> dict[str, PlannedTimes]:
    """Per task, its planned start and finish in working days from the project start.

    Durations come from the plan's realistic days, else its estimated hours (8 per day), else an hour.
    A plan the scheduler cannot read gives no planned bars rather than an error.
    """
    try:
        plan = Plan.model_validate(document)
        days = {t.task_id: t.days_realistic or (t.estimated_hours or 1.0) / 8.0 for t in plan.tasks()}
        schedule = baseline(plan, days)
    except (ValueError, PlanValidationError):
        return {}
    return {
        task_id: PlannedTimes(start_days=round(t.earliest_start, 4), finish_days=round(t.earliest_finish, 4))
        for task_id, t in schedule.times.items()
    }


def execution_tree(
    plan_id: str, document: dict[str, Any], tasks: list[ExecutionTask], subtasks: list[ExecutionSubtask]
) -> ExecutionTree:
    """The plan overview and phases → tasks → subtasks of ``document`` with the live states of the rows."""
    live_tasks = {t.task_id: t for t in tasks}
    live_subtasks = {(s.task_id, s.subtask_id): s for s in subtasks}
    planned = planned_schedule(document)
    phases = [
        TreePhase(
            phase_id=phase["phase_id"],
            name=phase.get("name", ""),
            description=phase.get("description", ""),
            tasks=[_task(task, live_tasks, live_subtasks, planned) for task in phase.get("tasks", [])],
        )
        for phase in document.get("phases", [])
    ]
    overview = PlanOverview(
        plan_id=document.get("plan_id", plan_id),
        title=document.get("title", ""),
        goal=document.get("goal", ""),
        risks=document.get("risks", []),
        dependencies=document.get("dependencies", []),
        start_time=document.get("start_time"),
    )
    return ExecutionTree(plan=overview, phases=phases)


def _task(
    task: dict[str, Any],
    live_tasks: dict[str, ExecutionTask],
    live_subtasks: dict[tuple[str, str], ExecutionSubtask],
    planned: dict[str, PlannedTimes],
) -> TreeTask:
    task_id = task["task_id"]
    live = live_tasks.get(task_id)
    return TreeTask(
        task_id=task_id,
        title=task.get("title", ""),
        description=task.get("description", ""),
        assignee_role=task.get("assignee_role"),
        prerequisites=task.get("prerequisites", []),
        human_required=task.get("human_required", False),
        approval_required=task.get("approval_required", False),
        estimated_hours=task.get("estimated_hours"),
        planned=planned.get(task_id),
        status=live.status if live else PENDING,
        attempts=live.attempts if live else 0,
        reason=live.reason if live else "",
        started_at=live.started_at if live else None,
        finished_at=live.finished_at if live else None,
        subtasks=[_subtask(sub, live_subtasks.get((task_id, sub["subtask_id"]))) for sub in task.get("subtasks", [])],
    )


def _subtask(spec: dict[str, Any], live: ExecutionSubtask | None) -> TreeSubtask:
    state = NOT_STARTED if live is None else {name: getattr(live, name) for name in NOT_STARTED}
    return TreeSubtask.model_validate(
        {
            "subtask_id": spec["subtask_id"],
            "action": spec.get("action", ""),
            "description": spec.get("description", ""),
            "human_required": spec.get("human_required", False),
            **state,
        }
    )
