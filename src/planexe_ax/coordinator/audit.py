"""The coordinator's side of the audit chain (bus/audit_chain.py): heads in stream order, prev_hash, checkpoints.

The chain runs over an execution's events in stream order. The coordinator reads the agents' reports in that
order (its consumer delivers reports only) and learns where each of its own decisions was stored from the
stream's ack (:meth:`ChainKeeper.stored`; when the stream answers that it kept an earlier copy, the service
reads that copy and gives it instead). A decision is linked once no report can come before it: when a later
report is read (:meth:`ChainKeeper.read` links the decisions stored before it, then the report), or when the
stream shows that the execution's first report after the linked part comes after it (:meth:`ChainKeeper.settle`,
which the service asks for where linking would make a checkpoint due: :meth:`ChainKeeper.unsettled`).
:meth:`ChainKeeper.stamp` puts the head of the linked part as ``prev_hash`` on the decisions about to be
published (the head of an earlier prefix of the chain, as the check allows), and adds a signed
``audit_checkpoint`` for each execution that linked ``every`` events since its last one, or whose end it just
linked (and after any late event).

A rebuild links nothing until it knows what no checkpoint covers: it keeps each execution's events since its
latest checkpoint signed by this coordinator's key, takes the head from that checkpoint, and links the rest.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TypeVar

from planexe_ax.bus import event_ids
from planexe_ax.bus.audit_chain import Signer, checkpoint_payload, link, signature_problem
from planexe_ax.bus.jwt import Key
from planexe_ax.bus.messages import (
    TERMINAL_EXECUTION,
    AuditCheckpoint,
    Event,
    EventBase,
    ExecutionCreated,
    ExecutionState,
)
from planexe_ax.coordinator.state import Effect, Emit

T = TypeVar("T")


@dataclass
class _Chain:
    seq: int = 0
    head: str = ""
    count: int = 0
    since: int = 0
    checkpoint: str = ""
    due: bool = False
    ended: bool = False
    unlinked: list[tuple[int, Event]] = field(default_factory=list)
    """Rebuild only: events after the latest checkpoint read, linked when the rebuild ends."""
    pending: deque[tuple[int, EventBase]] = field(default_factory=deque)
    """This coordinator's decisions stored after the linked part, by sequence: linked once no report precedes them.

    A deque: while the coordinator reads reports behind the decisions it stored (a large plan's backlog sent
    ahead of its reports) it holds a hundred thousand and more, taken from the front one by one."""


class ChainKeeper:
    """Each execution's chain head as this coordinator has read its events; see the module docstring.

    Args:
        key: The Ed25519 nkey that signs checkpoints.
        every: Sign an execution's head after this many events.
    """

    def __init__(self, key: Key, every: int) -> None:
        self.signer = Signer(key)
        self.key_id = self.signer.key_id
        self.every = every
        self.chains: dict[str, _Chain] = {}
        self._due: set[str] = set()
        self._unsettled: set[str] = set()
        """Executions whose decisions not linked yet would make a checkpoint due once linked."""

    def _chain(self, event: EventBase) -> _Chain | None:
        chain = self.chains.get(event.execution_id)
        if chain is None and isinstance(event, ExecutionCreated):  # an execution starts with its execution_created
            chain = self.chains[event.execution_id] = _Chain()
        return chain

    def read(self, seq: int, event: EventBase) -> None:
        """Link an event read from the stream at ``seq`` (a report), after the decisions stored before it."""
        chain = self._chain(event)
        if chain is None:
            return
        self._link_pending(chain, seq)
        self._link(chain, seq, event)
        if self._owes(chain):
            self._unsettled.add(event.execution_id)

    def stored(self, seq: int, event: EventBase) -> None:
        """One of this coordinator's decisions was stored at ``seq``: link it once no report can come before it."""
        chain = self._chain(event)
        if chain is None or seq <= chain.seq:
            return  # stored before the linked part: linked already (a former leader's copy the rebuild read)
        if chain.pending and seq < chain.pending[-1][0]:  # stored out of order (an earlier copy kept): rare
            ordered = list(chain.pending)
            bisect.insort(ordered, (seq, event), key=itemgetter(0))
            chain.pending = deque(ordered)
        else:
            chain.pending.append((seq, event))
        if not isinstance(event, AuditCheckpoint) and self._owes(chain):
            self._unsettled.add(event.execution_id)

    def _owes(self, chain: _Chain) -> bool:
        """Whether linking the chain's pending decisions would make a checkpoint due (its end, ``every`` events)."""
        if not chain.pending:
            return False
        if chain.ended or chain.since + len(chain.pending) >= self.every:
            return True
        return any(isinstance(e, ExecutionState) and e.status in TERMINAL_EXECUTION for _, e in chain.pending)

    def unsettled(self) -> list[tuple[str, int]]:
        """Executions whose decisions not linked yet owe a checkpoint, each with the last sequence linked.

        The caller finds each one's first report stored after that sequence and calls :meth:`settle`.
        """
        out = []
        for execution_id in sorted(self._unsettled):
            chain = self.chains.get(execution_id)
            if chain is None or not self._owes(chain):
                self._unsettled.discard(execution_id)
            else:
                out.append((execution_id, chain.seq))
        return out

    def settle(self, execution_id: str, next_report: int | None, most: int | None = None) -> bool:
        """Link the decisions stored before ``next_report``, at most ``most`` of them; True once none is left.

        ``next_report`` is the execution's first report stored after the linked part (None: there is none, and
        every decision stored is linked). Decisions after it wait for it to be read (:meth:`read` asks again
        then, where they still owe a checkpoint): asking the stream before would find the same report. With
        ``most`` the caller links a long backlog in slices (calling again until True), so that hashing a
        large plan's decisions does not hold its event loop for seconds.
        """
        self._unsettled.discard(execution_id)
        chain = self.chains.get(execution_id)
        return chain is None or self._link_pending(chain, next_report, most)

    def _link_pending(self, chain: _Chain, before: int | None, most: int | None = None) -> bool:
        """Link the pending decisions stored before ``before`` (at most ``most``); True once none is left."""
        pending = chain.pending
        left = len(pending) if most is None else most
        while pending and (before is None or pending[0][0] < before):
            if left == 0:
                return False
            seq, event = pending.popleft()
            self._link(chain, seq, event)
            left -= 1
        return True

    def drop(self, execution_id: str) -> None:
        """Forget an execution's chain (its partition moved to another coordinator, which rebuilds it)."""
        self.chains.pop(execution_id, None)
        self._due.discard(execution_id)
        self._unsettled.discard(execution_id)

    def linked_to(self, execution_id: str) -> int:
        """The last sequence linked into the execution's chain (0: none, or no chain)."""
        chain = self.chains.get(execution_id)
        return chain.seq if chain is not None else 0

    def _link(self, chain: _Chain, seq: int, event: EventBase) -> None:
        if seq <= chain.seq:
            return  # read again (a redelivery): linked already
        chain.seq, chain.head, chain.count, chain.since = seq, link(chain.head, event), chain.count + 1, chain.since + 1
        if isinstance(event, AuditCheckpoint):
            return
        if isinstance(event, ExecutionState) and event.status in TERMINAL_EXECUTION:
            chain.ended = True
        if chain.ended or chain.since >= self.every:
            chain.due = True
            self._due.add(event.execution_id)

    def stamp(self, effects: list[Effect], keyed: dict[int, T]) -> list[Effect]:
        """``effects`` with each decision stamped with its execution's head, then the checkpoints due.

        An entry of ``keyed`` (by ``id()`` of an effect) follows its effect to the stamped copy.
        """
        stamped: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Emit):
                chain = self.chains.get(effect.event.execution_id)
                if chain is not None and chain.count:
                    copy = Emit(effect.event.model_copy(update={"prev_hash": chain.head}))
                    if id(effect) in keyed:
                        keyed[id(copy)] = keyed.pop(id(effect))
                    effect = copy
            stamped.append(effect)
        stamped += [Emit(self._checkpoint(x, self.chains[x])) for x in sorted(self._due)]
        self._due.clear()
        return stamped

    def _checkpoint(self, execution_id: str, chain: _Chain) -> AuditCheckpoint:
        chain.due, chain.since = False, 0
        payload = checkpoint_payload(execution_id, chain.seq, chain.count, chain.head, chain.checkpoint)
        checkpoint = AuditCheckpoint(
            event_id=event_ids.audit_checkpoint(execution_id, chain.seq),
            execution_id=execution_id,
            up_to_seq=chain.seq,
            count=chain.count,
            head_hash=chain.head,
            prev_checkpoint=chain.checkpoint,
            signature=self.signer.sign(payload),
            key_id=self.key_id,
        )
        chain.checkpoint = checkpoint.event_id
        return checkpoint

    # -- rebuild -----------------------------------------------------------------------------------------
    def rebuild(self, seq: int, event: Event) -> None:
        """Keep an event read by the rebuild; a checkpoint of ours drops what it covers."""
        chain = self.chains.get(event.execution_id)
        if chain is None:
            if not isinstance(event, ExecutionCreated):
                return
            chain = self.chains[event.execution_id] = _Chain()
        if isinstance(event, AuditCheckpoint) and signature_problem(event, frozenset({self.key_id})) is None:
            chain.unlinked = [(s, e) for s, e in chain.unlinked if s > event.up_to_seq]
            chain.seq, chain.head, chain.count = event.up_to_seq, event.head_hash, event.count
            chain.checkpoint, chain.since = event.event_id, 0
        if isinstance(event, ExecutionState) and event.status in TERMINAL_EXECUTION:
            chain.ended = True  # later events (linked when the rebuild ends) are owed a checkpoint
        chain.unlinked.append((seq, event))

    def rebuilt(self) -> None:
        """Link what no checkpoint covered; a checkpoint is due where it is owed."""
        for chain in self.chains.values():
            unlinked, chain.unlinked = chain.unlinked, []
            for seq, event in unlinked:
                self._link(chain, seq, event)
