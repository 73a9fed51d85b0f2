"""Audit an execution's history: its events in AX_EVENTS against the read model's copy, as one hash chain.

The chain runs over the stream's events in order: ``head_i = sha256(head_{i-1} + canonical JSON of event i)``.
:func:`compare` walks both sides by stream sequence and names each event that differs: changed (same sequence,
other content), missing from the read model, or in the read model but not in the stream (deleted from the
stream, or inserted into the read model).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from planexe_ax.bus import AGENT_REPORTS, Bus, ExecutionCreated, decode_event, with_plan
from planexe_ax.bus.replay import execution_events
from planexe_ax.errors import PlanUnavailable
from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.events import stored_events

READ_TIMEOUT_S = 5.0

Events = list[tuple[int, dict[str, Any]]]


class AuditProblem(BaseModel):
    """One event that is not the same on both sides."""

    model_config = ConfigDict(frozen=True)

    seq: int
    event_id: str | None
    problem: str


class AuditReport(BaseModel):
    """The verdict: ``ok`` when both sides hold the same events; the chain head of the stream's events."""

    model_config = ConfigDict(frozen=True)

    execution_id: str
    ok: bool
    events: int
    head: str
    problems: list[AuditProblem]


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes an event is hashed as: sorted keys, no spaces."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_head(events: Events) -> str:
    """The hash chain's head over ``events`` in order (hex; empty for no events)."""
    head = b""
    for _, event in events:
        head = hashlib.sha256(head + canonical(event)).digest()
    return head.hex()


def _differing(a: dict[str, Any], b: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def compare(execution_id: str, stream: Events, model: Events) -> AuditReport:
    """Name every event that differs between the stream's and the read model's copies of the history."""
    left, right = dict(stream), dict(model)
    problems: list[AuditProblem] = []
    for seq in sorted(left.keys() | right.keys()):
        s, r = left.get(seq), right.get(seq)
        if s is not None and r is not None and s != r:
            what = f"changed in the read model (or the stream): {_differing(s, r)} differ"
            problems.append(AuditProblem(seq=seq, event_id=s.get("event_id"), problem=what))
        elif s is None and r is not None:
            what = "in the read model but not in the stream: deleted from the stream, or inserted in the read model"
            problems.append(AuditProblem(seq=seq, event_id=r.get("event_id"), problem=what))
        elif r is None and s is not None:
            what = "in the stream but not in the read model: deleted from it, or not projected yet"
            problems.append(AuditProblem(seq=seq, event_id=s.get("event_id"), problem=what))
    return AuditReport(
        execution_id=execution_id, ok=not problems, events=len(stream), head=chain_head(stream), problems=problems
    )


def who(event: dict[str, Any]) -> str:
    """Who did what ``event`` records: the person (``by``), the agent that reported, else the coordinator."""
    if event.get("by"):
        return f"person:{event['by']}"
    if event.get("agent_id") and event.get("type") in AGENT_REPORTS:
        return f"agent:{event['agent_id']}"
    return "coordinator"


def export_lines(events: Events) -> list[str]:
    """The history as JSON Lines for an auditor: each event with who did it and the chain head up to it."""
    lines, head = [], b""
    for seq, event in events:
        head = hashlib.sha256(head + canonical(event)).digest()
        entry = {"seq": seq, "event_id": event.get("event_id"), "type": event.get("type"), "ts": event.get("ts"),
                 "who": who(event), "chain": head.hex(), "event": event}  # fmt: skip
        lines.append(json.dumps(entry, ensure_ascii=False))
    return lines


async def stream_history(bus: Bus, execution_id: str) -> Events:
    """Every stored event of the execution in stream order, decoded as the read model keeps them."""
    found: Events = []
    async with execution_events(bus, execution_id, after_seq=0) as events:
        total = await events.stored()
        while len(found) < total:
            got = await events.next(READ_TIMEOUT_S)
            if got is None:
                break
            try:
                event = decode_event(got.data)
                if isinstance(event, ExecutionCreated):  # the read model keeps a plan sent by reference with it
                    event = await with_plan(bus, event)
                data = event.model_dump(mode="json", by_alias=True)
            except (ValueError, PlanUnavailable) as exc:  # an undecodable message (or plan) is a difference too
                data = {"undecodable": str(exc)[:200]}
            found.append((got.seq, data))
    return found


async def verify(bus: Bus, sessions: Sessions, execution_id: str) -> AuditReport:
    """Read both copies of the execution's history and compare them."""
    return compare(execution_id, await stream_history(bus, execution_id), await stored_events(sessions, execution_id))
