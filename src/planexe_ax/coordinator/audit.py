"""The coordinator's side of the audit chain (bus/audit_chain.py): heads in stream order, prev_hash, checkpoints.

The coordinator reads every event of an execution in stream order, so it alone can follow the chain's head:
:meth:`ChainKeeper.read` links each event it decoded, :meth:`ChainKeeper.read_own` each of its own decisions
coming back (linked from the event it published, not decoded again; when the stream answers that it kept an
earlier copy, a former leader's with another ``ts`` and ``prev_hash``, :meth:`ChainKeeper.forget` drops ours and
the stored copy is decoded and linked). :meth:`ChainKeeper.stamp` puts the head
as ``prev_hash`` on the decisions about to be published, and adds a signed ``audit_checkpoint`` for each
execution that read ``every`` events since its last one, or whose end it just read (and after any late event).

A rebuild links nothing until it knows what no checkpoint covers: it keeps each execution's events since its
latest checkpoint signed by this coordinator's key, takes the head from that checkpoint, and links the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
        self._sent: dict[str, EventBase] = {}
        """Decisions published and not read back yet, by event id."""

    def read(self, seq: int, event: EventBase) -> None:
        """Link an event read from the stream at ``seq`` (an execution starts with its ``execution_created``)."""
        chain = self.chains.get(event.execution_id)
        if chain is None:
            if not isinstance(event, ExecutionCreated):
                return
            chain = self.chains[event.execution_id] = _Chain()
        self._link(chain, seq, event)

    def read_own(self, seq: int, event_id: str) -> None:
        """Link one of this coordinator's decisions read back at ``seq``."""
        event = self._sent.pop(event_id, None)
        if event is not None:
            self.read(seq, event)

    def drop(self, execution_id: str) -> None:
        """Forget an execution's chain (its partition moved to another coordinator, which rebuilds it)."""
        self.chains.pop(execution_id, None)
        self._due.discard(execution_id)

    def forget(self, event_id: str) -> None:
        """The stream kept another copy of this decision: the copy read back is decoded and linked instead."""
        self._sent.pop(event_id, None)

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
                self._sent[effect.event.event_id] = effect.event
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
        self._sent[checkpoint.event_id] = checkpoint
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
