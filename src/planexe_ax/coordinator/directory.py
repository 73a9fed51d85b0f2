"""Which agents are online and what they offer, as the coordinator sees them in KV ``ax-agents``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import ValidationError

from planexe_ax.bus import AgentCard, Bus, KvEntry, utcnow

log = logging.getLogger(__name__)
OnChange = Callable[[dict[str, frozenset[str]]], Awaitable[None]]


class AgentDirectory:
    """Watch the agents bucket and report the online set whenever it changes.

    The bucket's TTL drops silent agents without telling watchers, so an agent is online while its
    card's ``heartbeat_at`` is younger than ``agent_ttl_s``; the set is re-checked every ``poll_s``.

    Args:
        bus: The connection.
        on_change: Called with ``{agent_id: capabilities}`` after the first full read and on every change.
        poll_s: How often the ages are checked; also bounds how fast ``stop`` is noticed.
    """

    def __init__(self, bus: Bus, on_change: OnChange, poll_s: float = 0.5) -> None:
        self.bus, self.on_change, self.poll_s = bus, on_change, poll_s
        self.cards: dict[str, AgentCard] = {}
        self.online: dict[str, frozenset[str]] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the bucket until ``stop`` is set."""
        initial_done, checked = False, 0.0
        loop = asyncio.get_running_loop()
        async for entry in self.bus.agent_updates(stop, self.poll_s):
            if entry is None:
                initial_done = True  # the initial values are in (or the bucket is quiet)
            changed = entry is None or self._take(entry)
            # A heartbeat that changes nothing costs nothing: ages are checked every poll_s, not per entry.
            if initial_done and (changed or loop.time() - checked >= self.poll_s):
                checked = loop.time()
                await self._publish_if_changed()

    def _take(self, entry: KvEntry) -> bool:
        """Keep the card of ``entry``; whether that may change who is online or what they offer."""
        known = self.cards.get(entry.key)
        if entry.removed:
            self.cards.pop(entry.key, None)
            return known is not None
        try:
            card = AgentCard.model_validate_json(entry.value)
            if card.agent_id != entry.key:
                raise ValueError(f"the card of {card.agent_id!r} is stored under another key")
        except (ValidationError, ValueError) as exc:
            log.warning("agent card ignored", extra={"agent_id": entry.key, "error": str(exc).splitlines()[0]})
            self.cards.pop(entry.key, None)
            return known is not None
        self.cards[entry.key] = card
        online = self.online or {}
        return known is None or entry.key not in online or known.capabilities != card.capabilities

    async def _publish_if_changed(self) -> None:
        ttl = timedelta(seconds=self.bus.settings.agent_ttl_s)
        now = utcnow()
        cutoff = now - ttl
        online = {
            agent_id: frozenset(cap.action for cap in card.capabilities)
            for agent_id, card in self.cards.items()
            if card.heartbeat_at >= cutoff
        }
        reconnected = self.bus.reconnected_at
        if reconnected is not None and now - reconnected < ttl and self.online is not None:
            # Our own connection was just lost: agents could not heartbeat either. Until they have had a
            # full TTL to do so, nobody known to be online is taken for gone.
            online = {**{a: c for a, c in self.online.items() if a in self.cards}, **online}
        if online != self.online:
            gone = set(self.online or {}) - set(online)
            log.info("agents changed", extra={"online": sorted(online), "offline": sorted(gone)})
            self.online = online
            await self.on_change(online)
