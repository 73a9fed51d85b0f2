"""Readers for the PlanExe run files the importer needs, each returning plain data.

Each reader checks the shape it relies on and raises :class:`PlanImportError` naming the file and
the problem; it never guesses a repair (the importer does that, and records it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from planexe_ax.plans.importers.run_files import RunFiles

WBS_LEVEL1 = "wbs_level1.json"
WBS_LEVEL2 = "wbs_level2.json"
WBS_LEVEL3 = "wbs_level3.json"
WBS_TREE = "wbs_project_level1_and_level2_and_level3.json"
DEPENDENCIES = "task_dependencies_raw.json"
DURATIONS = "task_durations.json"
RISKS = "identify_risks_raw.json"
ASSESSMENT = "pre_project_assessment.json"
START_TIME = "start_time.json"
PLAN_PROMPT = "plan.txt"
TEAM_MD = "team.md"
TEAM_JSON = (
    "enrich_team_members_environment_info.json",
    "enrich_team_members_background_story.json",
    "enrich_team_members_contract_type.json",
    "find_team_members.json",
)


@dataclass(frozen=True)
class Leaf:
    """A level-3 task."""

    id: str
    name: str
    description: str
    resources_needed: list[str]
    parent_id: str


@dataclass(frozen=True)
class Level2:
    """A level-2 subtask of a phase, with its level-3 children."""

    id: str
    title: str
    children: list[Leaf] = field(default_factory=list)


@dataclass(frozen=True)
class PhaseData:
    """A level-2 phase (``major_phase_title``)."""

    id: str
    title: str
    tasks: list[Level2]


@dataclass(frozen=True)
class Wbs:
    """The work breakdown: root, phases, level-2 tasks, level-3 tasks; ``orphans`` name unknown parents."""

    root_id: str
    title: str
    final_deliverable: str
    phases: list[PhaseData]
    orphans: list[Leaf] = field(default_factory=list)


@dataclass(frozen=True)
class RawDependency:
    """One ``dependent -> depends_on`` pair of the dependency file, with its explanation."""

    dependent: str
    depends_on: str
    explanation: str


@dataclass(frozen=True)
class DaysEstimate:
    """Days min/realistic/max of one id; ``None`` where the file has no usable number."""

    days_min: float | None
    days_realistic: float | None
    days_max: float | None


def missing_required(files: RunFiles) -> list[str]:
    """The required files that are missing (empty when the run can be imported)."""
    missing: list[str] = []
    flat = [WBS_LEVEL1, WBS_LEVEL2, WBS_LEVEL3]
    if not all(files.has(n) for n in flat) and not files.has(WBS_TREE):
        missing += [f"{n} (or {WBS_TREE})" for n in flat if not files.has(n)]
    missing += [n for n in (DEPENDENCIES, DURATIONS) if not files.has(n)]
    return missing


def _str(files: RunFiles, name: str, obj: Any, key: str) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
        raise files.corrupt(name, f"expected a string field '{key}' in {str(obj)[:80]!r}")
    value: str = obj[key]
    return value


def _list(files: RunFiles, name: str, obj: Any, what: str) -> list[Any]:
    if not isinstance(obj, list):
        raise files.corrupt(name, f"expected a list of {what}, got {type(obj).__name__}")
    return obj


def read_wbs(files: RunFiles) -> Wbs:
    """Read the WBS from the flat level files, or from the full tree when one of them is missing."""
    if all(files.has(n) for n in (WBS_LEVEL1, WBS_LEVEL2, WBS_LEVEL3)):
        return _read_flat(files)
    return _read_tree(files)


def _read_flat(files: RunFiles) -> Wbs:
    level1 = files.json(WBS_LEVEL1)
    root_id = _str(files, WBS_LEVEL1, level1, "id")
    title = _str(files, WBS_LEVEL1, level1, "project_title")
    deliverable = str(level1.get("final_deliverable") or "")
    leaves: dict[str, list[Leaf]] = {}
    for item in _list(files, WBS_LEVEL3, files.json(WBS_LEVEL3), "level-3 tasks"):
        leaf = Leaf(
            id=_str(files, WBS_LEVEL3, item, "id"),
            name=_str(files, WBS_LEVEL3, item, "name"),
            description=str(item.get("description") or ""),
            resources_needed=[str(r) for r in item.get("resources_needed") or []],
            parent_id=_str(files, WBS_LEVEL3, item, "parent_id"),
        )
        leaves.setdefault(leaf.parent_id, []).append(leaf)
    phases: list[PhaseData] = []
    for item in _list(files, WBS_LEVEL2, files.json(WBS_LEVEL2), "phases"):
        subtasks = _list(files, WBS_LEVEL2, item.get("subtasks"), "subtasks") if isinstance(item, dict) else []
        tasks = [
            Level2(tid, _str(files, WBS_LEVEL2, s, "description"), leaves.pop(tid, []))
            for s in subtasks
            for tid in [_str(files, WBS_LEVEL2, s, "id")]
        ]
        phases.append(
            PhaseData(_str(files, WBS_LEVEL2, item, "id"), _str(files, WBS_LEVEL2, item, "major_phase_title"), tasks)
        )
    orphans = [leaf for group in leaves.values() for leaf in group]
    return Wbs(root_id, title, deliverable, phases, orphans)


def _read_tree(files: RunFiles) -> Wbs:
    raw = files.json(WBS_TREE)
    root = raw.get("wbs_project") if isinstance(raw, dict) else None
    if not isinstance(root, dict):
        raise files.corrupt(WBS_TREE, "expected an object with a 'wbs_project' task")
    extra = root.get("extra_fields") or {}
    phases: list[PhaseData] = []
    for phase in _children(files, root):
        tasks: list[Level2] = []
        for task in _children(files, phase):
            tid = _str(files, WBS_TREE, task, "id")
            leaves = [_tree_leaf(files, leaf, tid) for leaf in _children(files, task)]
            tasks.append(Level2(tid, _str(files, WBS_TREE, task, "description"), leaves))
        phases.append(PhaseData(_str(files, WBS_TREE, phase, "id"), _str(files, WBS_TREE, phase, "description"), tasks))
    return Wbs(
        root_id=_str(files, WBS_TREE, root, "id"),
        title=_str(files, WBS_TREE, root, "description"),
        final_deliverable=str(extra.get("final_deliverable") or "") if isinstance(extra, dict) else "",
        phases=phases,
    )


def _children(files: RunFiles, node: dict[str, Any]) -> list[dict[str, Any]]:
    return _list(files, WBS_TREE, node.get("task_children") or [], "task_children")


def _tree_leaf(files: RunFiles, node: dict[str, Any], parent_id: str) -> Leaf:
    extra = node.get("extra_fields") or {}
    return Leaf(
        id=_str(files, WBS_TREE, node, "id"),
        name=_str(files, WBS_TREE, node, "description"),
        description=str(extra.get("detailed_description") or ""),
        resources_needed=[str(r) for r in extra.get("resources_needed") or []],
        parent_id=parent_id,
    )


def read_dependencies(files: RunFiles) -> tuple[list[RawDependency], list[str]]:
    """Read the dependency pairs, in file order, and notes on entries whose two lists differ in length.

    An explanation list shorter than the id list lends its last explanation to the remaining ids.
    """
    raw = files.json(DEPENDENCIES)
    details = raw.get("task_dependency_details") if isinstance(raw, dict) else None
    pairs: list[RawDependency] = []
    notes: list[str] = []
    for entry in _list(files, DEPENDENCIES, details, "task_dependency_details"):
        dependent = _str(files, DEPENDENCIES, entry, "dependent_task_id")
        ids = [str(i) for i in entry.get("depends_on_task_id_list") or []]
        explanations = [str(e) for e in entry.get("depends_on_task_explanation_list") or []]
        if len(ids) != len(explanations):
            notes.append(
                f"dependency entry of {dependent}: {len(ids)} ids but {len(explanations)} explanations (read the ids)"
            )
        for i, dep in enumerate(ids):
            text = explanations[min(i, len(explanations) - 1)] if explanations else ""
            pairs.append(RawDependency(dependent, dep, text))
    return pairs, notes


def _days(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def read_durations(files: RunFiles) -> dict[str, DaysEstimate]:
    """Days per id; -1, 0 or a non-number become ``None`` (unknown)."""
    out: dict[str, DaysEstimate] = {}
    for item in _list(files, DURATIONS, files.json(DURATIONS), "durations"):
        tid = _str(files, DURATIONS, item, "task_id")
        out[tid] = DaysEstimate(
            _days(item.get("days_min")), _days(item.get("days_realistic")), _days(item.get("days_max"))
        )
    return out


def read_team_roles(files: RunFiles) -> list[str]:
    """The team's role names, from the richest team JSON there is, else from ``team.md`` headings."""
    for name in TEAM_JSON:
        if files.has(name):
            members = _list(files, name, files.json(name), "team members")
            return list(dict.fromkeys(str(m["category"]) for m in members if isinstance(m, dict) and m.get("category")))
    if files.has(TEAM_MD):
        heads = re.findall(r"^##\s+(?:\d+\.\s*)?(.+?)\s*$", files.text(TEAM_MD), flags=re.MULTILINE)
        return list(dict.fromkeys(heads))
    return []


