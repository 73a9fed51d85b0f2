import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planexe_ax.bus import DependencyType
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.dag import Edge, PlanGraph, find_cycle, topological_order
from tests.helpers.factories import make_plan


def test_find_cycle_returns_the_loop_in_order() -> None:
    assert find_cycle("abcd", [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == ["a", "b", "c", "a"]


def test_find_cycle_none_for_a_dag() -> None:
    assert find_cycle("abc", [("a", "b"), ("a", "c"), ("b", "c")]) is None


def test_self_loop_is_a_cycle() -> None:
    assert find_cycle("a", [("a", "a")]) == ["a", "a"]


def test_topological_order_is_stable_and_rejects_cycles() -> None:
    assert topological_order("cba", [("c", "a")]) == ["c", "b", "a"]
    with pytest.raises(PlanValidationError, match="cycle"):
        topological_order("ab", [("a", "b"), ("b", "a")])


def test_edges_know_which_moment_counts() -> None:
    assert Edge("a", "b", DependencyType.FINISH_TO_START).pred_event == "finish"
    assert Edge("a", "b", DependencyType.START_TO_START).pred_event == "start"
    assert Edge("a", "b", DependencyType.FINISH_TO_FINISH).pred_event == "finish"
    assert Edge("a", "b", DependencyType.START_TO_FINISH).pred_event == "start"
    assert Edge("a", "b", DependencyType.START_TO_START).gates_start
    assert not Edge("a", "b", DependencyType.FINISH_TO_FINISH).gates_start


def test_graph_orders_subtasks_and_merges_prerequisites() -> None:
    plan = make_plan({"a": 3, "b": 1}, [("a", "b", "start_to_start", 0)])
    graph = PlanGraph.from_plan(plan)
    assert graph.subtask_preds["a_s0"] == ()
    assert graph.subtask_preds["a_s2"] == ("a_s1",)
    assert [e.type for e in graph.incoming["b"]] == [DependencyType.START_TO_START]


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=30))
def test_cycle_detection_agrees_with_topological_sort(pairs: list[tuple[int, int]]) -> None:
    nodes = [str(i) for i in range(10)]
    edges = [(str(a), str(b)) for a, b in pairs]
    cycle = find_cycle(nodes, edges)
    try:
        order = topological_order(nodes, edges)
    except PlanValidationError:
        assert cycle is not None
        assert cycle[0] == cycle[-1]
        assert all((x, y) in edges for x, y in itertools.pairwise(cycle))
    else:
        assert cycle is None
        position = {node: i for i, node in enumerate(order)}
        assert all(position[a] < position[b] for a, b in edges)
