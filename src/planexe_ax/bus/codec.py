"""Decode bus messages: run the upcaster chain of the message's (type, version), then validate.

Most messages are of a version no upcaster starts from: they are validated from their bytes at once
(pydantic's ``validate_json``, no ``json.loads`` and no dict in between). A message that decoded to a
(type, version) an upcaster starts from, or that did not decode, is read again the long way (``json.loads``,
the upcasters, ``validate_python``): that path alone gives the decoded model and the error raised.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import TypeAdapter

from planexe_ax.bus.messages import AGENT_REPORTS, COMMAND_ADAPTER, EVENT_ADAPTER, Command, Event, EventBase
from planexe_ax.bus.subjects import Subjects

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
M = TypeVar("M")


def _plan_inline(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 of ``start`` and ``execution_created``: v2 may carry ``plan_ref`` instead of the plan; v1 never did."""
    return {**raw, "plan_ref": None}


# (type, from_version) -> pure function returning the message at from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {("start", 1): _plan_inline, ("execution_created", 1): _plan_inline}
UPCAST_TYPES = frozenset(kind for kind, _ in UPCASTERS)
"""The message types some version of which an upcaster changes."""
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


def _upcast_from(message: Any) -> bool:
    """Whether an upcaster starts from the (type, version) the message was sent as (no version field: 1)."""
    version = message.version if "version" in message.model_fields_set else 1
    return (message.type, version) in UPCASTERS


def _decode(adapter: TypeAdapter[M], data: bytes) -> M:
    """``data`` validated from its bytes when no upcaster applies; else (or when it fails) the long way."""
    try:
        message = adapter.validate_json(data)
    except ValueError:
        pass  # read again below: the long way raises the error it always raised
    else:
        if not _upcast_from(message):
            return message
    raw = json.loads(data)
    return adapter.validate_python(upcast(raw) if isinstance(raw, dict) else raw)


def decode_event(data: bytes) -> Event:
    """Bytes of an event to its model.

    Raises:
        ValueError: (pydantic's ValidationError or json's JSONDecodeError) on a malformed or unknown event.
    """
    return _decode(EVENT_ADAPTER, data)


def decode_command(data: bytes) -> Command:
    """Bytes of a command to its model; raises ValueError on a malformed or unknown command."""
    return _decode(COMMAND_ADAPTER, data)


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
    agent_id = event.agent_id if kind in AGENT_REPORTS else None
    if subject not in _subjects_of(subjects, event.execution_id, kind, agent_id):
        raise ValueError(f"a {kind} event of execution {event.execution_id} by {event.agent_id} cannot be on {subject}")
    return event


def stored_as_sent(event: Event) -> bool:
    """Whether the bytes ``event`` was decoded from by :func:`decode_event_on` are its JSON as the bus writes it.

    True for a decision (which :func:`decode_event_on` reads only from its decision subject, where only the
    coordinator publishes, writing ``model_dump_json(by_alias=True)`` as every service does) of a type no upcaster
    changes: those bytes can be kept as they are. A report, which an agent may write its own way, or a type an
    upcaster changes, is written again from the model.
    """
    return event.type not in _WRITTEN_AGAIN


_WRITTEN_AGAIN = AGENT_REPORTS | UPCAST_TYPES


@functools.lru_cache(maxsize=4096)
def _subjects_of(subjects: Subjects, execution_id: str, kind: str, agent_id: str | None) -> tuple[str, ...]:
    """The subjects an event may be read from: its decision subject and, for a report by an agent, the report's.

    Cached: a bulk consumer reads many events of one execution, kind and agent, and the subjects check every id.
    """
    decision = subjects.event(execution_id, kind)
    return (decision, subjects.report(execution_id, kind, agent_id)) if agent_id else (decision,)
