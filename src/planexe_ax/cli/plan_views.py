"""How ``planexe-ax plan ...`` shows a plan: the import summary, the plan tree and the decomposition table.

Pure rendering: functions take a plan (and its import report) and return lines or print to a rich
console; they read nothing and decide nothing.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from planexe_ax.bus.plan import DependencyType, Plan, Subtask, Task

ID_CHARS = 8


def console() -> Console:
    """A console on stdout, as wide as the terminal (160 columns when there is none)."""
    return Console(file=sys.stdout, width=shutil.get_terminal_size((160, 24)).columns, highlight=False)


def short(task_id: str) -> str:
    """A UUID shortened to its first characters; other ids as they are."""
    return task_id[:ID_CHARS] if len(task_id) == 36 and task_id.count("-") == 4 else task_id


def one_line(text: str, limit: int = 160) -> str:
    """The text on one line: the first line that says more than a label such as 'Plan:', cut at ``limit``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    chosen = next((ln for ln in lines if not ln.endswith(":") or len(ln) > 40), lines[0] if lines else "")
    return chosen if len(chosen) <= limit else chosen[: limit - 1] + "…"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def share_line(summary: dict[str, Any]) -> str:
    """One line: the share of executable tasks done by agents and by people."""
    total = summary["agent"] + summary["human"] + summary["mixed"] + summary["undecomposed"]
    return (
        f"agents {_pct(summary['agent_share'])}, people {_pct(summary['human_share'])} of {total} tasks "
        f"({summary['agent']} agents only, {summary['mixed']} mixed, {summary['human']} people only"
        + (f", {summary['undecomposed']} not decomposed)" if summary["undecomposed"] else ")")
    )


def import_summary(plan: Plan, report: dict[str, Any] | None, source: str) -> list[str]:
    """The short summary ``plan import`` prints: counts, critical path, shares, then every repair.

    Args:
        plan: The imported plan.
        report: Its import report (``None`` for a JSON plan).
        source: The path given.

    Returns:
        Lines, each repair and note on its own line.
    """
    from planexe_ax.plans.decompose import decomposition_summary

    tasks = plan.tasks()
    lines = [f"imported: {plan.title or plan.plan_id}", f"  source: {source}", f"  plan id: {plan.plan_id}"]
    if report is None:
        lines += [
            f"  phases: {len(plan.phases)}",
            f"  tasks: {len(tasks)}",
            f"  dependencies: {len(plan.all_dependencies())}",
            f"  decomposition: {share_line(decomposition_summary(plan))}",
        ]
        return lines
    counts = report["counts"]
    baseline = plan.metadata.get("baseline", {})
    go = (report.get("go_no_go") or {}).get("verdict", "unknown")
    lines += [
        f"  phases: {counts['phases']}",
        f"  tasks: {counts['tasks']} ({counts['executable_tasks']} executable, {counts['summary_tasks']} summaries)",
        f"  dependencies: {counts['dependencies']} from the dependency file, "
        f"{counts['structural_dependencies']} from the WBS (siblings {report['siblings']})",
        f"  critical path: {report['critical_path_days']:g} days ({len(baseline.get('critical_path', []))} tasks)",
        f"  start: {report.get('start_time') or 'not given'}; go/no-go: {go}",
        f"  risks: {counts['risks']}; roles: {counts['roles']}",
        f"  decomposition ({report.get('decomposer', 'rules')}): {share_line(report['decomposition'])}",
        f"  repairs: {len(report['repairs'])}",
        *(f"    repair: {r}" for r in report["repairs"]),
    ]
    lines += [f"  notes: {len(report['notes'])}", *(f"    note: {n}" for n in report["notes"])]
    return lines


def _days(task: Task) -> str:
    if task.days_realistic is None:
        return f"{task.estimated_hours:g} h" if task.estimated_hours is not None else ""
    low, high = task.days_min, task.days_max
    return f"{task.days_realistic:g} d" + (f" ({low:g}-{high:g})" if low is not None and high is not None else "")


def _waits_on(plan: Plan) -> dict[str, list[str]]:
    titles = {t.task_id: t.title for t in plan.tasks()}
    out: dict[str, list[str]] = {}
    for dep in plan.dependencies:
        kind = "" if dep.type == DependencyType.FINISH_TO_START else f" ({dep.type.value})"
        out.setdefault(dep.to, []).append(f"{short(dep.from_)} {titles.get(dep.from_, '')[:40]}".strip() + kind)
    return out


def _step_label(sub: Subtask) -> str:
    conf = "" if sub.decomposition_confidence is None else f" ({sub.decomposition_confidence:.2f})"
    who = "[people] " if sub.human_required else ""
    return f"{who}{sub.action}{conf}: {sub.description or sub.subtask_id}"


