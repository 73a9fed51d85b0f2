"""What a gateway knows of every gateway's HTTP leases, and what it does for them every period.

The leases live in KV ``ax-http-leases`` (:mod:`planexe_ax.bus.http_leases`); each gateway follows the bucket
with a watch, so its periodic work reads memory, while a request reads the bucket itself (another gateway may
have written it a moment ago). Every period a gateway

* writes its presence (a stopping gateway leaves its leases to the others when there are any),
* extends (``in_progress``) every held lease whose agent any gateway heard from within the window,
* gives back (nak) the leases of agents that went quiet, and forgets those agents: each with a
  compare-and-set on the entry, so one gateway does it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from planexe_ax.bus import Bus, utcnow
from planexe_ax.bus.consumer import ErrorsOnce
from planexe_ax.bus.http_leases import (
    KEEP_S,
    NAK,
    PROGRESS,
    AgentSeen,
    GatewaySeen,
    HttpLease,
    HttpLeases,
    Key,
    LeaseChanged,
)
from planexe_ax.bus.work import every

log = logging.getLogger(__name__)

PEER_PERIODS = 3
"""A gateway whose presence is older than this many periods is taken for gone."""
NEVER = datetime.min.replace(tzinfo=utcnow().tzinfo)


class SharedLeases:
    """One gateway's view of the bucket and its share of the work on it.

    Args:
        bus: The gateway's connection.
        window_s: How long an agent counts as live after any gateway last heard from it.
    """

    def __init__(self, bus: Bus, window_s: float) -> None:
        self.store = HttpLeases(bus)
        self.window_s = window_s
        self.gateway_id = f"gw-{uuid.uuid4().hex[:12]}"
        settings = bus.settings
        self.period_s = min(settings.heartbeat_s, settings.ack_wait_s / 2)
        self.held: dict[Key, tuple[HttpLease, int]] = {}
        """Every gateway's held leases (and their revisions), as the watch shows them."""
        self.seen: dict[str, tuple[AgentSeen, int]] = {}
        self.peers: dict[str, GatewaySeen] = {}
        self.heard: dict[str, datetime] = {}
        """When this gateway last heard from each agent (the watch may not have shown its own write yet)."""
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._log_once = ErrorsOnce(log, logging.WARNING)

    async def start(self, also: Callable[[], Awaitable[None]] | None = None) -> None:
        """Announce this gateway, follow the bucket, and do the period's work (then ``also()``) every period."""

        async def tick() -> None:
            await self.tick()
            if also is not None:
                await also()

        await self.store.present(self.gateway_id)
        refresh = every(self.period_s, tick, self._stopped, self._log_once.about("refresh failed"))
        self._tasks = [
            asyncio.create_task(refresh, name="http leases refresh"),
            asyncio.create_task(self._follow(), name="http leases watch"),
        ]

    async def stop(self) -> None:
        """Stop; with no other gateway left to keep the held leases, give them back at once."""
        self._stopped.set()
        for task in self._tasks:
            await task
        now, gone = utcnow(), timedelta(seconds=self.period_s * PEER_PERIODS)
        others = [g for g in self.peers.values() if g.gateway_id != self.gateway_id and now - g.written_at < gone]
        await self.guard("leaving failed", self.store.present(self.gateway_id, leaving=True))
        if others:
            log.info("http leases left to the other gateways", extra={"gateways": [g.gateway_id for g in others]})
            return
        for record, revision in list(self.held.values()):
            await self.give_back(record, revision)

    async def saw(self, agent_id: str) -> datetime:
        """Record, for every gateway, that the agent was heard from now; returns when."""
        self.heard[agent_id] = await self.store.saw(agent_id)
        return self.heard[agent_id]

    def live(self, agent_id: str) -> bool:
        """Whether any gateway heard from the agent within the window."""
        seen = self.seen[agent_id][0].seen_at if agent_id in self.seen else NEVER
        last = max(seen, self.heard.get(agent_id, NEVER))
        return utcnow() - last <= timedelta(seconds=self.window_s)

    def holding(self, agent_id: str) -> list[str]:
        """The subtasks whose leases the agent holds (for its card's ``current``)."""
        return sorted(record.offer.subtask_id for record, _ in self.held.values() if record.agent_id == agent_id)

    async def tick(self) -> None:
        """One period's work: presence, forget quiet agents, extend or give back every held lease."""
        await self.guard("presence failed", self.store.present(self.gateway_id))
        for agent_id, (_, revision) in list(self.seen.items()):
            if not self.live(agent_id):
                self.heard.pop(agent_id, None)
                with contextlib.suppress(LeaseChanged):  # heard from again meanwhile, or forgotten by another
                    await self.guard("forget failed", self.store.forget(agent_id, revision))
        for record, revision in list(self.held.values()):
            if not self.live(record.agent_id):
                await self.give_back(record, revision)
                continue
            await self.guard("lease extension failed", self.store.settle(record.reply, PROGRESS))
            if utcnow() - record.written_at > timedelta(seconds=KEEP_S / 2):  # before the bucket forgets it
                fresh = record.model_copy(update={"written_at": utcnow()})
                await self.guard("lease rewrite failed", self.store.update(fresh, revision))

    async def give_back(self, record: HttpLease, revision: int) -> None:
        """Nak the offer, unless another gateway changed the lease first (it gave it back, or it moved on)."""
        try:
            await self.store.remove(record.key, revision)
        except LeaseChanged:
            return
        except Exception as exc:  # the next period tries again
            self._log_once("lease removal failed", exc)
            return
        self.held.pop(record.key, None)
        await self.guard("nak failed", self.store.settle(record.reply, NAK))
        log.info("offer given back", extra={"msg_id": record.offer.msg_id, "agent_id": record.agent_id})

    async def guard(self, what: str, step: Awaitable[Any]) -> None:
        """Await ``step``; a failure is logged once (the next period tries again)."""
        try:
            await step
        except LeaseChanged:
            raise
        except Exception as exc:
            self._log_once(what, exc)

    async def _follow(self) -> None:
        """Mirror the bucket into ``held``, ``seen`` and ``peers`` until stopped (again after a failure)."""
        while not self._stopped.is_set():
            try:
                async for change in self.store.entries(self._stopped, self.period_s):
                    if change is not None:
                        self.mirror(*change)
            except Exception as exc:  # the watch is made again after a pause
                self._log_once("http leases watch failed", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self.period_s)

    def mirror(self, key: str, record: object, revision: int) -> None:
        """Apply one change of the bucket (``record`` None: the key was removed)."""
        kind, _, name = key.partition(".")
        if kind == "seen":
            _set(self.seen, name, (record, revision) if isinstance(record, AgentSeen) else None)
        elif kind == "gateway":
            _set(self.peers, name, record if isinstance(record, GatewaySeen) else None)
        elif kind == "lease":
            parts = name.split(".")
            if len(parts) == 3 and parts[2].isdigit():
                held = isinstance(record, HttpLease) and record.ended is None
                _set(self.held, (parts[0], parts[1], int(parts[2])), (record, revision) if held else None)


def _set(mirror: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        mirror.pop(key, None)
    else:
        mirror[key] = value
