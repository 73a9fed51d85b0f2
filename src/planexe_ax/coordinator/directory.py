"""Which agents are online and what they offer, as the coordinator sees them in KV ``ax-agents``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from planexe_ax.bus import AgentCard, Bus, utcnow

log = logging.getLogger(__name__)
REMOVED = frozenset({"DEL", "PURGE"})
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
        kv = await self.bus.agents_kv()
        watcher, since = await kv.watchall(), self.bus.reconnected_at
        initial_done = False
        try:
            while not stop.is_set():
                if self.bus.reconnected_at != since:
                    # A watch does not survive a server restart: read the bucket afresh.
                    await watcher.stop()  # type: ignore[no-untyped-call]  # untyped in nats-py
                    watcher, since = await kv.watchall(), self.bus.reconnected_at
                try:
                    entry = await watcher.updates(timeout=self.poll_s)  # type: ignore[no-untyped-call]  # untyped in nats-py
                except TimeoutError:
                    entry, initial_done = None, True
                if entry is None:
                    initial_done = True  # nats-py marks the end of the initial values with None
                else:
                    self._take(entry)
                if initial_done:
                    await self._publish_if_changed()
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]  # untyped in nats-py

    def _take(self, entry: Any) -> None:
        if entry.operation in REMOVED:
            self.cards.pop(entry.key, None)
            return
        try:
            self.cards[entry.key] = AgentCard.model_validate_json(entry.value)
        except ValidationError as exc:
            log.warning("agent card ignored", extra={"agent_id": entry.key, "error": str(exc).splitlines()[0]})

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
