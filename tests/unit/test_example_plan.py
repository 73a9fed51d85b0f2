"""The shipped example plan must be runnable by the built-in agents as written."""

import pytest

from planexe_ax.agents import builtin_agents
from planexe_ax.cli import example_plan_path, load_plan
from planexe_ax.config import Settings


def test_every_subtask_of_the_example_has_a_builtin_capability_and_valid_params() -> None:
    capabilities = {c.action: c for agent in builtin_agents(Settings(), "t") for c in agent.capabilities}
    plan = load_plan(example_plan_path())
    assert len(plan.phases) == 3
    for task in plan.tasks():
        for sub in task.subtasks:
            assert sub.action in capabilities, sub.subtask_id
            try:
                capabilities[sub.action].params_model.model_validate(sub.params)
            except ValueError as exc:  # pragma: no cover - the message is the point
                pytest.fail(f"{sub.subtask_id}: {exc}")
