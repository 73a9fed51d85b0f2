"""Decompose executable tasks into subtasks that agents (or people) can do.

The rule-based decomposer is deterministic: templates keyed on the task's wording (title first, then
description), its roles (``resources_needed``, ``assignee_role``) and its kind (desk work or hands-on
work). Each template proposes steps with an ``action`` from the capability registry, params, a
``decomposition_confidence`` (0..1) and the reason. What matches no capability, or only below the
threshold, becomes human work: one subtask with ``action="human_task"`` and ``human_required=True``.
Hands-on work (install, purchase, hire, inspect, ...) gets a human step after the agent steps that
prepare it.

An LLM decomposer plugs in through :class:`AsyncTaskDecomposer`; whatever it proposes goes through
:func:`apply_threshold`, so an unknown action or a low confidence still becomes human work.

Summary tasks (tasks that other tasks name as ``parent_id``) are not executable and get no subtasks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from planexe_ax.bus.plan import Plan, Subtask, Task

HUMAN_ACTION = "human_task"
DEFAULT_THRESHOLD = 0.5
DEFAULT_CAPABILITIES: frozenset[str] = frozenset(
    {
        "search_google_maps",
        "web_scrape",
        "send_email",
        "make_phone_call",
        "schedule_calendar_event",
        "analyze_website",
        "draft_document",
        "create_wireframes",
        "build_quote",
        "manage_csv",
    }
)


@dataclass(frozen=True)
class Template:
    """Wording that suggests an action, with the base confidence of that guess."""

    action: str
    pattern: re.Pattern[str]
    confidence: float
    step: str


def _rx(words: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{words})\b", re.IGNORECASE)


TEMPLATES: tuple[Template, ...] = (
    Template(
        "create_wireframes",
        _rx(r"wireframes?|mock-?ups?|ui|ux|user interface|dashboards?|mobile app|web design|screens?"),
        0.65,
        "Sketch the screens",
    ),
    Template(
        "analyze_website",
        _rx(r"websites?|online presence|seo|social media|landing page|e-?commerce|online"),
        0.6,
        "Review the relevant websites",
    ),
    Template(
        "search_google_maps",
        _rx(
            r"local|nearby|venues?|sites?|locations?|premises|suppliers?|vendors?|"
            r"contractors?|facilit(?:y|ies)|space|landlords?|partners?"
        ),
        0.55,
        "Find candidates on the map",
    ),
    Template(
        "web_scrape",
        _rx(
            r"research\w*|identify\w*|investigat\w*|survey\w*|benchmark\w*|markets?|literature|"
            r"evaluat\w*|assess\w*|analy[sz]\w*|stud(?:y|ies)|explor\w*|options|compar\w*|"
            r"regulations?|requirements?|best practices?"
        ),
        0.6,
        "Collect the facts from the web",
    ),
    Template(
        "build_quote",
        _rx(
            r"quotes?|quotations?|budget\w*|costs?|pricing|prices?|financ\w*|funding|bids?|"
            r"tenders?|invoices?|fees?"
        ),
        0.55,
        "Price it",
    ),
    Template(
        "manage_csv",
        _rx(
            r"lists?|database|inventory|spreadsheets?|csv|registers?|tracking|track|datasets?|"
            r"data|logs?|catalog\w*|records?|schedules?|metrics|kpis?"
        ),
        0.5,
        "Keep the data in a table",
    ),
    Template(
        "draft_document",
        _rx(
            r"documents?|documentation|draft\w*|write|writing|reports?|plans?|polic(?:y|ies)|"
            r"proposals?|charter|specifications?|procedures?|manuals?|guidelines?|strateg\w*|"
            r"protocols?|framework|criteria|agreements?|contracts?|applications?|briefs?|"
            r"define|defin\w*|outline|checklists?|materials?|curriculum|content|sops?"
        ),
        0.6,
        "Draft the document",
    ),
    Template(
        "schedule_calendar_event",
        _rx(
            r"meetings?|workshops?|kick-?off|sessions?|appointments?|events?|"
            r"webinars?|interviews?|consultations?|hearings?"
        ),
        0.55,
        "Put the meeting in the calendar",
    ),
    Template(
        "send_email",
        _rx(
            r"emails?|e-mail|outreach|notify|invit\w*|announc\w*|communicat\w*|newsletters?|"
            r"contact\w*|inform|engage\w*|stakeholders?|correspond\w*"
        ),
        0.55,
        "Write to the people concerned",
    ),
    Template("make_phone_call", _rx(r"phone|telephone|calls?|follow[- ]up"), 0.5, "Call the people concerned"),
)

HANDS_ON = _rx(
    r"install\w*|construct\w*|renovat\w*|refurbish\w*|build(?:ing)? out|assembl\w*|hire|hiring|recruit\w*|"
    r"train(?:ing)?|procure\w*|purchas\w*|buy|acquir\w*|negotiat\w*|sign\w*|inspect\w*|commission\w*|calibrat\w*|"
    r"manufactur\w*|fabricat\w*|transport\w*|obtain\w*|permits?|approv\w*|secur\w*|"
    r"operat\w*|maintain\w*|maintenance|pilot\w*|deploy\w*|wiring|electrical|plumbing|clinical|patients?|"
    r"participants?|enrol\w*|treat\w*|exam\w*|fire|kiln|clay|equipment|machines?|hardware|physical|"
    r"execut\w*|repair\w*|replac\w*|payments?|pay|transfer\w*|test\w*|retest\w*|debug\w*|coding|"
    r"programm\w*|implement\w*|verif\w*|ship\w*"
)
DESK_ROLES = _rx(
    r"analyst|researcher|marketing|communications?|writer|coordinator|manager|developer|designer|"
    r"consultant|administrator|specialist|strategist|officer"
)
HANDS_ON_ROLES = _rx(
    r"technician|electrician|contractor|construction|installer|operator|potter|nurse|physician|"
    r"clinician|doctor|inspector|architect|mechanic|builder|plumber|instructor|legal|lawyer|"
    r"mechanical engineer|electrical engineer|facilit\w* manager"
)
TITLE_BONUS = 0.1
EXTRA_MATCH_BONUS = 0.05
DESK_ROLE_BONUS = 0.05
HANDS_ON_PENALTY = 0.2
HANDS_ON_ROLE_PENALTY = 0.1
MAX_AGENT_STEPS = 2


class TaskDecomposer(Protocol):
    """Something that turns one task into subtasks (synchronous, like the rule-based one)."""

    def decompose_task(self, task: Task, plan: Plan) -> list[Subtask]:
        """Return the subtasks of ``task`` (ids unique within the task)."""
        ...


class AsyncTaskDecomposer(Protocol):
    """A decomposer that asks a model (an OpenAI-compatible chat API): strict JSON, validated, retried.

    Implementations return proposals; callers pass them through :func:`apply_threshold`.
    """

    async def decompose_task(self, task: Task, plan: Plan) -> list[Subtask]:
        """Return the proposed subtasks of ``task``."""
        ...


@dataclass(frozen=True)
class _Match:
    template: Template
    score: float
    reason: str


def _clamp(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 3)


def score_templates(task: Task, capabilities: Collection[str]) -> list[_Match]:
    """Score every template (offered by ``capabilities``) that the task's wording matches, best first.

    Args:
        task: The task.
        capabilities: The actions agents offer.

    Returns:
        One match per template, with the score and the reason for it.
    """
    title, body = task.title, task.description
    roles = " ".join([*task.resources_needed, task.assignee_role or ""])
    hands_on = bool(HANDS_ON.search(title))
    matches: list[_Match] = []
    for tpl in TEMPLATES:
        if tpl.action not in capabilities:
            continue
        hit = tpl.pattern.search(title) or tpl.pattern.search(body)
        if hit is None:
            continue
        in_title = tpl.pattern.search(title) is not None
        score = tpl.confidence + (TITLE_BONUS if in_title else 0.0)
        why = [f"'{hit.group(0)}' in the {'title' if in_title else 'description'}"]
        if DESK_ROLES.search(roles):
            score += DESK_ROLE_BONUS
            why.append("desk role")
        if HANDS_ON_ROLES.search(roles):
            score -= HANDS_ON_ROLE_PENALTY
            why.append("hands-on role")
        if hands_on:
            score -= HANDS_ON_PENALTY
            why.append("hands-on work")
        matches.append(_Match(tpl, score, ", ".join(why)))
    bonus = min(EXTRA_MATCH_BONUS * (len(matches) - 1), 2 * EXTRA_MATCH_BONUS) if matches else 0.0
    ranked = [_Match(m.template, _clamp(m.score + bonus), m.reason) for m in matches]
    return sorted(ranked, key=lambda m: (-m.score, TEMPLATES.index(m.template)))


@dataclass(frozen=True)
class RuleBasedDecomposer:
    """Deterministic decomposer from wording and role templates.

    Args:
        capabilities: The actions agents offer; templates for other actions are skipped.
        threshold: Below this confidence, a step becomes human work.
    """

    capabilities: frozenset[str] = DEFAULT_CAPABILITIES
    threshold: float = DEFAULT_THRESHOLD

    def decompose_task(self, task: Task, plan: Plan) -> list[Subtask]:
        """Return agent steps for what the wording supports, and a human step for the rest.

        Args:
            task: An executable task.
            plan: The plan it belongs to (for context in params).

        Returns:
            One or more subtasks, ids ``<task_id>-<n>``.
        """
        matches = score_templates(task, self.capabilities)
        chosen = [m for m in matches if m.score >= self.threshold][:MAX_AGENT_STEPS]
        subtasks = [
            _subtask(
                task,
                i,
                m.template.action,
                f"{m.template.step}: {task.title}",
                _params(m.template.action, task, plan),
                m.score,
                f"{m.template.action} matched ({m.reason}); confidence {m.score}",
            )
            for i, m in enumerate(chosen, start=1)
        ]
        if not chosen:
            best = matches[0] if matches else None
            why = (
                f"best match {best.template.action} at {best.score} is below the threshold {self.threshold}"
                if best
                else "no capability matches the wording"
            )
            subtasks.append(_human(task, 1, 1.0 - (best.score if best else 0.0), f"human work: {why}"))
        elif HANDS_ON.search(task.title):
            subtasks.append(_human(task, len(subtasks) + 1, 0.8, "hands-on work an agent cannot do; agents prepare it"))
        return subtasks


def _subtask(
    task: Task, n: int, action: str, description: str, params: dict[str, Any], confidence: float, reason: str
) -> Subtask:
    return Subtask(
        subtask_id=f"{task.task_id}-{n}",
        action=action,
        description=description,
        params=params,
        human_required=action == HUMAN_ACTION,
        decomposition_confidence=_clamp(confidence),
        decomposition_reason=reason,
    )


def _human(task: Task, n: int, confidence: float, reason: str) -> Subtask:
    params = {
        "instructions": task.description or task.title,
        "role": task.assignee_role,
        "resources_needed": list(task.resources_needed),
    }
    return _subtask(task, n, HUMAN_ACTION, f"Do: {task.title}", params, confidence, reason)


_PARAMS: dict[str, Callable[[Task, Plan], dict[str, Any]]] = {
    "search_google_maps": lambda t, p: {"query": t.title, "near": None},
    "web_scrape": lambda t, p: {"query": f"{t.title} {p.title}".strip(), "purpose": t.description or t.title},
    "send_email": lambda t, p: {"to_role": t.assignee_role, "subject": t.title, "brief": t.description or t.title},
    "make_phone_call": lambda t, p: {"to_role": t.assignee_role, "purpose": t.description or t.title},
    "schedule_calendar_event": lambda t, p: {
        "title": t.title,
        "attendee_roles": list(t.resources_needed),
        "duration_minutes": 60,
    },
    "analyze_website": lambda t, p: {"url": None, "focus": t.title},
    "draft_document": lambda t, p: {
        "title": t.title,
        "brief": t.description or t.title,
        "project": p.title,
        "audience_roles": list(t.resources_needed),
    },
    "create_wireframes": lambda t, p: {"product": p.title, "requirements": t.description or t.title},
    "build_quote": lambda t, p: {"items_brief": t.description or t.title, "currency": None},
    "manage_csv": lambda t, p: {"operation": "create", "dataset": t.title, "columns_hint": []},
}


def _params(action: str, task: Task, plan: Plan) -> dict[str, Any]:
    return _PARAMS[action](task, plan) if action in _PARAMS else {"task": task.title}


def apply_threshold(
    task: Task,
    proposed: list[Subtask],
    *,
    capabilities: Collection[str] = DEFAULT_CAPABILITIES,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Subtask]:
    """Turn proposed steps with an unknown action or a low confidence into human work.

    Args:
        task: The task the steps belong to.
        proposed: Steps from any decomposer (for example a model).
        capabilities: The actions agents offer.
        threshold: The least confidence an agent step needs.

    Returns:
        The steps, each either an offered action at or above the threshold, or ``human_task``.
    """
    out: list[Subtask] = []
    for sub in proposed:
        confidence = sub.decomposition_confidence or 0.0
        if sub.action == HUMAN_ACTION or (sub.action in capabilities and confidence >= threshold):
            out.append(sub)
            continue
        why = (
            "not an offered capability" if sub.action not in capabilities else f"confidence {confidence} < {threshold}"
        )
        reason = f"human work: proposed {sub.action} ({why})"
        if sub.decomposition_reason:
            reason += f"; {sub.decomposition_reason}"
        update = {"action": HUMAN_ACTION, "human_required": True, "decomposition_reason": reason}
        out.append(sub.model_copy(update=update))
    return out or [_human(task, 1, 1.0, "human work: the decomposer proposed no step")]


def executable_tasks(plan: Plan) -> list[Task]:
    """Tasks that are nobody's WBS parent (summary tasks do no work of their own)."""
    parents = {t.parent_id for t in plan.tasks() if t.parent_id}
    return [t for t in plan.tasks() if t.task_id not in parents]


