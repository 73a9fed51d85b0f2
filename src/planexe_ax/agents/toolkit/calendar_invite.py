"""``schedule_calendar_event``: write an iCalendar (RFC 5545) invitation, times in UTC.

The event UID is derived from the execution and subtask, so a retried attempt updates the same
event in the attendee's calendar instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import rel, slug, write_text

PRODID = "-//PlanExe-AX//agents//EN"


class ScheduleCalendarEventParams(BaseModel):
    """Parameters of ``schedule_calendar_event``."""

    contact: str = Field(min_length=1, description="Attendee: 'Name <email>', an email, or a name.")
    date: dt.date = Field(description="Day of the event, YYYY-MM-DD, in ``timezone``.")
    time: dt.time = Field(description="Start, HH:MM, in ``timezone``.")
    agenda: str = Field(default="", description="What the meeting is for; the first line is the title.")
    duration_min: int = Field(default=30, ge=5, le=480)
    timezone: str = Field(default="UTC", description="IANA zone of date and time, e.g. America/New_York.")
    location: str = Field(default="", description="Place, phone number or meeting link.")
    organizer: str = Field(default="planexe-ax@localhost", description="Organizer's email address.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as America/New_York") from exc
        return value


def escape_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11)."""
    return (
        value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\r\n", "\\n").replace("\n", "\\n")
    )


def fold(line: str, limit: int = 75) -> str:
    """Fold a content line at ``limit`` octets without splitting a UTF-8 character (RFC 5545 3.1)."""
    parts: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append(current)
            current, size = " ", 1
        current += char
        size += width
    parts.append(current)
    return "\r\n".join(parts)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _attendee(contact: str) -> str | None:
    name, address = parseaddr(contact)
    if "@" not in address:
        return None
    cn = (name or address).replace('"', "'")
    return f'ATTENDEE;CN="{cn}";ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:{address}'


def build_ics(params: ScheduleCalendarEventParams, uid: str, now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    """The invitation text (CRLF lines) and its start and end in UTC."""
    start = dt.datetime.combine(params.date, params.time, tzinfo=ZoneInfo(params.timezone)).astimezone(dt.UTC)
    end = start + dt.timedelta(minutes=params.duration_min)
    name = parseaddr(params.contact)[0] or params.contact
    title = (params.agenda.strip().splitlines() or ["Meeting"])[0][:120]
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:REQUEST",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{_utc(now)}",
        f"DTSTART:{_utc(start)}",
        f"DTEND:{_utc(end)}",
        f"SUMMARY:{escape_text(f'{title} with {name}')}",
        f"DESCRIPTION:{escape_text(params.agenda)}",
        f"ORGANIZER:mailto:{parseaddr(params.organizer)[1] or params.organizer}",
    ]
    if params.location:
        lines.append(f"LOCATION:{escape_text(params.location)}")
    attendee = _attendee(params.contact)
    if attendee:
        lines.append(attendee)
    lines += ["STATUS:CONFIRMED", "SEQUENCE:0", "END:VEVENT", "END:VCALENDAR"]
    return "".join(fold(line) + "\r\n" for line in lines), start, end


@capability("schedule_calendar_event")
async def schedule_calendar_event(params: ScheduleCalendarEventParams, ctx: TaskContext) -> dict[str, Any]:
    """Write an .ics invitation (UTC times) for a meeting with a contact into invites/."""
    uid = f"{ctx.execution_id}-{ctx.subtask_id}@planexe-ax"
    text, start, end = build_ics(params, uid, dt.datetime.now(dt.UTC))
    name = f"{slug(parseaddr(params.contact)[0] or params.contact, 32)}-{params.date.isoformat()}-{ctx.subtask_id}.ics"
    path = write_text(ctx.output_dir / "invites" / name, text, newline="")
    await ctx.progress(100, f"invitation written for {params.contact}")
    return {
        "file": rel(ctx.output_dir, path),
        "uid": uid,
        "start_utc": start.isoformat(),
        "end_utc": end.isoformat(),
        "contact": params.contact,
    }