def _task_label(task: Task, waits: list[str]) -> str:
    bits = [f"{task.title} [{short(task.task_id)}]"]
    if task.assignee_role:
        bits.append(f"role: {task.assignee_role}")
    if _days(task):
        bits.append(_days(task))
    if task.human_required:
        bits.append("people")
    if waits:
        bits.append("after: " + "; ".join(waits))
    return " | ".join(bits)


def print_plan(plan: Plan, out: Console) -> None:
    """Print the whole plan: a tree of phases, tasks and subtasks, then roles, risks and the baseline.

    Args:
        plan: The plan.
        out: Where to print.
    """
    tree = Tree(escape(f"{plan.title or plan.plan_id} [{plan.plan_id}]"))
    waits = _waits_on(plan)
    children: dict[str | None, list[Task]] = {}
    for task in plan.tasks():
        children.setdefault(task.parent_id, []).append(task)
    known = {t.task_id for t in plan.tasks()}
    for phase in plan.phases:
        weeks = f", {phase.duration_weeks:g} weeks" if phase.duration_weeks is not None else ""
        branch = tree.add(escape(f"Phase {phase.name} [{short(phase.phase_id)}] ({len(phase.tasks)} tasks{weeks})"))
        for task in phase.tasks:
            if task.parent_id is None or task.parent_id not in known:
                _add_task(branch, task, children, waits)
    out.print(escape(f"Goal: {one_line(plan.goal)}"), soft_wrap=True)
    out.print(tree)
    roles = ", ".join(plan.roles_required) or "-"
    out.print(escape(f"Dependencies: {len(plan.dependencies)} between tasks; roles: {roles}"), soft_wrap=True)
    if plan.risks:
        out.print(_risk_table(plan))
    baseline = plan.metadata.get("baseline")
    if baseline:
        path = " -> ".join(short(t) for t in baseline.get("critical_path", []))
        out.print(f"Baseline: {baseline['total_days']:g} working days; critical path: {path}", soft_wrap=True)


def _add_task(branch: Tree, task: Task, children: dict[str | None, list[Task]], waits: dict[str, list[str]]) -> None:
    node = branch.add(escape(_task_label(task, waits.get(task.task_id, []))))
    for sub in task.subtasks:
        node.add(escape(_step_label(sub)))
    for child in children.get(task.task_id, []):
        _add_task(node, child, children, waits)


def _risk_table(plan: Plan) -> Table:
    table = Table(title="Risks", show_lines=False)
    for column in ("id", "severity", "likelihood", "risk", "mitigation"):
        table.add_column(column, overflow="fold")
    for risk in plan.risks:
        cells = (risk.risk_id, risk.severity or "", risk.likelihood or "", risk.description, risk.mitigation)
        table.add_row(*(escape(c) for c in cells))
    return table


def print_decomposition(plan: Plan, out: Console) -> None:
    """Print the table task -> subtasks (action, confidence, reason) and the agents/people share.

    Args:
        plan: A decomposed plan.
        out: Where to print.
    """
    from planexe_ax.plans.decompose import decomposition_summary, executable_tasks

    table = Table(title=escape(f"Decomposition of {plan.title or plan.plan_id}"), show_lines=True)
    table.add_column("task", overflow="fold", ratio=3)
    table.add_column("#", justify="right")
    table.add_column("action", overflow="fold")
    table.add_column("confidence", justify="right")
    table.add_column("reason", overflow="fold", ratio=4)
    for task in executable_tasks(plan):
        for i, sub in enumerate(task.subtasks):
            conf = "-" if sub.decomposition_confidence is None else f"{sub.decomposition_confidence:.2f}"
            action = f"{sub.action} (people)" if sub.human_required else sub.action
            label = f"{task.title} [{short(task.task_id)}]" if i == 0 else ""
            table.add_row(escape(label), str(i + 1), action, conf, escape(sub.decomposition_reason))
    out.print(table)
    out.print(f"Share: {share_line(decomposition_summary(plan))}", soft_wrap=True)


def decomposition_json(plan: Plan) -> dict[str, Any]:
    """The decomposition as JSON: the summary and, per executable task, its subtasks."""
    from planexe_ax.plans.decompose import decomposition_summary, executable_tasks

    return {
        "plan_id": plan.plan_id,
        "summary": decomposition_summary(plan),
        "tasks": [
            {
                "task_id": t.task_id,
                "title": t.title,
                "human_required": t.human_required,
                "subtasks": [s.model_dump(mode="json", exclude_none=True) for s in t.subtasks],
            }
            for t in executable_tasks(plan)
        ],
    }
