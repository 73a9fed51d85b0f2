"""The built-in agents: three roles that together offer every action of the prospecting toolkit."""

from __future__ import annotations

import os
import re
import socket

from planexe_ax.agents.sdk import Agent
from planexe_ax.agents.toolkit import (
    analyze_website,
    build_quote,
    create_wireframes,
    draft_document,
    make_phone_call,
    manage_csv,
    schedule_calendar_event,
    search_google_maps,
    send_email,
    web_scrape,
)
from planexe_ax.config import Settings

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def default_suffix() -> str:
    """``<host>-<pid>``, lower-case and safe as a subject token, so several processes can run side by side."""
    host = _UNSAFE.sub("-", socket.gethostname().lower()).strip("-")[:24] or "host"
    return f"{host}-{os.getpid()}"


def builtin_agents(settings: Settings, suffix: str | None = None) -> list[Agent]:
    """The researcher, outreach and writer agents.

    Args:
        settings: Process settings; they decide how outreach describes its email delivery.
        suffix: Appended to each agent id (``researcher-<suffix>``); default :func:`default_suffix`.

    Returns:
        Three agents covering all ten toolkit actions.

    Raises:
        ValueError: When the suffix makes an id that is not a safe token.
    """
    tail = default_suffix() if suffix is None else suffix
    ident = (lambda role: f"{role}-{tail}") if tail else (lambda role: role)
    email_via = "SMTP" if settings.smtp_url else "the outbox folder"
    return [
        Agent(
            ident("researcher"),
            "Researcher",
            role="Finds and qualifies prospects: map search (simulated), scraping, website scoring, CSV lists",
            capabilities=[search_google_maps, web_scrape, analyze_website, manage_csv],
        ),
        Agent(
            ident("outreach"),
            "Outreach",
            role=f"Contacts prospects: email via {email_via}, phone calls (simulated), calendar invitations",
            capabilities=[send_email, make_phone_call, schedule_calendar_event],
        ),
        Agent(
            ident("writer"),
            "Writer",
            role="Writes documents, wireframes and quotes",
            capabilities=[draft_document, create_wireframes, build_quote],
        ),
    ]
