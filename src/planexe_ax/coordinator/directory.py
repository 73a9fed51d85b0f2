"""Which agents are online and what they offer, as the coordinator sees them in KV ``ax-agents``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from planexe_ax.bus import AgentCard, Bus, KvEntry, utcnow
from planexe_ax.bus.kv_reads import agent_changes

log = logging.getLogger(__name__)
OnChange = Callable[[dict[str, frozenset[str]]], Awaitable[None]]
POLL_S = 0.25
"""How often the coordinator reads the agents bucket: 4 reads a second, however many agents heartbeat."""

HEARTBEAT_KEY = b'"heartbeat_at"'
HEARTBEAT_VALUE = re.compile(rb'\s*:\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d))"')
"""The value of a card's ``heartbeat_at`` as agents write it: an aware ISO 8601 time that pydantic reads alike."""


@dataclass(slots=True)
class Known:
    """What the directory keeps of an agent's card: what it offers, and the heartbeat of its latest copy."""

    actions: frozenset[str]
    heartbeat_at: datetime
    around: tuple[bytes, bytes] | None
    """The card's bytes before and after its ``heartbeat_at`` value; None when it cannot be cut there."""


def split_heartbeat(raw: bytes) -> tuple[tuple[bytes, bytes], datetime] | None:
    """The bytes of a card around its last ``heartbeat_at`` value, and that value; None when it has none we read.

    Two copies of a card whose bytes differ only there differ only in their heartbeat.
    """
    at = raw.rfind(HEARTBEAT_KEY)
    if at < 0:
        return None
    found = HEARTBEAT_VALUE.match(raw, at + len(HEARTBEAT_KEY))
    if found is None:
        return None
    try:
        when = datetime.fromisoformat(found.group(1).decode())
    except ValueError:  # shaped like a time but not one (a 13th month): the card is validated, and refused
        return None
    return (raw[: found.start(1)], raw[found.end(1) :]), when


class AgentDirectory:
    """Read the agents bucket every ``poll_s`` and report the online set whenever it changes.

    The bucket's TTL drops silent agents without telling readers, so an agent is online while its
    card's ``heartbeat_at`` is younger than ``agent_ttl_s``. A heartbeat that changes nothing costs nothing:
    the bucket is read in batches (:func:`~planexe_ax.bus.kv_reads.agent_changes`: a few wake-ups per read,
    not one per heartbeat), a copy of a known card that differs only in ``heartbeat_at`` is not validated
    again (its heartbeat is read from its bytes), and the online set is rebuilt only when a card changes who
    is online or what they offer, or when the oldest heartbeat of an online agent has aged past the TTL.

    Args:
        bus: The connection.
        on_change: Called with ``{agent_id: capabilities}`` after the first full read and on every change.
        poll_s: How often the bucket is read: a new agent, a changed card or a removed one is seen within
            this, an agent silent for the TTL goes offline within it; also bounds how fast ``stop`` is noticed.
    """

    def __init__(self, bus: Bus, on_change: OnChange, poll_s: float = POLL_S) -> None:
        self.bus, self.on_change, self.poll_s = bus, on_change, poll_s
        self.known: dict[str, Known] = {}
        self.online: dict[str, frozenset[str]] | None = None
        self.validated = 0
        """Cards validated in full (a heartbeat of a known card is not)."""
        self._ttl = timedelta(seconds=bus.settings.agent_ttl_s)
        self._due: datetime | None = None
        """When the online set must be rebuilt at the latest: the first online agent's heartbeat ages past the TTL."""

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the bucket until ``stop`` is set."""
        async for entries in agent_changes(self.bus, stop, self.poll_s):
            changed = self.online is None  # the first batch holds every card: the first online set is news
            for entry in entries:
                changed = self._take(entry) or changed
            if changed or (self._due is not None and utcnow() > self._due):
                await self._publish_if_changed()

    def _take(self, entry: KvEntry) -> bool:
        """Keep the card of ``entry``; whether that may change who is online or what they offer."""
        known = self.known.get(entry.key)
        if entry.removed:
            self.known.pop(entry.key, None)
            return known is not None
        split = split_heartbeat(entry.value)
        if known is not None and split is not None and split[0] == known.around:
            known.heartbeat_at = split[1]  # the same card, heartbeating
            self._ages_by(split[1])
            return entry.key not in (self.online or {})
        try:
            card = AgentCard.model_validate_json(entry.value)
            if card.agent_id != entry.key:
                raise ValueError(f"the card of {card.agent_id!r} is stored under another key")
        except (ValidationError, ValueError) as exc:
            log.warning("agent card ignored", extra={"agent_id": entry.key, "error": str(exc).splitlines()[0]})
            self.known.pop(entry.key, None)
            return known is not None
        self.validated += 1
        # Cut where pydantic read the heartbeat only: elsewhere (a key inside params_schema), bytes that differ
        # only there could hide a change of the real one.
        around = split[0] if split is not None and split[1] == card.heartbeat_at else None
        actions = frozenset(cap.action for cap in card.capabilities)
        self.known[entry.key] = Known(actions, card.heartbeat_at, around)
        self._ages_by(card.heartbeat_at)
        return known is None or entry.key not in (self.online or {}) or known.actions != actions

    def _ages_by(self, heartbeat_at: datetime) -> None:
        """A card with this heartbeat is kept: rebuild by the time it ages past the TTL (a clock set back)."""
        if self._due is not None and heartbeat_at + self._ttl < self._due:
            self._due = heartbeat_at + self._ttl

    async def _publish_if_changed(self) -> None:
        ttl = self._ttl
        now = utcnow()
        cutoff = now - ttl
        fresh = {agent_id: known for agent_id, known in self.known.items() if known.heartbeat_at >= cutoff}
        online = {agent_id: known.actions for agent_id, known in fresh.items()}
        oldest = min((known.heartbeat_at for known in fresh.values()), default=None)
        self._due = None if oldest is None else oldest + ttl
        reconnected = self.bus.reconnected_at
        if reconnected is not None and now - reconnected < ttl and self.online is not None:
            # Our own connection was just lost: agents could not heartbeat either. Until they have had a
            # full TTL to do so, nobody known to be online is taken for gone.
            online = {**{a: c for a, c in self.online.items() if a in self.known}, **online}
            self._due = reconnected + ttl if self._due is None else min(self._due, reconnected + ttl)
        if online != self.online:
            gone = set(self.online or {}) - set(online)
            log.info("agents changed", extra={"online": sorted(online), "offline": sorted(gone)})
            self.online = online
            await self.on_change(online)
