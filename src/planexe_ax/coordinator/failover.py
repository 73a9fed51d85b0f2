"""Coordinators that fail over: any number may run; the one holding the lease decides, the others stand by.

Each term is a fresh :class:`Coordinator` that rebuilds from AX_EVENTS, so a standby holds no state until
it leads. A term ends when ``stop`` is set (the lease is released, so a standby takes over at once), when
the lease is lost (not renewed in time), or when the stream refuses a decision because a newer leader
fenced this one off (:class:`~planexe_ax.bus.Deposed`); after the last two it campaigns again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from planexe_ax.bus import Bus, Deposed
from planexe_ax.bus.leader import PASSING, LeaderLease, end_on_either
from planexe_ax.coordinator.service import Coordinator

log = logging.getLogger(__name__)
ROLE = "coordinator"


def default_holder() -> str:
    """A name that tells side-by-side coordinators apart: host and process id."""
    return f"{socket.gethostname()[:24]}-{os.getpid()}"


class FailoverCoordinator:
    """One candidate coordinator.

    The lease is kept (renewed every third of its TTL) from the moment it is taken, through the rebuild,
    until the term ends: a rebuild longer than the TTL must not let the lease lapse, or the term would end
    as soon as it began, and the next one would rebuild again, for ever.

    Args:
        bus: A connected bus (topology provisioned).
        holder: The name stored in the lease; default host and pid.
    """

    def __init__(self, bus: Bus, holder: str | None = None) -> None:
        self.bus = bus
        self.lease = LeaderLease(bus, ROLE, holder or default_holder())
        self.current: Coordinator | None = None
        self.terms = 0
        self._lost = asyncio.Event()
        self._done = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Lead at once when nobody does (rebuilt before this returns, as a single coordinator is); else stand by."""
        try:
            leads = await self.lease.try_acquire()
        except PASSING as exc:  # a bucket just made on a cluster may not answer yet: campaign in run()
            log.warning("first campaign failed", extra={"error": repr(exc)})
            leads = False
        if leads:
            await self.lease.fence()
            await self._begin()
        else:
            log.info("coordinator standing by", extra={"holder": self.lease.holder})

    async def _begin(self) -> None:
        """Keep the lease from now on and rebuild; ``current`` stays None when the lease is lost meanwhile."""
        self.terms += 1
        log.info("coordinator leads", extra={"holder": self.lease.holder, "epoch": self.lease.epoch})
        self._lost, self._done = asyncio.Event(), asyncio.Event()
        self._keeper = asyncio.create_task(self.lease.keep(self._done, self._lost))
        coordinator = Coordinator(self.bus)
        rebuilt = asyncio.create_task(coordinator.start())
        lost = asyncio.create_task(self._lost.wait())
        try:
            await asyncio.wait({rebuilt, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not rebuilt.done():
                rebuilt.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rebuilt
        if rebuilt.cancelled() or rebuilt.exception() is not None:
            await self._step_down()
            rebuilt.result()  # raises what failed the rebuild, if anything did
            return
        self.current = coordinator

    async def _step_down(self) -> None:
        """Stop keeping the lease and fencing decisions; stand by."""
        self._done.set()
        if self._keeper is not None:
            await self._keeper
            self._keeper = None
        self.bus.fence = {}
        self.current = None
        log.warning("coordinator stepped down; standing by", extra={"holder": self.lease.holder})

    async def run(self, stop: asyncio.Event) -> None:
        """Lead or stand by until ``stop`` is set."""
        try:
            while not stop.is_set():
                if self.current is None:
                    if not await self.lease.acquire(stop):
                        return
                    try:
                        await self._begin()
                    except PASSING as exc:  # the stream electing a leader mid-rebuild: give it back, again
                        log.warning("rebuild failed; campaigning again", extra={"error": repr(exc)})
                        await self.lease.release()
                        continue
                    if self.current is None:
                        continue  # the lease ran out during the rebuild
                await self._term(self.current, stop)
        finally:
            self._done.set()
            if self._keeper is not None:
                await self._keeper
            await self.lease.release()

    async def _term(self, coordinator: Coordinator, stop: asyncio.Event) -> None:
        """Run ``coordinator`` until ``stop``, a lost lease or a refused decision."""
        ended = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(end_on_either(stop, self._lost, ended))
                group.create_task(coordinator.run(ended))
        except* Deposed as refused:
            log.warning(
                "coordinator deposed: a newer leader fenced it off", extra={"error": str(refused.exceptions[0])}
            )
        except* Exception as failed:
            if not ended.is_set():
                raise
            # The term is over (lease lost, or stopping) while decisions could not be published (cut off
            # from the stream): they were never acked, so the next leader takes the same events again.
            log.warning(
                "coordinator's term ended with decisions unpublished", extra={"error": repr(failed.exceptions[0])}
            )
        if not stop.is_set():
            await self._step_down()
