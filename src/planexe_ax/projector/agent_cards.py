"""Mirror the ``ax-agents`` KV bucket into the ``agents`` table: cards are upserted, gone agents go offline."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from planexe_ax.bus import AgentCard, Bus, KvEntry, supervise, utcnow
from planexe_ax.bus.kv_reads import agent_changes
from planexe_ax.readmodel.models import AgentRow

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"


async def upsert_card(session: AsyncSession, card: AgentCard) -> None:
    """Insert or refresh an agent's row from its card and mark it online.

    Args:
        session: An open session; the caller commits.
        card: The card read from the bucket.
    """
    row = await session.get(AgentRow, card.agent_id)
    if row is None:
        row = AgentRow(agent_id=card.agent_id)
        session.add(row)
    row.name, row.role, row.status = card.name, card.role, ONLINE
    row.capabilities = [cap.model_dump(mode="json") for cap in card.capabilities]
    row.started_at, row.last_heartbeat = card.started_at, card.heartbeat_at
    row.current = list(card.current)


async def mark_offline(session: AsyncSession, agent_id: str) -> None:
    """Mark one agent offline (its key was deleted or purged)."""
    await session.execute(update(AgentRow).where(AgentRow.agent_id == agent_id).values(status=OFFLINE))


async def sweep_expired(session: AsyncSession, ttl_s: float) -> None:
    """Mark offline every online agent whose last heartbeat is older than ``ttl_s`` seconds.

    The bucket's TTL removes entries without telling watchers, so expiry is found by age.
    """
    cutoff = utcnow() - timedelta(seconds=ttl_s)
    await session.execute(
        update(AgentRow).where(AgentRow.status == ONLINE, AgentRow.last_heartbeat < cutoff).values(status=OFFLINE)
    )


class AgentWatcher:
    """Follow the agents bucket until ``stop`` is set; sweep for expired agents every ``ttl / 2``.

    The bucket is read in batches every ``poll_s`` (:func:`~planexe_ax.bus.kv_reads.agent_changes`), and each
    batch is written in one transaction: 1,000 agents heartbeating every 5 s are a few reads and commits a
    second, not 200 wake-ups and 200 commits.

    Args:
        bus: The connection.
        sessions: Session factory of the read model.
        poll_s: How often the bucket is read; bounds how fast a card and ``stop`` are noticed.
    """

    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession], poll_s: float = 0.25) -> None:
        self.bus = bus
        self.sessions = sessions
        self.poll_s = poll_s
        self.applied = 0
        self.changed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Apply every update of the bucket and sweep expired agents until ``stop``; restart on errors."""
        await supervise(stop, self._watch, "agent watch")

    async def _watch(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        async for entries in agent_changes(self.bus, stop, self.poll_s):
            if entries:
                await self._guarded(self._apply, entries)
            if loop.time() >= next_sweep:
                await self._guarded(self._sweep)
                next_sweep = loop.time() + self.bus.settings.agent_ttl_s / 2

    async def _guarded(self, step: Any, *args: Any) -> None:
        try:
            await step(*args)
        except Exception:  # one bad card or a DB hiccup must not end the watch
            log.exception("agent card not applied", extra={"bucket": self.bus.subjects.agents_bucket})

    async def _apply(self, entries: list[KvEntry]) -> None:
        """Apply a batch of changes in one transaction, in order; a card that does not validate is skipped."""
        cards: list[tuple[str, AgentCard | None]] = []
        for entry in entries:
            if entry.removed:
                cards.append((entry.key, None))
                continue
            try:
                cards.append((entry.key, AgentCard.model_validate_json(entry.value)))
            except ValidationError as exc:
                log.warning("agent card ignored", extra={"agent_id": entry.key, "error": str(exc).splitlines()[0]})
        async with self.sessions.begin() as session:
            for agent_id, card in cards:
                if card is None:
                    await mark_offline(session, agent_id)
                else:
                    await upsert_card(session, card)
        self.applied += len(cards)
        self.changed.set()
        log.debug("agent cards applied", extra={"n": len(cards)})

    async def _sweep(self) -> None:
        async with self.sessions.begin() as session:
            await sweep_expired(session, self.bus.settings.agent_ttl_s)