def decompose_plan(
    plan: Plan,
    *,
    decomposer: TaskDecomposer | None = None,
    capabilities: Collection[str] = DEFAULT_CAPABILITIES,
    threshold: float = DEFAULT_THRESHOLD,
) -> Plan:
    """Give every executable task without subtasks its subtasks.

    Args:
        plan: The plan.
        decomposer: The decomposer; default the rule-based one with ``capabilities`` and ``threshold``.
        capabilities: The actions agents offer.
        threshold: The least confidence an agent step needs.

    Returns:
        A new plan; tasks that already had subtasks keep them. A task whose steps are all human work
        gets ``human_required=True``.
    """
    chosen = decomposer or RuleBasedDecomposer(frozenset(capabilities), threshold)
    todo = {t.task_id for t in executable_tasks(plan) if not t.subtasks}
    phases = []
    for phase in plan.phases:
        tasks = []
        for task in phase.tasks:
            if task.task_id in todo:
                subs = apply_threshold(
                    task, chosen.decompose_task(task, plan), capabilities=capabilities, threshold=threshold
                )
                human = all(s.human_required for s in subs)
                task = task.model_copy(update={"subtasks": subs, "human_required": task.human_required or human})
            tasks.append(task)
        phases.append(phase.model_copy(update={"tasks": tasks}))
    return plan.model_copy(update={"phases": phases})


def decomposition_summary(plan: Plan) -> dict[str, Any]:
    """Count executable tasks done by agents only, by people only, or by both.

    Returns:
        ``{"agent": n, "human": n, "mixed": n, "undecomposed": n, "agent_share": x, "human_share": x}``
        where the shares count a mixed task half to each.
    """
    counts = {"agent": 0, "human": 0, "mixed": 0, "undecomposed": 0}
    for task in executable_tasks(plan):
        humans = [s.human_required for s in task.subtasks]
        kind = "undecomposed" if not humans else "human" if all(humans) else "mixed" if any(humans) else "agent"
        counts[kind] += 1
    total = sum(counts.values()) or 1
    return {
        **counts,
        "agent_share": round((counts["agent"] + counts["mixed"] / 2) / total, 3),
        "human_share": round((counts["human"] + counts["mixed"] / 2) / total, 3),
    }
