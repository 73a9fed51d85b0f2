"""Check one copy of an execution's history (the stream's or the read model's) against its hash chain.

The chain (bus/audit_chain.py) is recomputed over the copy's events in order. Its anchors are the ``prev_hash``
of each coordinator event (the head of some earlier prefix) and each ``audit_checkpoint`` whose signature a
trusted key verifies (the head and count up to ``up_to_seq``). An anchor that does not match means an event
between the last anchor that did and this one was changed, removed or inserted: that window is reported once,
and the check starts again from the next signed checkpoint's head. A checkpoint that does not verify is
reported and never trusted; an ended execution must have a checkpoint covering its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from planexe_ax.bus import AGENT_REPORTS
from planexe_ax.bus.audit_chain import link, signature_problem
from planexe_ax.bus.codec import upcast
from planexe_ax.bus.messages import EVENT_ADAPTER, TERMINAL_EXECUTION, AuditCheckpoint, EventBase, ExecutionState


class AuditProblem(BaseModel):
    """One thing that is not as its history says: an event that differs, a broken chain, a bad checkpoint."""

    model_config = ConfigDict(frozen=True)

    seq: int
    event_id: str | None
    problem: str
    kind: str = "changed"
    """changed, missing (from the read model), extra (in the read model only), chain, checkpoint, unsigned_end."""


@dataclass
class ChainVerdict:
    """What the chain says about one copy: its problems, and the windows ``(lo, hi]`` where it breaks."""

    side: str
    head: str = ""
    problems: list[AuditProblem] = field(default_factory=list)
    windows: list[tuple[int, int]] = field(default_factory=list)
    checkpoints: int = 0
    signed_up_to: int = 0

    def holds_at(self, seq: int) -> bool:
        """Whether no break of the chain could be at ``seq``."""
        return not any(lo < seq <= hi for lo, hi in self.windows)


def as_model(data: dict[str, Any]) -> EventBase | None:
    """An event as stored (a dict) back to its model; None when it no longer validates."""
    try:
        event: EventBase = EVENT_ADAPTER.validate_python(upcast(dict(data)))
    except ValueError:
        return None
    return event


@dataclass
class _Walk:
    verdict: ChainVerdict
    trusted: frozenset[str]
    items: list[tuple[int, EventBase]]
    head: str = ""
    count: int = 0
    seen: dict[str, int] = field(default_factory=lambda: {"": 0})
    at: dict[int, tuple[str, int]] = field(default_factory=dict)
    confirmed: int = 0
    broken: bool = False
    last_checkpoint: str = ""

    def run(self) -> None:
        ended = 0
        for index, (seq, event) in enumerate(self.items):
            if event.prev_hash is not None and getattr(event, "type", "") not in AGENT_REPORTS:
                self._prev_hash(seq, event)
            if isinstance(event, AuditCheckpoint):
                self._checkpoint(seq, event, index)
            self._link(seq, event)
            if isinstance(event, ExecutionState) and event.status in TERMINAL_EXECUTION:
                ended = seq
        self.verdict.head = self.head
        if ended and self.verdict.signed_up_to < ended:
            self._problem(
                ended, None, "unsigned_end", f"no signed checkpoint in the {self.verdict.side} covers the "
                f"execution's end (seq {ended}): events after seq {self.verdict.signed_up_to} are not proven",
            )  # fmt: skip

    def _link(self, seq: int, event: EventBase) -> None:
        self.head, self.count = link(self.head, event), self.count + 1
        self.at[seq] = (self.head, self.count)
        self.seen[self.head] = seq

    def _problem(self, seq: int, event_id: str | None, kind: str, text: str) -> None:
        self.verdict.problems.append(AuditProblem(seq=seq, event_id=event_id, problem=text, kind=kind))

    def _break(self, seq: int, event_id: str, hi: int, why: str) -> None:
        if self.broken:
            return  # reported once until a signed checkpoint puts the check back on its feet
        self.broken = True
        self.verdict.windows.append((self.confirmed, hi))
        side = self.verdict.side
        self._problem(
            seq, event_id, "chain", f"the {side}'s hash chain breaks: an event after seq {self.confirmed} and up to "
            f"seq {hi} was changed, removed or inserted in the {side} ({why})",
        )  # fmt: skip

    def _prev_hash(self, seq: int, event: EventBase) -> None:
        found = self.seen.get(event.prev_hash or "")
        if found is not None:
            self.confirmed = max(self.confirmed, found)
        else:
            self._break(seq, event.event_id, seq - 1, "this event's prev_hash is the head of no earlier prefix")

    def _checkpoint(self, seq: int, cp: AuditCheckpoint, index: int) -> None:
        why = signature_problem(cp, self.trusted)
        if why is not None:
            self._problem(seq, cp.event_id, "checkpoint", why)
            return
        self.verdict.checkpoints += 1
        self.verdict.signed_up_to = max(self.verdict.signed_up_to, cp.up_to_seq)
        if cp.prev_checkpoint != self.last_checkpoint:
            self._problem(
                seq, cp.event_id, "checkpoint", f"the checkpoint follows {cp.prev_checkpoint or 'none'}, but the "
                f"{self.verdict.side} holds {self.last_checkpoint or 'none'} before it: a checkpoint was removed",
            )  # fmt: skip
        self.last_checkpoint = cp.event_id
        mine = self.at.get(cp.up_to_seq)
        if mine == (cp.head_hash, cp.count):
            self.confirmed, self.broken = cp.up_to_seq, False
            return
        have = f"{mine[1]} events, head {mine[0][:12]}…" if mine else f"no event at seq {cp.up_to_seq}"
        why = f"the signed checkpoint has {cp.count} events up to seq {cp.up_to_seq}, head {cp.head_hash[:12]}…; "
        self._break(seq, cp.event_id, cp.up_to_seq, why + f"the {self.verdict.side} has {have}")
        self._resync(cp, index)

    def _resync(self, cp: AuditCheckpoint, index: int) -> None:
        """Go on from the signed head: relink the events after ``up_to_seq`` read before the checkpoint."""
        self.head, self.count, self.seen = cp.head_hash, cp.count, {cp.head_hash: cp.up_to_seq}
        self.confirmed, self.broken = cp.up_to_seq, False
        for seq, event in self.items[:index]:
            if seq > cp.up_to_seq:
                self._link(seq, event)


def check_chain(side: str, history: list[tuple[int, EventBase | None]], trusted: frozenset[str]) -> ChainVerdict:
    """Recompute the chain over one copy of the history (events that do not validate are not in it)."""
    items = [(seq, event) for seq, event in history if event is not None]
    walk = _Walk(ChainVerdict(side), trusted, items)
    walk.run()
    return walk.verdict
