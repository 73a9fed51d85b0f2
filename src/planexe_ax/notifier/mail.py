"""Who is told of an inbox item, and the mail that tells them."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from planexe_ax.bus import InboxOpened, utcnow

EVERY_KIND = "*"


def recipients(configured: dict[str, list[str]], plan_notify: Any, kind: str) -> list[str]:
    """The addresses to tell of an inbox item of ``kind``, each once, in the order configured.

    Args:
        configured: PLANEXE_NOTIFY_TO: inbox kind or ``*`` -> addresses.
        plan_notify: The plan's ``metadata.notify``: the same mapping, or a list of addresses for every kind.
        kind: approval, review, escalation, human_task or acknowledge.
    """
    found: list[str] = []
    plan_map = {EVERY_KIND: plan_notify} if isinstance(plan_notify, list) else plan_notify
    for mapping in (configured, plan_map if isinstance(plan_map, dict) else {}):
        for key in (kind, EVERY_KIND):
            value = mapping.get(key, [])
            found += (
                [str(a).strip() for a in value if isinstance(a, str) and "@" in a] if isinstance(value, list) else []
            )
    return list(dict.fromkeys(found))


def answer_link(dashboard_url: str, item_id: str, token: str) -> str:
    """The dashboard page that answers ``item_id`` with the one-time ``token`` (in the fragment: never logged)."""
    return f"{dashboard_url}/answer#item={quote(item_id)}&token={quote(token)}"


def message(event: InboxOpened, to: str, sender: str, link: str, plan_title: str) -> EmailMessage:
    """The notification of ``event`` to ``to``; its Message-ID is the same for every try of one item and address."""
    msg = EmailMessage()
    what = event.title or event.action or event.kind
    msg["Subject"] = f"[{plan_title}] {event.kind.replace('_', ' ')}: {what}"
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(utcnow())
    tag = hashlib.sha256(f"{event.item_id}\n{to}".encode()).hexdigest()[:24]
    msg["Message-ID"] = f"<inbox-{event.item_id}-{tag}@planexe-ax>"
    lines = [
        f"An inbox item of execution {event.execution_id} waits for you: {event.kind.replace('_', ' ')}.",
        "",
        f"Title:  {what}",
        f"Task:   {event.task_id or '-'}",
        f"Reason: {event.reason or '-'}",
        f"Answers: {', '.join(event.actions) or '-'}",
        "",
        "Answer it here (this link answers this item once, for you only):",
        link,
    ]
    msg.set_content("\n".join(lines) + "\n")
    return msg
