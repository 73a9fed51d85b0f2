"""Decompose executable tasks into subtasks that agents (or people) can do.

The rule-based decomposer is deterministic: templates keyed on the kind of work the task's title
names (its leading verb and object), adjusted by its roles (``resources_needed``, ``assignee_role``) and
its kind (desk work or hands-on work). Each template proposes steps with an ``action`` from the
capability registry, params, a ``decomposition_confidence`` (0..1) and the reason. What matches no
capability, or only below the threshold, becomes human work: one subtask with
``action="human_task"`` and ``human_required=True``. Hands-on work (install, purchase, hire, inspect,
...) gets a human step after the agent steps that prepare it.

An LLM decomposer plugs in through :class:`AsyncTaskDecomposer`; whatever it proposes goes through
:func:`apply_threshold`, so an unknown action or a low confidence still becomes human work.

Summary tasks (tasks that other tasks name as ``parent_id``) are not executable and get no subtasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from planexe_ax.bus.plan import Plan, Subtask, Task
from planexe_ax.plans.capabilities import needs, params_for
from planexe_ax.plans.decompose_rules import (
    DEFAULT_CAPABILITIES,
    DEFAULT_THRESHOLD,
    DESK_ROLE_BONUS,
    DESK_ROLES,
    EXTRA_MATCH_BONUS,
    HANDS_ON,
    HANDS_ON_PENALTY,
    HANDS_ON_ROLE_PENALTY,
    HANDS_ON_ROLES,
    HUMAN_ACTION,
    MAX_AGENT_STEPS,
    ROLE_BONUS,
    TEMPLATES,
    TITLE_BONUS,
    Template,
    leading_verbs,
)

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_THRESHOLD",
    "HUMAN_ACTION",
    "TEMPLATES",
    "AsyncTaskDecomposer",
    "RuleBasedDecomposer",
    "TaskDecomposer",
    "Template",
    "apply_threshold",
    "decompose_plan",
    "decompose_plan_async",
    "decomposition_summary",
    "executable_tasks",
    "human_step",
    "score_templates",
    "with_subtasks",
]


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
    """Score every template (offered by ``capabilities``) whose kind of work the task's title names, best first.

    The title decides (its leading verb and its object); roles that fit the action add a little, hands-on
    roles and wording take some away.

    Args:
        task: The task.
        capabilities: The actions agents offer.

    Returns:
        One match per template, with the score and the reason for it.
    """
    roles = " ".join([*task.resources_needed, task.assignee_role or ""])
    verbs = leading_verbs(task.title)
    matches = [
        m for tpl in TEMPLATES if tpl.action in capabilities and (m := _score(tpl, task, verbs, roles)) is not None
    ]
    bonus = min(EXTRA_MATCH_BONUS * (len(matches) - 1), 2 * EXTRA_MATCH_BONUS) if matches else 0.0
    ranked = [_Match(m.template, _clamp(m.score + bonus), m.reason) for m in matches]
    return sorted(ranked, key=lambda m: (-m.score, TEMPLATES.index(m.template)))


def _title_names(tpl: Template, title: str, verbs: list[str]) -> str | None:
    """What in ``title`` names ``tpl``'s work, or None."""
    if tpl.any_object is not None:
        verb = next((v for v in verbs if tpl.any_object.fullmatch(v)), None)
        if verb is not None:
            return f"'{verb}' leads the title"
    if tpl.verbs is not None and not any(tpl.verbs.fullmatch(v) for v in verbs):
        return None
    hit = tpl.pattern.search(title)
    if hit is None:
        return None
    return f"'{verbs[0]} … {hit.group(0)}' in the title" if tpl.verbs is not None else f"'{hit.group(0)}' in the title"


def _score(tpl: Template, task: Task, verbs: list[str], roles: str) -> _Match | None:
    named = _title_names(tpl, task.title, verbs)
    if named is None:
        return None
    score, why = tpl.confidence + TITLE_BONUS, [named]
    role = tpl.roles.search(roles) if tpl.roles and roles.strip() else None
    if role is not None:
        score += ROLE_BONUS
        why.append(f"role fits ('{role.group(0)}')")
    if DESK_ROLES.search(roles):
        score += DESK_ROLE_BONUS
        why.append("desk role")
    if HANDS_ON_ROLES.search(roles):
        score -= HANDS_ON_ROLE_PENALTY
        why.append("hands-on role")
    if tpl.verbs is None and HANDS_ON.search(task.title):
        score -= HANDS_ON_PENALTY  # a verb gate already said what kind of work it is
        why.append("hands-on work")
    return _Match(tpl, score, ", ".join(why))


