"""Mirror the ``ax-plans`` KV bucket into the ``plans`` tables: uploads are upserted, deletes mark the plan deleted.

A deleted plan keeps its rows (its executions still point at it) and leaves the catalog. The revision of the
last entry applied is stored as the checkpoint ``plans-kv`` in the same transaction, so a writer can wait
until the read model shows its upload or delete.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from planexe_ax.bus import Bus, KvEntry, Plan, supervise, utcnow
from planexe_ax.readmodel.models import PlanRow, ProjectorCheckpoint
from planexe_ax.readmodel.projection import PLANS_CHECKPOINT, upsert_plan

log = logging.getLogger(__name__)


async def mark_deleted(session: AsyncSession, plan_id: str, when: datetime) -> None:
    """Take a plan out of the catalog; its rows stay for the executions that ran it."""
    row = await session.get(PlanRow, plan_id)
    if row is not None and row.deleted_at is None:
        row.deleted_at = when


class PlanWatcher:
    """Apply every change of the plans bucket until ``stop`` is set.

    Args:
        bus: The connection.
        sessions: Session factory of the read model.
        poll_s: How long one wait for an update lasts; bounds how fast ``stop`` is noticed.
    """

    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession], poll_s: float = 0.5) -> None:
        self.bus = bus
        self.sessions = sessions
        self.poll_s = poll_s
        self.applied = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Apply every update of the bucket until ``stop``; restart the watch on errors."""
        await supervise(stop, self._watch, "plan watch")

    async def _watch(self, stop: asyncio.Event) -> None:
        async for entry in self.bus.plan_updates(stop, self.poll_s):
            if entry is not None:
                await self._guarded(entry)

    async def _guarded(self, entry: KvEntry) -> None:
        try:
            await self._apply(entry)
        except Exception:  # a database hiccup must not end the watch; the entry is logged
            log.exception("plan entry not applied", extra={"plan_id": entry.key, "revision": entry.revision})

    async def _apply(self, entry: KvEntry) -> None:
        when = entry.created or utcnow()
        async with self.sessions.begin() as session:
            if entry.removed:
                await mark_deleted(session, entry.key, when)
            else:
                try:
                    plan = Plan.model_validate_json(entry.value)
                except ValidationError as exc:  # the gateway validates before it writes: only a foreign writer
                    log.error("plan entry is not a plan; skipped", extra={"plan_id": entry.key, "error": str(exc)})
                else:
                    await upsert_plan(session, plan, when)
            checkpoint = await session.get(ProjectorCheckpoint, PLANS_CHECKPOINT)
            if checkpoint is None:
                session.add(ProjectorCheckpoint(consumer=PLANS_CHECKPOINT, stream_seq=entry.revision))
            elif entry.revision > checkpoint.stream_seq:
                checkpoint.stream_seq = entry.revision
        self.applied += 1
        log.debug("plan entry applied", extra={"plan_id": entry.key, "operation": entry.operation})
