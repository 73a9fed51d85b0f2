"""The baseline schedule: hand-made plans with known answers, cycles, and a property test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planexe_ax.bus.plan import Dependency, DependencyType, Phase, Plan, Task
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.dag import topological_order
from planexe_ax.plans.schedule import baseline, earliest_start_allowed


def make_plan(ids: list[str], deps: list[tuple[str, str, str, float]]) -> Plan:
    tasks = [Task(task_id=t, title=t) for t in ids]
    return Plan(
        plan_id="p",
        goal="g",
        phases=[Phase(phase_id="ph", name="ph", tasks=tasks)],
        dependencies=[
            Dependency.model_validate({"from": a, "to": b, "type": k, "lag_hours": lag}) for a, b, k, lag in deps
        ],
    )


def times(plan: Plan, durations: dict[str, float]) -> dict[str, tuple[float, float, float, float]]:
    s = baseline(plan, durations)
    return {t: (v.earliest_start, v.earliest_finish, v.latest_start, v.latest_finish) for t, v in s.times.items()}


def test_finish_to_start_chain_with_a_parallel_branch() -> None:
    # a(2) -> b(3) -> d(1); a -> c(1) -> d: c has 2 days of slack.
    plan = make_plan(
        ["a", "b", "c", "d"],
        [
            ("a", "b", "finish_to_start", 0),
            ("b", "d", "finish_to_start", 0),
            ("a", "c", "finish_to_start", 0),
            ("c", "d", "finish_to_start", 0),
        ],
    )
    s = baseline(plan, {"a": 2, "b": 3, "c": 1, "d": 1})
    assert s.total_days == 6
    assert s.critical_path == ["a", "b", "d"]
    assert s.times["c"].earliest_start == 2
    assert s.times["c"].slack == 2
    assert set(s.critical_tasks) == {"a", "b", "d"}
    assert s.order.index("a") < s.order.index("b") < s.order.index("d")


def test_finish_to_start_lag_in_hours() -> None:
    plan = make_plan(["a", "b"], [("a", "b", "finish_to_start", 16)])
    assert times(plan, {"a": 1, "b": 1}) == {"a": (0, 1, 0, 1), "b": (3, 4, 3, 4)}


def test_start_to_start_with_lag() -> None:
    plan = make_plan(["a", "b"], [("a", "b", "start_to_start", 8)])
    # b starts a day after a starts; a (5 days) ends the project at day 5; b (2 days) can slip 2 days.
    assert times(plan, {"a": 5, "b": 2}) == {"a": (0, 5, 0, 5), "b": (1, 3, 3, 5)}


def test_finish_to_finish() -> None:
    plan = make_plan(["a", "b"], [("a", "b", "finish_to_finish", 8)])
    # b (2 days) must finish a day after a (4 days) finishes: b runs 3..5.
    s = baseline(plan, {"a": 4, "b": 2})
    assert (s.times["b"].earliest_start, s.times["b"].earliest_finish) == (3, 5)
    assert s.total_days == 5
    assert s.critical_path == ["a", "b"]


def test_start_to_finish() -> None:
    plan = make_plan(["a", "b", "c"], [("c", "a", "finish_to_start", 0), ("a", "b", "start_to_finish", 0)])
    # c(3) then a(1) starts at 3; b (2 days) must finish at or after a starts: it may run 1..3, but not before 0.
    s = baseline(plan, {"a": 1, "b": 2, "c": 3})
    assert (s.times["b"].earliest_start, s.times["b"].earliest_finish) == (1, 3)
    assert s.total_days == 4
    assert s.times["b"].latest_finish == 4  # b may finish as late as the project end.


def test_start_to_finish_never_before_day_zero() -> None:
    plan = make_plan(["a", "b"], [("a", "b", "start_to_finish", 0)])
    assert times(plan, {"a": 1, "b": 5})["b"][:2] == (0, 5)


def test_missing_duration_uses_estimated_hours() -> None:
    plan = Plan(
        plan_id="p",
        goal="g",
        phases=[Phase(phase_id="x", name="x", tasks=[Task(task_id="a", title="a", estimated_hours=12)])],
    )
    assert baseline(plan, {}).total_days == 1.5


def test_prerequisites_count_as_finish_to_start() -> None:
    tasks = [Task(task_id="a", title="a"), Task(task_id="b", title="b", prerequisites=["a"])]
    plan = Plan(plan_id="p", goal="g", phases=[Phase(phase_id="x", name="x", tasks=tasks)])
    assert baseline(plan, {"a": 2, "b": 1}).times["b"].earliest_start == 2


def test_cycle_is_named() -> None:
    plan = make_plan(
        ["a", "b", "c", "d"],
        [
            ("a", "b", "finish_to_start", 0),
            ("b", "c", "finish_to_start", 0),
            ("c", "a", "finish_to_start", 0),
            ("c", "d", "finish_to_start", 0),
        ],
    )
    with pytest.raises(
        PlanValidationError, match=r"dependency cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"
    ):
        baseline(plan, {})


def test_unknown_id_and_negative_duration() -> None:
    with pytest.raises(PlanValidationError, match="unknown task 'zz'"):
        topological_order(["a"], [("zz", "a")])
    with pytest.raises(PlanValidationError, match="negative duration"):
        baseline(make_plan(["a"], []), {"a": -1})


def test_empty_plan() -> None:
    s = baseline(make_plan([], []), {})
    assert (s.total_days, s.critical_path, s.order) == (0, [], [])


@st.composite
def dags(draw: st.DrawFn) -> tuple[Plan, dict[str, float]]:
    n = draw(st.integers(min_value=1, max_value=12))
    ids = [f"t{i}" for i in range(n)]
    deps: list[tuple[str, str, str, float]] = []
    for j in range(1, n):
        for i in draw(st.lists(st.integers(min_value=0, max_value=j - 1), max_size=3, unique=True)):
            kind = draw(st.sampled_from([k.value for k in DependencyType]))
            lag = draw(st.sampled_from([0.0, 4.0, 8.0, 20.0]))
            deps.append((ids[i], ids[j], kind, lag))
    durations = {t: draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0])) for t in ids}
    return make_plan(ids, deps), durations


@given(dags())
@settings(max_examples=200, deadline=None)
def test_no_task_starts_before_its_dependencies_allow(case: tuple[Plan, dict[str, float]]) -> None:
    plan, durations = case
    s = baseline(plan, durations)
    t: dict[str, Any] = s.times
    for dep in plan.all_dependencies():
        before, after = t[dep.from_], t[dep.to]
        bound = earliest_start_allowed(dep, before.earliest_start, before.earliest_finish, after.duration)
        assert after.earliest_start >= bound - 1e-9
        # the latest times respect the dependency too
        late = earliest_start_allowed(dep, before.latest_start, before.latest_finish, after.duration)
        assert after.latest_start >= late - 1e-9
    for v in t.values():
        assert v.earliest_start >= 0
        assert v.slack >= -1e-9
        assert v.latest_finish <= s.total_days + 1e-9
    assert s.total_days == pytest.approx(max((v.earliest_finish for v in t.values()), default=0))
    if s.critical_path:
        assert t[s.critical_path[-1]].earliest_finish == pytest.approx(s.total_days)
        assert all(t[x].critical for x in s.critical_path)