@dataclass(frozen=True)
class RuleBasedDecomposer:
    """Deterministic decomposer from wording and role templates.

    Args:
        capabilities: The actions agents offer (for example :func:`capabilities_from_cards` of the
            registered agents); templates for other actions are skipped.
        threshold: Below this confidence, a step becomes human work.
    """

    capabilities: frozenset[str] = DEFAULT_CAPABILITIES
    threshold: float = DEFAULT_THRESHOLD

    def decompose_task(self, task: Task, plan: Plan) -> list[Subtask]:
        """Return agent steps for what the wording supports, and a human step for the rest.

        A matching action whose inputs the task does not give (an address, a phone number, a
        website, a date) is not proposed; the reason says so when the work falls to people.

        Args:
            task: An executable task.
            plan: The plan it belongs to (for context in params).

        Returns:
            One or more subtasks, ids ``<task_id>-<n>``.
        """
        matches = score_templates(task, self.capabilities)
        chosen: list[tuple[_Match, dict[str, Any]]] = []
        lacking: list[str] = []
        for m in matches:
            params = params_for(m.template.action, task, plan) if m.score >= self.threshold else None
            if params is None and m.score >= self.threshold:
                lacking.append(f"{m.template.action} needs {needs(m.template.action)}")
            elif params is not None and len(chosen) < MAX_AGENT_STEPS:
                chosen.append((m, params))
        subtasks = [
            _subtask(
                task,
                i,
                m.template.action,
                f"{m.template.step}: {task.title}",
                params,
                m.score,
                f"{m.template.action} matched ({m.reason}); confidence {m.score}",
            )
            for i, (m, params) in enumerate(chosen, start=1)
        ]
        if not chosen:
            subtasks.append(human_step(task, 1, *_human_why(matches, lacking, self.threshold)))
        elif HANDS_ON.search(task.title):
            subtasks.append(
                human_step(task, len(subtasks) + 1, 0.8, "hands-on work an agent cannot do; agents prepare it")
            )
        return subtasks


def _human_why(matches: list[_Match], lacking: list[str], threshold: float) -> tuple[float, str]:
    if lacking:
        return 0.8, "human work: " + "; ".join(lacking)
    best = matches[0] if matches else None
    if best is None:
        return 1.0, "human work: no capability matches the wording or roles"
    why = f"best match {best.template.action} at {best.score} is below the threshold {threshold}"
    return 1.0 - best.score, f"human work: {why}"


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


def human_step(task: Task, n: int, confidence: float, reason: str) -> Subtask:
    """One ``human_task`` step ``<task_id>-<n>`` with the task's instructions, role and resources."""
    params = {
        "instructions": task.description or task.title,
        "role": task.assignee_role,
        "resources_needed": list(task.resources_needed),
    }
    return _subtask(task, n, HUMAN_ACTION, f"Do: {task.title}", params, confidence, reason)


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
    return out or [human_step(task, 1, 1.0, "human work: the decomposer proposed no step")]


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
    proposed = {t.task_id: chosen.decompose_task(t, plan) for t in executable_tasks(plan) if not t.subtasks}
    return with_subtasks(plan, proposed, capabilities=capabilities, threshold=threshold)


async def decompose_plan_async(
    plan: Plan,
    decomposer: AsyncTaskDecomposer,
    *,
    capabilities: Collection[str] = DEFAULT_CAPABILITIES,
    threshold: float = DEFAULT_THRESHOLD,
    concurrency: int = 4,
) -> Plan:
    """:func:`decompose_plan` with an async decomposer (a model), ``concurrency`` tasks at a time.

    Args:
        plan: The plan.
        decomposer: The async decomposer.
        capabilities: The actions agents offer.
        threshold: The least confidence an agent step needs.
        concurrency: How many tasks are decomposed at once.

    Returns:
        A new plan, as :func:`decompose_plan` returns it.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(task: Task) -> tuple[str, list[Subtask]]:
        async with gate:
            return task.task_id, await decomposer.decompose_task(task, plan)

    todo = [t for t in executable_tasks(plan) if not t.subtasks]
    proposed = dict(await asyncio.gather(*(one(t) for t in todo)))
    return with_subtasks(plan, proposed, capabilities=capabilities, threshold=threshold)


def with_subtasks(
    plan: Plan,
    proposed: dict[str, list[Subtask]],
    *,
    capabilities: Collection[str] = DEFAULT_CAPABILITIES,
    threshold: float = DEFAULT_THRESHOLD,
) -> Plan:
    """Put the proposed steps (through :func:`apply_threshold`) into their tasks.

    Args:
        plan: The plan.
        proposed: Task id -> proposed steps; other tasks are left as they are.
        capabilities: The actions agents offer.
        threshold: The least confidence an agent step needs.

    Returns:
        A new plan; a task whose steps are all human work gets ``human_required=True``.
    """
    phases = []
    for phase in plan.phases:
        tasks = []
        for task in phase.tasks:
            if task.task_id in proposed:
                subs = apply_threshold(task, proposed[task.task_id], capabilities=capabilities, threshold=threshold)
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
