"""The rule-based decomposer: templates, threshold, capabilities, human work, determinism."""

from __future__ import annotations

from planexe_ax.bus.plan import Phase, Plan, Subtask, Task
from planexe_ax.plans.decompose import (
    DEFAULT_CAPABILITIES,
    HUMAN_ACTION,
    AsyncTaskDecomposer,
    RuleBasedDecomposer,
    TaskDecomposer,
    apply_threshold,
    decompose_plan,
    decomposition_summary,
    executable_tasks,
)


def plan_of(*tasks: Task) -> Plan:
    return Plan(plan_id="p", goal="g", title="Clay workshop", phases=[Phase(phase_id="x", name="x", tasks=list(tasks))])


def task(tid: str, title: str, description: str = "", roles: tuple[str, ...] = ()) -> Task:
    return Task(
        task_id=tid,
        title=title,
        description=description,
        resources_needed=list(roles),
        assignee_role=roles[0] if roles else None,
    )


def test_desk_work_goes_to_agents() -> None:
    t = task("t1", "Draft the marketing strategy document", roles=("Marketing Specialist",))
    subs = RuleBasedDecomposer().decompose_task(t, plan_of(t))
    assert subs[0].action == "draft_document"
    assert subs[0].params["variables"]["title"] == t.title
    assert all(not s.human_required for s in subs)
    assert all(0.5 <= (s.decomposition_confidence or 0) <= 1 for s in subs)
    assert "draft_document matched" in subs[0].decomposition_reason
    assert [s.subtask_id for s in subs] == [f"t1-{i}" for i in range(1, len(subs) + 1)]


def test_unmatched_work_goes_to_people() -> None:
    t = task("t2", "Fire the kiln", roles=("Potter",))
    (sub,) = RuleBasedDecomposer().decompose_task(t, plan_of(t))
    assert sub.action == HUMAN_ACTION
    assert sub.human_required
    assert sub.params["role"] == "Potter"
    assert sub.decomposition_reason.startswith("human work:")


def test_below_threshold_goes_to_people() -> None:
    t = task("t3", "Keep a list")
    assert RuleBasedDecomposer(threshold=0.5).decompose_task(t, plan_of(t))[0].action == "manage_csv"
    low = RuleBasedDecomposer(threshold=0.99).decompose_task(t, plan_of(t))
    assert [s.action for s in low] == [HUMAN_ACTION]
    assert "below the threshold 0.99" in low[0].decomposition_reason


def test_hands_on_work_gets_a_human_step_after_the_agent_steps() -> None:
    t = task("t4", "Find and purchase a used wire bending machine from local suppliers")
    subs = RuleBasedDecomposer().decompose_task(t, plan_of(t))
    assert subs[-1].action == HUMAN_ACTION
    assert any(s.action != HUMAN_ACTION for s in subs)


def test_capabilities_limit_the_actions() -> None:
    t = task("t5", "Draft the marketing strategy document")
    subs = RuleBasedDecomposer(capabilities=frozenset({"send_email"})).decompose_task(t, plan_of(t))
    assert {s.action for s in subs} <= {"send_email", HUMAN_ACTION}


def test_decompose_plan_skips_summaries_and_is_deterministic() -> None:
    parent = task("p1", "Marketing")
    kids = [
        Task(task_id="c1", title="Write the press release", parent_id="p1"),
        Task(task_id="c2", title="Install the kiln", parent_id="p1"),
    ]
    plan = plan_of(parent, *kids)
    once, twice = decompose_plan(plan), decompose_plan(plan)
    assert once == twice
    by_id = {t.task_id: t for t in once.tasks()}
    assert by_id["p1"].subtasks == []
    assert [t.task_id for t in executable_tasks(once)] == ["c1", "c2"]
    assert by_id["c2"].human_required
    assert decomposition_summary(once) == {
        "agent": 1,
        "human": 1,
        "mixed": 0,
        "undecomposed": 0,
        "agent_share": 0.5,
        "human_share": 0.5,
    }


def test_existing_subtasks_are_kept() -> None:
    sub = Subtask(subtask_id="s", action="send_email")
    plan = plan_of(Task(task_id="a", title="Email", subtasks=[sub]))
    assert decompose_plan(plan).tasks()[0].subtasks == [sub]


def test_apply_threshold_turns_unknown_or_weak_steps_into_human_work() -> None:
    t = task("t6", "Anything")
    proposed = [
        Subtask(subtask_id="a", action="send_email", decomposition_confidence=0.9),
        Subtask(subtask_id="b", action="weld_steel", decomposition_confidence=0.9),
        Subtask(subtask_id="c", action="web_scrape", decomposition_confidence=0.2, decomposition_reason="guess"),
    ]
    out = apply_threshold(t, proposed, capabilities=DEFAULT_CAPABILITIES, threshold=0.5)
    assert [s.action for s in out] == ["send_email", HUMAN_ACTION, HUMAN_ACTION]
    assert "not an offered capability" in out[1].decomposition_reason
    assert "(confidence 0.2 < 0.5); guess" in out[2].decomposition_reason
    assert apply_threshold(t, [])[0].action == HUMAN_ACTION


class FakeModel:
    async def decompose_task(self, task: Task, plan: Plan) -> list[Subtask]:
        return [Subtask(subtask_id=f"{task.task_id}-1", action="draft_document", decomposition_confidence=0.7)]


async def test_protocols_accept_implementations() -> None:
    t = task("t7", "Write the report")
    sync: TaskDecomposer = RuleBasedDecomposer()
    model: AsyncTaskDecomposer = FakeModel()
    assert sync.decompose_task(t, plan_of(t))[0].action == "draft_document"
    proposed = await model.decompose_task(t, plan_of(t))
    assert apply_threshold(t, proposed) == proposed
