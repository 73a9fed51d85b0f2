"""The plan format: what PlanExe-AX executes (the structured plan of the seed documents).

These models are part of the wire contract: the ``execution_created`` event carries the whole plan,
so the projector and the coordinator read the same shape. Structural checks that need the whole plan
(unknown ids, cycles) live in ``planexe_ax.plans.validation``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from planexe_ax.bus.subjects import check_id, check_token


class DependencyType(StrEnum):
    """How a task waits on another (``to`` waits on ``from``)."""

    FINISH_TO_START = "finish_to_start"
    START_TO_START = "start_to_start"
    FINISH_TO_FINISH = "finish_to_finish"
    START_TO_FINISH = "start_to_finish"


OnFailure = Literal["escalate", "fail"]
"""What happens when a subtask's last attempt fails: ask a person (an inbox escalation) or fail the execution."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class RetryPolicy(_Model):
    """How often a subtask is tried before its task fails."""

    max_attempts: int | None = Field(default=None, ge=1, description="Attempts in all; unset: the default setting.")
    backoff: str = Field(default="exponential", description="exponential | fixed | none")
    initial_delay_s: float = Field(default=1.0, ge=0)


class Subtask(_Model):
    """One executable step: an ``action`` (the capability it needs) with ``params``."""

    subtask_id: str
    action: str = Field(description="The capability an agent must offer to do this step.")
    description: str = ""
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The action's parameters, checked against its schema before the plan runs "
        "(`planexe-ax plan schema --actions` prints the built-in actions' schemas).",
    )
    dependencies: list[str] | None = Field(
        default=None,
        description="Subtask ids of the same task this one waits for. Unset: the previous subtask of the task.",
    )
    timeout_hours: float | None = Field(default=None, gt=0)
    retry_policy: RetryPolicy | None = None
    human_required: bool = False
    decomposition_confidence: float | None = Field(
        default=None, ge=0, le=1, description="How sure the decomposer is that this step fits the work (0..1)."
    )
    decomposition_reason: str = Field(default="", description="Why the decomposer chose this action.")

    _check_id = field_validator("subtask_id")(lambda v: check_id(v, "subtask id"))
    _check_action = field_validator("action")(lambda v: check_token(v, "action"))


class Task(_Model):
    """A unit of the plan, done when all its subtasks are done."""

    task_id: str
    title: str
    description: str = ""
    assignee_role: str | None = None
    prerequisites: list[str] = Field(default_factory=list, description="Task ids that must finish first.")
    estimated_hours: float | None = Field(default=None, ge=0)
    human_required: bool = False
    approval_required: bool = False
    subtasks: list[Subtask] = Field(default_factory=list)
    parent_id: str | None = Field(default=None, description="The summary task this task belongs to (WBS parent).")
    days_min: float | None = Field(default=None, ge=0, description="Optimistic duration in working days.")
    days_realistic: float | None = Field(default=None, ge=0, description="Realistic duration in working days.")
    days_max: float | None = Field(default=None, ge=0, description="Pessimistic duration in working days.")
    resources_needed: list[str] = Field(default_factory=list, description="Roles the plan names for this task.")
    on_failure: OnFailure | None = Field(
        default=None, description="When its work keeps failing: escalate to a person or fail. Unset: the plan's."
    )

    _check_id = field_validator("task_id")(lambda v: check_id(v, "task id"))


class Phase(_Model):
    """A group of tasks, shown together; phases impose no order of their own."""

    phase_id: str
    name: str
    description: str = ""
    duration_weeks: float | None = Field(default=None, ge=0)
    tasks: list[Task] = Field(default_factory=list)


class Dependency(_Model):
    """``to`` waits on ``from`` as ``type`` says, plus ``lag_hours``."""

    from_: str = Field(alias="from")
    to: str
    type: DependencyType = DependencyType.FINISH_TO_START
    lag_hours: float = Field(default=0.0, ge=0)


class Risk(_Model):
    """A risk named by the plan, shown beside the blockers."""

    risk_id: str
    description: str
    mitigation: str = ""
    severity: str | None = None
    likelihood: str | None = None


class Plan(_Model):
    """A whole plan: phases of tasks of subtasks, dependencies between tasks, roles and risks."""

    plan_id: str
    goal: str
    title: str = ""
    phases: list[Phase]
    dependencies: list[Dependency] = Field(default_factory=list)
    roles_required: list[str] = Field(default_factory=list)
    risks: list[Risk] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Where the plan came from, import report.")
    start_time: datetime | None = Field(default=None, description="Planned project start (UTC), if the plan has one.")
    review_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Results below this confidence wait for a person's review."
    )
    on_failure: OnFailure = Field(
        default="escalate",
        description="When a subtask's last attempt fails: escalate (a person retries, completes, skips or fails it)"
        " or fail (the task and the execution fail at once).",
    )

    _check_id = field_validator("plan_id")(lambda v: check_id(v, "plan id"))

    def tasks(self) -> list[Task]:
        """Every task, in phase order."""
        return [task for phase in self.phases for task in phase.tasks]

    def all_dependencies(self) -> list[Dependency]:
        """The explicit dependencies plus each task's prerequisites (finish to start)."""
        implied = [
            Dependency.model_validate({"from": pre, "to": task.task_id})
            for task in self.tasks()
            for pre in task.prerequisites
        ]
        return [*self.dependencies, *implied]