def read_risks(files: RunFiles) -> list[dict[str, Any]]:
    """The risk register entries (may be empty)."""
    if not files.has(RISKS):
        return []
    raw = files.json(RISKS)
    risks = raw.get("risks") if isinstance(raw, dict) else None
    return [r for r in _list(files, RISKS, risks, "risks") if isinstance(r, dict)]


def read_go_no_go(files: RunFiles) -> dict[str, str] | None:
    """The pre-project assessment's recommendation and a verdict word, or ``None`` without the file."""
    if not files.has(ASSESSMENT):
        return None
    raw = files.json(ASSESSMENT)
    text = str(raw.get("go_no_go_recommendation") or "") if isinstance(raw, dict) else ""
    head = text.split(".")[0].strip().lower()
    if "not" in head or "abandon" in head or "halt" in head:
        verdict = "no_go"
    elif "caution" in head:
        verdict = "go_with_caution"
    elif head:
        verdict = "go"
    else:
        verdict = "unknown"
    return {"verdict": verdict, "recommendation": text}


def read_start_time(files: RunFiles) -> datetime | None:
    """The run's start time in UTC (``server_iso_utc``), or ``None`` without the file."""
    if not files.has(START_TIME):
        return None
    raw = files.json(START_TIME)
    value = raw.get("server_iso_utc") if isinstance(raw, dict) else None
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise files.corrupt(START_TIME, f"server_iso_utc {value!r} is not an ISO 8601 time") from exc
    return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def read_goal(files: RunFiles, fallback: str) -> str:
    """The prompt the plan was made from, else ``fallback``."""
    if files.has(PLAN_PROMPT):
        text = files.text(PLAN_PROMPT).strip()
        if text:
            return text
    return fallback
