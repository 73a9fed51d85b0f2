"""Import a real PlanExe run (a folder, or a zip of one) as a :class:`~planexe_ax.bus.plan.Plan`.

Mapping:

- each level-2 phase (``wbs_level2.json``) becomes a :class:`Phase` with the PlanExe phase id;
- each level-2 subtask becomes a :class:`Task` with its PlanExe id; each level-3 task
  (``wbs_level3.json``, ``parent_id`` = a level-2 id) becomes a :class:`Task` in the same phase, with
  ``parent_id`` set. Level-3 tasks are the executable leaves.
- A level-2 task with level-3 children is a **summary**: it has no work of its own (no subtasks,
  0 hours, 0 days in the baseline) and waits on every child (``prerequisites`` = its children). It is
  done when its children are done, so a task that depends on it waits for all of that work.
- The dependency file (level-2 ids) becomes ``plan.dependencies`` (finish to start). A level-3 task
  inherits the dependencies of its parent (as ``prerequisites``), so it cannot start before what its
  parent waits on is done. Siblings run in parallel, or one after the other with
  ``siblings="sequential"`` (each waits on the previous one, as ``prerequisites``).
  So ``plan.dependencies`` is the dependency file and ``prerequisites`` the structure of the WBS.
- Durations (``task_durations.json``, level-2 ids, working days) go to ``days_min/realistic/max``.
  A level-3 task gets its parent's days: all of them in parallel mode (the children together span
  the parent's days), the parent's days divided by the number of children in sequential mode.
  ``estimated_hours`` = realistic days x 8. A phase's ``duration_weeks`` is its days / 5.
- Roles: ``roles_required`` is the team (``enrich_team_members_*``, else ``team.md``) plus the roles
  assigned; ``assignee_role`` is the first of ``resources_needed`` that names a team role, else the first.
- Risks from ``identify_risks_raw.json``; the go/no-go of ``pre_project_assessment.json``, the start
  time of ``start_time.json`` and the baseline schedule go into the plan (``start_time``, ``metadata``).

Repairs (a -1/0 duration, a dependency on an unknown id, a dependency closing a cycle, a phase with no
duration) are listed in ``ImportResult.repairs`` and ``plan.metadata["import_report"]``; with
``strict=True`` they raise :class:`PlanValidationError` instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from planexe_ax.bus.plan import Dependency, Phase, Plan, Risk, Task
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.decompose import decompose_plan, decomposition_summary
from planexe_ax.plans.importers import planexe_files as pf
from planexe_ax.plans.importers.repairs import (
    DependencyGraph,
    apply_dependencies,
    estimate_durations,
    structural_graph,
)
from planexe_ax.plans.importers.run_files import PlanImportError, RunFiles
from planexe_ax.plans.schedule import HOURS_PER_DAY, Schedule, baseline

log = logging.getLogger(__name__)

Siblings = Literal["parallel", "sequential"]
DAYS_PER_WEEK = 5.0


@dataclass(frozen=True)
class ImportResult:
    """What an import produced.

    Attributes:
        plan: The imported plan (baseline in ``plan.metadata["baseline"]``).
        repairs: One line per repair made.
        report: Counts, files used, go/no-go, start time, repairs, notes.
    """

    plan: Plan
    repairs: list[str]
    report: dict[str, Any]


def import_planexe_run(
    path: Path, *, strict: bool = False, siblings: Siblings = "parallel", decompose: bool = True
) -> ImportResult:
    """Import a PlanExe run folder or zip.

    Args:
        path: The run folder, or a ``.zip`` of one (the files may sit in a folder inside it).
        strict: Raise instead of repairing.
        siblings: How level-3 siblings relate: ``parallel`` (default) or ``sequential``.
        decompose: Give every executable task subtasks with the rule-based decomposer (after the
            baseline, so that meetings get their planned dates).

    Returns:
        The plan, the repairs and the import report.

    Raises:
        PlanImportError: when required files are missing (all listed) or a file is corrupt (named).
        PlanValidationError: in strict mode, when a repair was needed (all listed).
    """
    files = RunFiles.open(path)
    missing = pf.missing_required(files)
    if missing:
        raise PlanImportError(f"{path}: not a complete PlanExe run; missing: {', '.join(missing)}")
    repairs: list[str] = []
    notes: list[str] = []
    wbs = pf.read_wbs(files)
    repairs += [f"level-3 task {o.id} names unknown parent {o.parent_id}; dropped" for o in wbs.orphans]
    raw_durations = pf.read_durations(files)
    days = estimate_durations(wbs, raw_durations, repairs)
    pairs, dep_notes = pf.read_dependencies(files)
    notes += dep_notes
    graph = structural_graph(wbs, siblings)
    apply_dependencies(wbs, pairs, graph, repairs, notes)
    roles = pf.read_team_roles(files)
    tasks_by_phase, durations_days = _build_tasks(wbs, days, graph, siblings, roles)
    try:
        plan = _assemble(files, wbs, tasks_by_phase, graph, roles, raw_durations)
    except ValidationError as exc:
        raise PlanImportError(f"{path}: the run does not map onto a plan: {exc.errors()[0]['msg']}") from exc
    schedule = baseline(plan, durations_days)
    if decompose:
        planned = {**plan.metadata, "baseline": _baseline_dict(plan, schedule)}
        plan = decompose_plan(plan.model_copy(update={"metadata": planned})).model_copy(
            update={"metadata": plan.metadata}
        )
    plan, phase_repairs = _phase_durations(plan, schedule, raw_durations)
    repairs += phase_repairs
    if strict and repairs:
        raise PlanValidationError(
            f"{path}: strict import refuses {len(repairs)} repair(s) (import without strict to apply them):\n  "
            + "\n  ".join(repairs)
        )
    report = _report(files, plan, schedule, repairs, notes, siblings)
    plan = plan.model_copy(
        update={"metadata": {**plan.metadata, "import_report": report, "baseline": _baseline_dict(plan, schedule)}}
    )
    log.info("imported %s: %d tasks, %d repairs", path, len(plan.tasks()), len(repairs))
    return ImportResult(plan=plan, repairs=repairs, report=report)


def _build_tasks(
    wbs: pf.Wbs, days: dict[str, pf.DaysEstimate], graph: DependencyGraph, siblings: Siblings, roles: list[str]
) -> tuple[dict[str, list[Task]], dict[str, float]]:
    """Tasks per phase id, and the working days of every task for the baseline."""
    out: dict[str, list[Task]] = {}
    durations: dict[str, float] = {}
    for phase in wbs.phases:
        tasks: list[Task] = []
        for l2 in phase.tasks:
            est = days[l2.id]
            realistic = est.days_realistic or 0.0
            kids = [c.id for c in l2.children]
            durations[l2.id] = 0.0 if kids else realistic
            resources = list(dict.fromkeys(r for c in l2.children for r in c.resources_needed))
            tasks.append(
                Task(
                    task_id=l2.id,
                    title=l2.title,
                    description=f"Summary of {len(kids)} tasks" if kids else "",
                    prerequisites=kids,
                    estimated_hours=0.0 if kids else realistic * HOURS_PER_DAY,
                    days_min=est.days_min,
                    days_realistic=est.days_realistic,
                    days_max=est.days_max,
                    resources_needed=resources,
                )
            )
            share = 1.0 if siblings == "parallel" or not kids else 1.0 / len(kids)
            for i, child in enumerate(l2.children):
                prereqs = list(graph.inherited.get(child.id, []))
                if siblings == "sequential" and i:
                    prereqs.append(l2.children[i - 1].id)
                durations[child.id] = realistic * share
                tasks.append(_leaf_task(child, est, share, prereqs, roles))
        out[phase.id] = tasks
    return out, durations


def _leaf_task(child: pf.Leaf, est: pf.DaysEstimate, share: float, prereqs: list[str], roles: list[str]) -> Task:
    def scaled(value: float | None) -> float | None:
        return None if value is None else round(value * share, 3)

    realistic = (est.days_realistic or 0.0) * share
    return Task(
        task_id=child.id,
        title=child.name,
        description=child.description,
        assignee_role=_assignee(child.resources_needed, roles),
        prerequisites=prereqs,
        estimated_hours=round(realistic * HOURS_PER_DAY, 3),
        parent_id=child.parent_id,
        days_min=scaled(est.days_min),
        days_realistic=round(realistic, 3),
        days_max=scaled(est.days_max),
        resources_needed=list(child.resources_needed),
    )


def _assignee(resources: list[str], roles: list[str]) -> str | None:
    lowered = [(r, r.lower()) for r in roles]
    for need in resources:
        n = need.lower()
        if any(n == low or n in low or low in n for _, low in lowered):
            return need
    return resources[0] if resources else None


def _assemble(
    files: RunFiles,
    wbs: pf.Wbs,
    tasks_by_phase: dict[str, list[Task]],
    graph: DependencyGraph,
    roles: list[str],
    raw_durations: dict[str, pf.DaysEstimate],
) -> Plan:
    phases = [
        Phase(
            phase_id=p.id,
            name=p.title,
            duration_weeks=_weeks(raw_durations.get(p.id)),
            tasks=tasks_by_phase[p.id],
        )
        for p in wbs.phases
    ]
    assigned = [t.assignee_role for ts in tasks_by_phase.values() for t in ts if t.assignee_role]
    risks = [
        Risk(
            risk_id=f"risk-{i}",
            description=f"{r.get('risk_area', 'Risk')}: {r.get('risk_description', '')}",
            mitigation=str(r.get("action") or ""),
            severity=r.get("severity"),
            likelihood=r.get("likelihood"),
        )
        for i, r in enumerate(pf.read_risks(files), start=1)
    ]
    return Plan(
        plan_id=wbs.root_id,
        goal=pf.read_goal(files, wbs.final_deliverable or wbs.title),
        title=wbs.title,
        phases=phases,
        dependencies=[Dependency.model_validate({"from": a, "to": b}) for a, b in graph.file_edges],
        roles_required=list(dict.fromkeys([*roles, *assigned])),
        risks=risks,
        start_time=pf.read_start_time(files),
        metadata={
            "source": "planexe_run",
            "final_deliverable": wbs.final_deliverable,
            "go_no_go": pf.read_go_no_go(files),
            "dependency_explanations": dict(graph.explanations),
        },
    )


def _weeks(est: pf.DaysEstimate | None) -> float | None:
    if est is None or est.days_realistic is None:
        return None
    return round(est.days_realistic / DAYS_PER_WEEK, 3)


def _phase_durations(plan: Plan, schedule: Schedule, raw: dict[str, pf.DaysEstimate]) -> tuple[Plan, list[str]]:
    """Phases without a usable duration take the span of their tasks in the baseline."""
    repairs: list[str] = []
    phases: list[Phase] = []
    for phase in plan.phases:
        if phase.duration_weeks is None and phase.tasks:
            times = [schedule.times[t.task_id] for t in phase.tasks]
            span = max(t.earliest_finish for t in times) - min(t.earliest_start for t in times)
            phase = phase.model_copy(update={"duration_weeks": round(span / DAYS_PER_WEEK, 3)})
            problem = "missing" if phase.phase_id not in raw else "-1 or 0 (unknown)"
            repairs.append(
                f"duration of phase {phase.phase_id} ('{phase.name}') is {problem}: "
                f"estimated {round(span, 1)} days (span of its tasks in the baseline)"
            )
        phases.append(phase)
    return plan.model_copy(update={"phases": phases}), repairs


def _baseline_dict(plan: Plan, schedule: Schedule) -> dict[str, Any]:
    data = schedule.to_dict()
    data["start_time"] = plan.start_time.isoformat() if plan.start_time else None
    return data


def _report(
    files: RunFiles,
    plan: Plan,
    schedule: Schedule,
    repairs: list[str],
    notes: list[str],
    siblings: Siblings,
) -> dict[str, Any]:
    tasks = plan.tasks()
    summaries = {t.parent_id for t in tasks if t.parent_id}
    return {
        "source": files.source,
        "files_used": [files.display(n) for n in files.used],
        "siblings": siblings,
        "counts": {
            "phases": len(plan.phases),
            "tasks": len(tasks),
            "summary_tasks": len(summaries),
            "executable_tasks": len(tasks) - len(summaries),
            "dependencies": len(plan.dependencies),
            "structural_dependencies": sum(len(t.prerequisites) for t in tasks),
            "risks": len(plan.risks),
            "roles": len(plan.roles_required),
        },
        "critical_path_days": round(schedule.total_days, 3),
        "decomposition": decomposition_summary(plan),
        "go_no_go": plan.metadata.get("go_no_go"),
        "start_time": plan.start_time.isoformat() if plan.start_time else None,
        "repairs": list(repairs),
        "notes": list(notes),
    }
