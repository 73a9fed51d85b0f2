"""What agents offer, and the params each built-in action gets from a task.

:func:`capabilities_from_cards` turns the agent cards of the registry (KV ``ax-agents``) into the
set of actions a decomposer may use. :func:`params_for` builds the params of one action for one
task, in the shape the built-in toolkit validates (``agents/toolkit``). When a task does not give
what an action cannot do without (an address to write to, a phone number, a website, a date), it
returns ``None`` with the reason from :func:`needs`: the decomposer then does not propose that
action, rather than invent the input.

The coordinator does not import the agents package (services share only ``planexe_ax.bus``), so
the shapes here are kept in step with the toolkit by a test that validates every proposed step of
every sample plan against the built-in agents' params models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from planexe_ax.bus import AgentCard
from planexe_ax.bus.plan import Plan, Task

SEARCH_URL = "https://en.wikipedia.org/w/index.php?fulltext=1&search={query}"
SEARCH_SELECTOR = ".mw-search-result-heading"
TABLE_COLUMNS = ["item", "owner", "status", "due", "notes"]
DOCUMENT_TEMPLATE = (
    "# {title}\n\nProject: {project}\n\n## Purpose\n\n{brief}\n\n## Prepared for\n\n{audience}\n\n"
    "## Content\n\n{outline}\n"
)
MAX_QUOTE_HOURS = 10_000.0
MEETING_TIME = "09:00"

_URL = re.compile(r"https?://[^\s)\]\"'<>,;]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\(?\d[\d ().-]{5,}\d")
_SLUG = re.compile(r"[^a-z0-9]+")

_NEEDS = {
    "send_email": "an email address in the task",
    "make_phone_call": "a phone number in the task",
    "analyze_website": "a website address (http...) in the task",
    "web_scrape": "a website address (http...) in the task",
    "schedule_calendar_event": "a planned date (the plan has no start time)",
}


def capabilities_from_cards(cards: Iterable[AgentCard]) -> set[str]:
    """The actions offered by the registered agents.

    Args:
        cards: Agent cards, as kept in KV ``ax-agents`` (or built with ``Agent.card()``).

    Returns:
        Every action at least one card offers.
    """
    return {cap.action for card in cards for cap in card.capabilities}


def needs(action: str) -> str:
    """What ``action`` needs from a task that :func:`params_for` did not find."""
    return _NEEDS.get(action, "inputs the task does not give")


def params_for(action: str, task: Task, plan: Plan) -> dict[str, Any] | None:
    """The params of ``action`` for ``task``, or ``None`` when the task lacks an input it needs.

    Args:
        action: A built-in action; other actions get ``{"task": title, "instructions": ...}``.
        task: The task.
        plan: Its plan (title, start time and baseline).

    Returns:
        Params in the shape of the action's params model, or ``None``.
    """
    build = _BUILDERS.get(action)
    if build is None:
        return {"task": task.title, "instructions": task.description or task.title}
    return build(task, plan)


def _text(task: Task) -> str:
    return f"{task.title}\n{task.description}"


def _brief(task: Task) -> str:
    return task.description or task.title or task.task_id


def _name(task: Task) -> str:
    return task.title.strip() or task.task_id


def _slug(value: str, limit: int = 40) -> str:
    return _SLUG.sub("-", value.lower()).strip("-")[:limit].strip("-") or "table"


def _phone(text: str) -> str | None:
    for match in _PHONE.finditer(text):
        if 7 <= len(re.sub(r"\D", "", match.group(0))) <= 15:
            return match.group(0).strip()
    return None


def _search(task: Task, plan: Plan) -> dict[str, Any]:
    return {"query": _name(task)[:200], "max_results": 20}


def _scrape(task: Task, plan: Plan) -> dict[str, Any] | None:
    # Only a page the task names: a search engine guessed from the title would be a page nobody asked for,
    # and it needs the internet, which an agent may not have.
    found = _URL.search(_text(task))
    return {"url": found.group(0), "css_selector": "", "max_matches": 50} if found else None


def _analyze(task: Task, plan: Plan) -> dict[str, Any] | None:
    found = _URL.search(_text(task))
    return {"url": found.group(0)} if found else None


def _email(task: Task, plan: Plan) -> dict[str, Any] | None:
    found = _EMAIL.search(_text(task))
    if not found:
        return None
    return {"to": [found.group(0)], "subject": _name(task)[:300], "body": _brief(task)}


def _call(task: Task, plan: Plan) -> dict[str, Any] | None:
    phone = _phone(_text(task))
    if phone is None:
        return None
    return {"phone": phone, "script": _brief(task), "contact_name": task.assignee_role or "", "record": True}


def planned_date(task: Task, plan: Plan) -> date | None:
    """The day the baseline plans ``task`` to start: the plan's start plus its earliest start in working days.

    Returns:
        The date, or ``None`` when the plan has no start time.
    """
    if plan.start_time is None:
        return None
    times = plan.metadata.get("baseline", {}).get("tasks", {}).get(task.task_id, {})
    return add_working_days(plan.start_time, int(times.get("earliest_start", 0.0)))


def add_working_days(start: datetime | date, days: int) -> date:
    """``start`` (moved to Monday when on a weekend) plus ``days`` working days (Monday to Friday)."""
    day = start.date() if isinstance(start, datetime) else start
    while day.weekday() >= 5:
        day += timedelta(days=1)
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def _meeting(task: Task, plan: Plan) -> dict[str, Any] | None:
    day = planned_date(task, plan)
    if day is None:
        return None
    return {
        "contact": task.assignee_role or "Project team",
        "date": day.isoformat(),
        "time": MEETING_TIME,
        "timezone": "UTC",
        "duration_min": 60,
        "agenda": f"{_name(task)}\n{task.description}".strip(),
    }


def _document(task: Task, plan: Plan) -> dict[str, Any]:
    audience = ", ".join(task.resources_needed) or task.assignee_role or "the project team"
    return {
        "template": DOCUMENT_TEMPLATE,
        "variables": {
            "title": _name(task),
            "project": plan.title or plan.plan_id,
            "brief": _brief(task),
            "audience": audience,
            "outline": "To be completed from the brief above.",
        },
        "output_format": "markdown",
    }


def _wireframes(task: Task, plan: Plan) -> dict[str, Any]:
    product = plan.title or plan.plan_id
    return {"description": f"{product}: {_name(task)}"[:300], "format": "html"}


def _quote(task: Task, plan: Plan) -> dict[str, Any]:
    hours = min(MAX_QUOTE_HOURS, max(1.0, task.estimated_hours or 8.0))
    feature = {"name": _name(task)[:200], "hours": round(hours, 2), "description": task.description}
    return {"features": [feature], "client": plan.title, "output_format": "markdown"}


def _table(task: Task, plan: Plan) -> dict[str, Any]:
    path = f"tables/{_slug(_name(task))}-{_slug(task.task_id, 8)}.csv"
    return {"operation": "write", "file_path": path, "columns": list(TABLE_COLUMNS), "data": []}


_BUILDERS: dict[str, Callable[[Task, Plan], dict[str, Any] | None]] = {
    "search_google_maps": _search,
    "web_scrape": _scrape,
    "analyze_website": _analyze,
    "send_email": _email,
    "make_phone_call": _call,
    "schedule_calendar_event": _meeting,
    "draft_document": _document,
    "create_wireframes": _wireframes,
    "build_quote": _quote,
    "manage_csv": _table,
}
