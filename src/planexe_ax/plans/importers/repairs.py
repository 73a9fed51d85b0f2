"""Repairs of what an LLM-written PlanExe run contradicts itself on: durations and dependencies.

Every repair is returned as one line that names the item, the problem and what was done; the
importer collects them into the import report (and ``strict`` mode turns them into an error).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import mean
from typing import Literal

from planexe_ax.plans.importers.planexe_files import DaysEstimate, RawDependency, Wbs

DEFAULT_DAYS = 1.0


def estimate_durations(wbs: Wbs, durations: dict[str, DaysEstimate], repairs: list[str]) -> dict[str, DaysEstimate]:
    """Give every level-2 task realistic days; unknown ones (-1, 0, missing) are estimated.

    The estimate is the mean of the known sibling tasks in the same phase; without any, the phase's
    realistic days shared out over its tasks; without that, the mean of every known level-2 task;
    without that, one day. Unknown min/max take the realistic value when it had to be estimated.

    Args:
        wbs: The work breakdown.
        durations: What the duration file says, per id.
        repairs: Receives one line per estimate.

    Returns:
        Days per level-2 task id, each with ``days_realistic`` set.
    """
    known_all = [d.days_realistic for d in durations.values() if d.days_realistic is not None]
    out: dict[str, DaysEstimate] = {}
    for phase in wbs.phases:
        known = [
            r
            for t in phase.tasks
            if (r := durations.get(t.id, DaysEstimate(None, None, None)).days_realistic) is not None
        ]
        phase_days = durations.get(phase.id, DaysEstimate(None, None, None)).days_realistic
        for task in phase.tasks:
            given = durations.get(task.id, DaysEstimate(None, None, None))
            if given.days_realistic is not None:
                out[task.id] = given
                continue
            if known:
                days, how = round(mean(known), 1), f"mean of the {len(known)} known tasks of phase '{phase.title}'"
            elif phase_days is not None:
                days, how = round(phase_days / len(phase.tasks), 1), f"phase '{phase.title}' days shared out"
            elif known_all:
                days, how = round(mean(known_all), 1), "mean of all known tasks"
            else:
                days, how = DEFAULT_DAYS, "default"
            problem = "missing" if task.id not in durations else "-1 or 0 (unknown)"
            repairs.append(f"duration of task {task.id} ('{task.title}') is {problem}: estimated {days} days ({how})")
            out[task.id] = DaysEstimate(given.days_min or days, days, given.days_max or days)
    return out


@dataclass
class DependencyGraph:
    """The task graph as the importer builds it.

    Attributes:
        edges: ``before -> {after}`` over every task (structural and from the file).
        file_edges: The kept dependency-file pairs ``(depends_on, dependent)``, in file order.
        inherited: Per level-3 task, the ids it waits on because its parent does.
        explanations: ``"before->after"`` -> the file's explanation.
    """

    edges: dict[str, set[str]] = field(default_factory=dict)
    file_edges: list[tuple[str, str]] = field(default_factory=list)
    inherited: dict[str, list[str]] = field(default_factory=dict)
    explanations: dict[str, str] = field(default_factory=dict)

    def add(self, before: str, after: str) -> None:
        """Add the edge ``before -> after``."""
        self.edges.setdefault(before, set()).add(after)

    def path(self, starts: set[str], goal: str) -> list[str] | None:
        """A path from one of ``starts`` to ``goal`` (breadth first, deterministic), or ``None``."""
        parent: dict[str, str | None] = dict.fromkeys(sorted(starts))
        queue = deque(sorted(starts))
        while queue:
            node = queue.popleft()
            if node == goal:
                found: list[str] = []
                cur: str | None = node
                while cur is not None:
                    found.append(cur)
                    cur = parent[cur]
                return list(reversed(found))
            for nxt in sorted(self.edges.get(node, ())):
                if nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        return None


def structural_graph(wbs: Wbs, siblings: Literal["parallel", "sequential"]) -> DependencyGraph:
    """The edges the WBS implies: each level-3 task before its summary; sequential siblings in order."""
    graph = DependencyGraph()
    for phase in wbs.phases:
        for task in phase.tasks:
            for i, child in enumerate(task.children):
                graph.add(child.id, task.id)
                if siblings == "sequential" and i:
                    graph.add(task.children[i - 1].id, child.id)
    return graph


def apply_dependencies(
    wbs: Wbs, pairs: list[RawDependency], graph: DependencyGraph, repairs: list[str], notes: list[str]
) -> None:
    """Add the dependency file's pairs to ``graph``, dropping dangling ids and edges that close a cycle.

    A pair naming a phase stands for every level-2 task of that phase. A pair ``A -> B`` where ``B``
    has level-3 children also makes every child wait on ``A`` (inheritance). An edge closes a cycle
    when ``A`` is reachable from ``B`` or from one of its children; it is then dropped, the edges
    before it in file order being kept.
    """
    children = {t.id: [c.id for c in t.children] for p in wbs.phases for t in p.tasks}
    leaves = {c.id for p in wbs.phases for t in p.tasks for c in t.children}
    phases = {p.id: [t.id for t in p.tasks] for p in wbs.phases}
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        befores = _resolve(pair.depends_on, phases, children, leaves, pair, repairs, "depends on")
        afters = _resolve(pair.dependent, phases, children, leaves, pair, repairs, "is named as dependent")
        for before in befores:
            for after in afters:
                if (before, after) in seen:
                    notes.append(f"dependency {before} -> {after} is listed twice: kept once")
                    continue
                seen.add((before, after))
                _add_checked(graph, before, after, children.get(after, []), pair.explanation, repairs)


def _resolve(
    tid: str,
    phases: dict[str, list[str]],
    children: dict[str, list[str]],
    leaves: set[str],
    pair: RawDependency,
    repairs: list[str],
    role: str,
) -> list[str]:
    if tid in children or tid in leaves:
        return [tid]
    if tid in phases:
        repairs.append(f"dependency {pair.depends_on} -> {pair.dependent}: {tid} is a phase; used its tasks instead")
        return phases[tid]
    repairs.append(f"dependency {pair.depends_on} -> {pair.dependent}: {role} unknown id {tid}; dropped")
    return []


def _add_checked(
    graph: DependencyGraph, before: str, after: str, kids: list[str], explanation: str, repairs: list[str]
) -> None:
    targets = {after, *kids}
    cycle = [before] if before in targets else graph.path(targets, before)
    if cycle is not None:
        shown = " -> ".join([*cycle, after]) if before not in targets else f"{before} -> {after}"
        repairs.append(f"dependency {before} -> {after} closes the cycle {shown}; dropped")
        return
    graph.file_edges.append((before, after))
    graph.explanations[f"{before}->{after}"] = explanation
    for target in sorted(targets):
        graph.add(before, target)
    for kid in kids:
        graph.inherited.setdefault(kid, []).append(before)
