"""The plan as a graph: tasks linked by typed dependencies, subtasks ordered inside their task. Pure.

A dependency says when its successor may *start* (finish_to_start, start_to_start) or *finish*
(finish_to_finish, start_to_finish), each after an optional lag. A subtask waits for the subtasks it
names in ``dependencies``; when it names none (``None``) it waits for the subtask before it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from planexe_ax.bus.plan import DependencyType, Plan, Subtask, Task
from planexe_ax.errors import PlanValidationError

START_TYPES = frozenset({DependencyType.FINISH_TO_START, DependencyType.START_TO_START})
"""Dependency types that hold back the successor's start; the others hold back its finish."""


@dataclass(frozen=True)
class Edge:
    """``succ`` waits on ``pred`` as ``type`` says, plus ``lag_hours``."""

    pred: str
    succ: str
    type: DependencyType
    lag_hours: float = 0.0

    @property
    def pred_event(self) -> str:
        """Which moment of the predecessor counts: "finish" or "start"."""
        return "finish" if self.type in (DependencyType.FINISH_TO_START, DependencyType.FINISH_TO_FINISH) else "start"

    @property
    def gates_start(self) -> bool:
        """Whether the edge holds back the successor's start (else its finish)."""
        return self.type in START_TYPES


@dataclass(frozen=True)
class PlanGraph:
    """Tasks in plan order, their incoming edges, and the order of subtasks inside each task."""

    tasks: Mapping[str, Task]
    incoming: Mapping[str, tuple[Edge, ...]]
    subtasks: Mapping[str, Subtask]
    subtask_task: Mapping[str, str]
    subtask_preds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    outgoing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    position: Mapping[str, int] = field(default_factory=dict)
    """Plan order of every task and subtask id, to keep decisions in a stable order."""

    @classmethod
    def from_plan(cls, plan: Plan) -> PlanGraph:
        """Build the graph of a plan that passed validation."""
        tasks = {task.task_id: task for task in plan.tasks()}
        incoming: dict[str, list[Edge]] = {task_id: [] for task_id in tasks}
        for dep in plan.all_dependencies():
            incoming[dep.to].append(Edge(dep.from_, dep.to, dep.type, dep.lag_hours))
        subtasks: dict[str, Subtask] = {}
        subtask_task: dict[str, str] = {}
        subtask_preds: dict[str, tuple[str, ...]] = {}
        for task in tasks.values():
            previous: str | None = None
            for sub in task.subtasks:
                subtasks[sub.subtask_id] = sub
                subtask_task[sub.subtask_id] = task.task_id
                if sub.dependencies is None:
                    subtask_preds[sub.subtask_id] = (previous,) if previous else ()
                else:
                    subtask_preds[sub.subtask_id] = tuple(sub.dependencies)
                previous = sub.subtask_id
        outgoing: dict[str, list[str]] = {task_id: [] for task_id in tasks}
        for edges in incoming.values():
            for edge in edges:
                outgoing[edge.pred].append(edge.succ)
        return cls(
            tasks=tasks,
            incoming={k: tuple(v) for k, v in incoming.items()},
            subtasks=subtasks,
            subtask_task=subtask_task,
            subtask_preds=subtask_preds,
            outgoing={k: tuple(dict.fromkeys(v)) for k, v in outgoing.items()},
            position={key: i for i, key in enumerate([*tasks, *subtasks])},
        )


def find_cycle(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """Return the nodes of one cycle in order (first node repeated at the end), or None.

    Iterative depth-first search, so deep plans do not hit the recursion limit.
    """
    succ: dict[str, list[str]] = {node: [] for node in nodes}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    colour: dict[str, int] = dict.fromkeys(succ, 0)  # 0 new, 1 on the stack, 2 done
    for root in succ:
        if colour[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                colour[node] = 1
                path.append(node)
            if index < len(succ[node]):
                stack.append((node, index + 1))
                nxt = succ[node][index]
                if colour[nxt] == 1:
                    return [*path[path.index(nxt) :], nxt]
                if colour[nxt] == 0:
                    stack.append((nxt, 0))
            else:
                colour[node] = 2
                path.pop()
    return None


def topological_order(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Order ``nodes`` so that every ``(before, after)`` edge points forward (Kahn's algorithm).

    Ties are broken by the order of ``nodes``, so the result is deterministic.

    Args:
        nodes: Every node.
        edges: ``(before, after)`` pairs over those nodes.

    Returns:
        The nodes in topological order.

    Raises:
        PlanValidationError: when an edge names an unknown node, or the edges form a cycle (named in the message).
    """
    ids = list(dict.fromkeys(nodes))
    rank = {node: i for i, node in enumerate(ids)}
    succ: dict[str, list[str]] = {node: [] for node in ids}
    indegree = dict.fromkeys(ids, 0)
    edge_list = list(edges)
    for before, after in edge_list:
        for end in (before, after):
            if end not in rank:
                raise PlanValidationError(f"dependency {before} -> {after} names unknown task '{end}'", [end])
        succ[before].append(after)
        indegree[after] += 1
    heap = [rank[node] for node in ids if indegree[node] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        node = ids[heapq.heappop(heap)]
        order.append(node)
        for nxt in succ[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(heap, rank[nxt])
    if len(order) < len(ids):
        stuck = [node for node in ids if indegree[node] > 0]
        cycle = find_cycle(stuck, [(a, b) for a, b in edge_list if indegree[a] > 0 and indegree[b] > 0]) or stuck
        raise PlanValidationError(f"dependency cycle: {' -> '.join(cycle)}; remove one of these edges", cycle[:-1])
    return order
