"""Params the rule-based decomposer proposes validate against the built-in agents; registered capabilities."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import pytest
from pydantic import BaseModel

from planexe_ax.agents import builtin_agents
from planexe_ax.bus.plan import Phase, Plan, Task
from planexe_ax.config import Settings
from planexe_ax.plans.capabilities import add_working_days, capabilities_from_cards, params_for
from planexe_ax.plans.decompose import (
    DEFAULT_CAPABILITIES,
    HUMAN_ACTION,
    RuleBasedDecomposer,
    decompose_plan,
)
from planexe_ax.plans.importers import import_planexe_run
from tests.helpers.planexe_runs import FIXTURE, RUNS, runs_param


@cache
def params_models() -> dict[str, type[BaseModel]]:
    return {c.action: c.params_model for a in builtin_agents(Settings(), "t") for c in a.capabilities}


def plan_of(*tasks: Task, start: datetime | None = None) -> Plan:
    return Plan(
        plan_id="p",
        goal="g",
        title="Clay workshop",
        phases=[Phase(phase_id="x", name="x", tasks=list(tasks))],
        start_time=start,
    )


@pytest.mark.parametrize("run", runs_param(RUNS))
def test_every_agent_step_of_a_run_validates_against_its_params_model(run: Path) -> None:
    plan = import_planexe_run(run).plan
    models = params_models()
    checked = 0
    for task in plan.tasks():
        for sub in task.subtasks:
            if sub.human_required:
                assert sub.action == HUMAN_ACTION
                continue
            models[sub.action].model_validate(sub.params)
            checked += 1
    assert checked > (5 if run == FIXTURE else 25)  # agent steps only where the title names that kind of work


def test_every_built_in_action_has_params_that_validate() -> None:
    text = "Email ops@clay.example, call +299 32 10 00, review https://clay.example/shop"
    task = Task(task_id="t1", title="Everything", description=text, assignee_role="Manager", estimated_hours=12)
    plan = plan_of(task, start=datetime(2026, 2, 14, tzinfo=UTC))
    models = params_models()
    assert set(models) == DEFAULT_CAPABILITIES
    for action, model in models.items():
        params = params_for(action, task, plan)
        assert params is not None, action
        model.model_validate(params)


def test_actions_without_their_inputs_are_not_proposed() -> None:
    task = Task(task_id="t1", title="Email the stakeholders and call the suppliers")
    plan = plan_of(task)
    for action in ("send_email", "make_phone_call", "analyze_website", "schedule_calendar_event"):
        assert params_for(action, task, plan) is None
    subs = RuleBasedDecomposer().decompose_task(task, plan)
    assert not {s.action for s in subs} & {"send_email", "make_phone_call"}


def test_missing_inputs_are_named_when_the_work_goes_to_people() -> None:
    task = Task(task_id="t1", title="Email the outreach newsletter")
    (sub,) = RuleBasedDecomposer().decompose_task(task, plan_of(task))
    assert sub.human_required
    assert "send_email needs an email address in the task" in sub.decomposition_reason


def test_meetings_take_the_planned_date_of_the_baseline() -> None:
    task = Task(task_id="t1", title="Kick-off meeting with the stakeholders", assignee_role="Coordinator")
    plan = plan_of(task, start=datetime(2026, 2, 13, 8, tzinfo=UTC)).model_copy(
        update={"metadata": {"baseline": {"tasks": {"t1": {"earliest_start": 3.0}}}}}
    )
    params = params_for("schedule_calendar_event", task, plan)
    assert params is not None
    assert params["date"] == "2026-02-18"  # Friday + 3 working days
    assert params["contact"] == "Coordinator"
    assert add_working_days(date(2026, 2, 14), 0) == date(2026, 2, 16)  # Saturday moves to Monday


def test_capabilities_from_cards_limit_the_decomposer() -> None:
    agents = builtin_agents(Settings(), "t")
    assert capabilities_from_cards([a.card() for a in agents]) == DEFAULT_CAPABILITIES
    writer_only = capabilities_from_cards([a.card() for a in agents if a.name == "Writer"])
    assert writer_only == {"draft_document", "create_wireframes", "build_quote"}
    research = Task(task_id="r", title="Research the regulations", description="Survey the market")
    document = Task(task_id="d", title="Draft the safety policy document")
    plan = decompose_plan(plan_of(research, document), capabilities=writer_only)
    by_id = {t.task_id: t for t in plan.tasks()}
    assert [s.action for s in by_id["r"].subtasks] == [HUMAN_ACTION]
    assert by_id["r"].human_required
    assert by_id["d"].subtasks[0].action == "draft_document"
    assert capabilities_from_cards([]) == set()


def test_a_role_adjusts_the_confidence_of_what_the_title_names_but_proposes_nothing_alone() -> None:
    writer = Task(task_id="t", title="Stage two", resources_needed=["Technical Writer"])
    assert RuleBasedDecomposer().decompose_task(writer, plan_of(writer))[0].action == HUMAN_ACTION
    titled = Task(task_id="d", title="Draft the stage two notes", resources_needed=["Technical Writer"])
    plain = Task(task_id="p", title="Draft the stage two notes")
    (with_role,) = RuleBasedDecomposer().decompose_task(titled, plan_of(titled))
    (without,) = RuleBasedDecomposer().decompose_task(plain, plan_of(plain))
    assert with_role.action == without.action == "draft_document"
    assert "role fits ('Writer')" in with_role.decomposition_reason
    assert (with_role.decomposition_confidence or 0) > (without.decomposition_confidence or 0)
