"""Decode bus messages: run the upcaster chain of the message's (type, version), then validate."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from planexe_ax.bus.messages import AGENT_REPORTS, COMMAND_ADAPTER, EVENT_ADAPTER, Command, Event, EventBase
from planexe_ax.bus.subjects import Subjects

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _plan_inline(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 of ``start`` and ``execution_created``: v2 may carry ``plan_ref`` instead of the plan; v1 never did."""
    return {**raw, "plan_ref": None}


# (type, from_version) -> pure function returning the message at from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {("start", 1): _plan_inline, ("execution_created", 1): _plan_inline}
CURRENT_VERSION: dict[str, int] = {}


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a raw message to the current version of its type (one whose version is no number: left to validation)."""
    kind = str(raw.get("type", ""))
    try:
        version = int(raw.get("version", 1))
    except (TypeError, OverflowError):  # null, a list, 1e999: no upcaster applies, and validation refuses it
        return raw
    while (step := UPCASTERS.get((kind, version))) is not None:
        raw = step(raw)
        version += 1
        raw["version"] = version
    return raw


def _upcast_object(raw: Any) -> Any:
    """``raw`` upcast when it is a JSON object; anything else (a list, null, a number) is left to validation."""
    return upcast(raw) if isinstance(raw, dict) else raw


def decode_event(data: bytes) -> Event:
    """Bytes of an event to its model.

    Raises:
        ValueError: (pydantic's ValidationError or json's JSONDecodeError) on a malformed or unknown event.
    """
    return EVENT_ADAPTER.validate_python(_upcast_object(json.loads(data)))


def decode_command(data: bytes) -> Command:
    """Bytes of a command to its model; raises ValueError on a malformed or unknown command."""
    return COMMAND_ADAPTER.validate_python(_upcast_object(json.loads(data)))


def event_subject(subjects: Subjects, event: EventBase) -> str:
    """The subject ``event`` is published on: a report carries its agent's id, a decision does not."""
    kind = str(getattr(event, "type"))  # noqa: B009 - every concrete event has a Literal type
    if kind in AGENT_REPORTS and event.agent_id:
        return subjects.report(event.execution_id, kind, event.agent_id)
    return subjects.event(event.execution_id, kind)


def decode_event_on(subjects: Subjects, subject: str, data: bytes) -> Event:
    """Decode an event read from ``subject`` and check that it belongs there.

    The server lets an agent publish only on subjects that carry its id; this ties the body to the
    subject, so a report names the agent that sent it and no one but the coordinator (who alone may
    publish on decision subjects) can make a decision. A report on a decision subject is accepted: only
    the coordinator could have put it there (events stored before reports carried the agent id).

    Raises:
        ValueError: when the body does not decode, or names another execution, type or agent than the subject.
    """
    event = decode_event(data)
    kind = str(getattr(event, "type"))  # noqa: B009 - every concrete event has a Literal type
    if subject not in (event_subject(subjects, event), subjects.event(event.execution_id, kind)):
        raise ValueError(f"a {kind} event of execution {event.execution_id} by {event.agent_id} cannot be on {subject}")
    return event
