"""Audit an execution's history: its events in AX_EVENTS against the read model's copy, and each against its chain.

Each copy is checked against the execution's hash chain (readmodel/audit_chain.py: the coordinator's
``prev_hash`` and signed ``audit_checkpoint`` events), and :func:`compare` walks both copies by stream
sequence and names each event that differs: changed (same sequence, other content), missing from the read
model, or in the read model but not in the stream. Where one copy's chain holds and the other's breaks, it
says which copy was altered.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from planexe_ax.bus import AGENT_REPORTS, Bus, ExecutionCreated, decode_event_on, with_plan
from planexe_ax.bus.audit_chain import link, trusted_keys
from planexe_ax.bus.replay import execution_events
from planexe_ax.config import Settings
from planexe_ax.errors import PlanUnavailable
from planexe_ax.readmodel.audit_chain import AuditProblem, ChainVerdict, as_model, check_chain
from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.events import stored_events

READ_TIMEOUT_S = 5.0

Events = list[tuple[int, dict[str, Any]]]


class AuditReport(BaseModel):
    """The verdict: ``ok`` when both copies agree and hold to their chain; the chain head of the stream's events."""

    model_config = ConfigDict(frozen=True)

    execution_id: str
    ok: bool
    events: int
    head: str
    problems: list[AuditProblem]
    checkpoints: int = 0
    """Signed checkpoints in the stream that a trusted key verifies."""
    signed_up_to: int = 0
    """The stream sequence the latest of them covers."""


def chain_head(events: Events) -> str:
    """The hash chain's head over ``events`` in order (hex; empty for no events)."""
    head = ""
    for _, data in events:
        event = as_model(data)
        if event is not None:
            head = link(head, event)
    return head


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """An event's fields without those that are null (absent from events stored before the field existed)."""
    return {k: v for k, v in data.items() if v is not None}


def _differing(a: dict[str, Any], b: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def _as_projected(row: dict[str, Any]) -> bool:
    """Whether a read-model row is what the projector writes for the event it holds (no key added or mangled)."""
    event = as_model(row)
    return event is not None and _plain(row) == _plain(event.model_dump(mode="json", by_alias=True))


def _which(seq: int, stream: ChainVerdict, model: ChainVerdict) -> str:
    """Which copy the chains say was altered at ``seq``: '' when they cannot tell."""
    if stream.holds_at(seq) and not model.holds_at(seq):
        return "read model"
    if model.holds_at(seq) and not stream.holds_at(seq):
        return "stream"
    return ""


def compare(execution_id: str, stream: Events, model: Events, trusted: frozenset[str] = frozenset()) -> AuditReport:
    """Check both copies of the history against their chains and name every event that differs between them."""
    left, right = {q: _plain(e) for q, e in stream}, {q: _plain(e) for q, e in model}
    chains = [
        check_chain(side, [(seq, as_model(data)) for seq, data in copy], trusted)
        for side, copy in (("stream", stream), ("read model", model))
    ]
    on_stream, on_model = chains
    problems: list[AuditProblem] = []
    for seq in sorted(left.keys() | right.keys()):
        s, r = left.get(seq), right.get(seq)
        altered = _which(seq, on_stream, on_model)
        if s is not None and r is not None and s != r:
            altered = altered if _as_projected(r) else "read model"
            where = f"in the {altered}" if altered else "in the read model (or the stream)"
            what = f"changed {where}: {_differing(s, r)} differ"
            problems.append(AuditProblem(seq=seq, event_id=s.get("event_id"), problem=what, kind="changed"))
        elif s is None and r is not None:
            how = {"stream": "deleted from the stream", "read model": "inserted in the read model"}.get(
                altered, "deleted from the stream, or inserted in the read model"
            )
            what = f"in the read model but not in the stream: {how}"
            problems.append(AuditProblem(seq=seq, event_id=r.get("event_id"), problem=what, kind="extra"))
        elif r is None and s is not None:
            how = {"stream": "inserted in the stream", "read model": "deleted from the read model"}.get(
                altered, "deleted from it, or not projected yet"
            )
            what = f"in the stream but not in the read model: {how}"
            problems.append(AuditProblem(seq=seq, event_id=s.get("event_id"), problem=what, kind="missing"))
    problems += on_stream.problems + on_model.problems
    problems = sorted(dict.fromkeys(problems), key=lambda p: p.seq)  # a forged checkpoint in both copies: once
    return AuditReport(
        execution_id=execution_id,
        ok=not problems,
        events=len(stream),
        head=chain_head(stream),
        problems=problems,
        checkpoints=on_stream.checkpoints,
        signed_up_to=on_stream.signed_up_to,
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
    lines, head = [], ""
    for seq, event in events:
        model = as_model(event)
        head = link(head, model) if model is not None else head
        entry = {"seq": seq, "event_id": event.get("event_id"), "type": event.get("type"), "ts": event.get("ts"),
                 "who": who(event), "chain": head, "event": event}  # fmt: skip
        lines.append(json.dumps(entry, ensure_ascii=False))
    return lines


async def stream_history(bus: Bus, execution_id: str) -> Events:
    """Every stored event of the execution in stream order, decoded as the read model keeps them."""
    found: Events = []
    async with execution_events(bus, execution_id, after_seq=0) as events:
        async for got in events.through(await events.last_stored(), READ_TIMEOUT_S):
            try:
                event = decode_event_on(bus.subjects, got.subject, got.data)
                if isinstance(event, ExecutionCreated):  # the read model keeps a plan sent by reference with it
                    event = await with_plan(bus, event)
                data = event.model_dump(mode="json", by_alias=True)
            except (ValueError, PlanUnavailable) as exc:  # undecodable, on another's subject, or its plan missing
                data = {"undecodable": str(exc)[:200]}
            found.append((got.seq, data))
    return found


def audit_keys(settings: Settings) -> frozenset[str]:
    """The public keys whose checkpoints are believed (``PLANEXE_AUDIT_PUBLIC_KEYS`` and the signing key's .pub)."""
    return trusted_keys(settings.audit_public_keys, settings.effective_audit_key_file.with_suffix(".pub"))


async def verify(bus: Bus, sessions: Sessions, execution_id: str) -> AuditReport:
    """Read both copies of the execution's history, check each against its chain and compare them."""
    stream = await stream_history(bus, execution_id)
    model = await stored_events(sessions, execution_id)
    return compare(execution_id, stream, model, audit_keys(bus.settings))
