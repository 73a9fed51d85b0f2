"""Coordinators that share the work and fail over: any number may run, each deciding its share of partitions.

Executions are hashed into ``PLANEXE_PARTITIONS`` partitions (:mod:`planexe_ax.bus.partitions`). Partition
``n`` has key ``coordinator.partition.<n>`` in ``ax-leases``, whose entries expire after ``leader_ttl_s``: its
holder decides the partition's executions (``create`` takes a free key, ``update(last=revision)`` renews it).
Every running coordinator keeps its key ``coordinator.member.<holder>`` alive, and aims at its share,
``ceil(partitions / members)``: one holding more gives the extra back (it deletes their keys, so another takes
them at once), one holding fewer takes free keys, in an order of its own (rendezvous hashing of its name and
the partition), so two coordinators joining together do not reach for the same keys. A coordinator that dies
stops renewing: its keys expire and the others take its partitions then. One that stops cleanly deletes them.

Taking a partition, the holder publishes a marker on the partition's fence subject; every decision about an
execution of it carries the marker's sequence (:mod:`planexe_ax.bus.leader`), so the stream refuses the
decisions of a holder that was paused or cut off and replaced (:class:`~planexe_ax.bus.Deposed`). A refusal
ends the coordinator's term: it gives every partition back and begins again with a fresh state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from planexe_ax.bus import Bus, Deposed, Subjects
from planexe_ax.bus.consumer import ErrorsOnce
from planexe_ax.bus.leader import (
    PASSING,
    LeaderLease,
    announce,
    coordinator_keys,
    default_holder,
    lease_reader,
    leave,
)
from planexe_ax.bus.work import every
from planexe_ax.coordinator.service import Coordinator

log = logging.getLogger(__name__)


class PartitionedCoordinator:
    """One coordinator among any number: it decides the partitions whose leases it holds.

    Args:
        bus: A connected bus (topology provisioned).
        holder: The name stored in the keys it holds; default host, pid and a random suffix.
    """

    def __init__(self, bus: Bus, holder: str | None = None) -> None:
        self.bus = bus
        self.holder = holder or default_holder()
        self.count = bus.settings.partitions
        self.ttl_s = bus.settings.leader_ttl_s
        self.leases: dict[int, LeaderLease] = {}
        self.members = 1
        self.terms = 0
        self.current = Coordinator(bus, holder=self.holder)
        self._balancing = asyncio.Lock()
        self._dropping: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        self._order = sorted(range(self.count), key=self._preference)
        self._listing = lease_reader(bus)
        bus.fences = {}

    def _preference(self, partition: int) -> bytes:
        return hashlib.blake2b(f"{self.holder}/{partition}".encode(), digest_size=8).digest()

    @property
    def held(self) -> set[int]:
        """The partitions this coordinator holds now."""
        return set(self.leases)

    @property
    def leading(self) -> bool:
        """Whether it decides any partition now (a standby holds none)."""
        return bool(self.leases)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Join: make the events consumer, say that it runs, and take its share (rebuilt before this returns).

        The keys are renewed from the moment they are taken, through the rebuild, until :meth:`run` ends: a
        rebuild longer than the TTL must not let them lapse.
        """
        self._keep_renewing()
        await self._begin()
        try:
            await self._announce()
            await self.balance()
        except PASSING as exc:  # a bucket just made on a cluster may not answer yet: run() tries again
            log.warning("first balance failed", extra={"error": repr(exc)})
        if not self.leases:
            log.info("coordinator standing by", extra={"holder": self.holder})

    def _keep_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_loop(self._closing))

    async def _begin(self) -> None:
        self.terms += 1
        await self.current.open()

    async def run(self, stop: asyncio.Event) -> None:
        """Decide the partitions held, renew their keys and keep the share until ``stop`` is set."""
        self._keep_renewing()
        try:
            while not stop.is_set():
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self.current.run(stop))
                        group.create_task(self._balance_loop(stop))
                except* Deposed as refused:
                    log.warning("coordinator deposed", extra={"error": str(refused.exceptions[0])})
                    await self._restart(stop)
                except* Exception as failed:
                    if not stop.is_set():
                        raise
                    # Stopping while decisions could not be published (cut off from the stream): never
                    # acked, they are read again by the partition's next holder.
                    log.warning("coordinator stopped with decisions unpublished", extra={"error": repr(failed)})
        finally:
            self._closing.set()
            if self._renewer is not None:
                await asyncio.gather(self._renewer, *self._dropping, return_exceptions=True)
            await self._give_back(set(self.leases))
            await self.current.close()
            await leave(self.bus, self.holder)
            await self._listing.close()

    async def _restart(self, stop: asyncio.Event) -> None:
        """Give every partition back and begin again with a fresh state (the old one holds refused decisions)."""
        await self._give_back(set(self.leases))
        await self.current.close()
        self.current = Coordinator(self.bus, holder=self.holder)
        while not stop.is_set():
            try:
                await self._begin()
                return
            except PASSING as exc:
                log.warning("coordinator could not begin again", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.ttl_s / 3)

    # -- keys --------------------------------------------------------------------------------------
    async def _announce(self) -> None:
        await announce(self.bus, self.holder)

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        """Every third of the TTL: keep the member key and every partition's key; drop a partition whose key is lost."""
        await every(self.ttl_s / 3, self._renew, stop, ErrorsOnce(log, logging.WARNING).about("renewal failed"))

    async def _renew(self) -> None:
        with contextlib.suppress(*PASSING):
            await self._announce()
        held = list(self.leases.items())
        kept = await asyncio.gather(*(lease.renew() for _, lease in held))
        lost = {partition for (partition, _), ok in zip(held, kept, strict=True) if not ok}
        if lost:
            log.warning("partition leases lost", extra={"partitions": sorted(lost), "holder": self.holder})
            for partition in lost:
                self.leases.pop(partition, None)
            self.current.lost(lost)
            # Not awaited here: the drop waits for a decision round (or a rebuild) to end, and the other
            # keys must be renewed meanwhile. Until then, the stream refuses what the new holder fenced off.
            dropping = asyncio.create_task(self._drop_lost(lost))
            self._dropping.add(dropping)
            dropping.add_done_callback(self._dropping.discard)

    async def _drop_lost(self, lost: set[int]) -> None:
        async with self._balancing:  # not between a balance's take of a partition and its rebuild
            gone = {partition for partition in lost if partition not in self.leases}
            await self.current.drop(gone)
            fences = self._fences()
            for partition in gone:
                fences.pop(partition, None)

    async def _balance_loop(self, stop: asyncio.Event) -> None:
        await every(self.ttl_s / 3, self.balance, stop, ErrorsOnce(log, logging.WARNING).about("balance failed"))

    async def _keys(self) -> tuple[int, set[int]]:
        """The running coordinators (at least this one) and the partitions held by anyone."""
        members, taken = await coordinator_keys(self.bus, self._listing)
        return len(members | {self.holder}), taken

    async def balance(self) -> None:
        """Hold ``ceil(partitions / members)`` partitions: give back the extra ones, or take free ones."""
        async with self._balancing:
            self.members, taken = await self._keys()
            share = -(-self.count // self.members)
            held = [p for p in self._order if p in self.leases]
            if len(held) > share:
                await self._give_back(set(held[share:]))
                return
            wanted = share - len(held)
            new: set[int] = set()
            for partition in self._order:
                if len(new) >= wanted:
                    break
                if partition in self.leases or partition in taken:
                    continue
                fence = self.bus.subjects.partition_fence(partition)
                lease = LeaderLease(self.bus, Subjects.partition_lease(partition), self.holder, fence)
                if await lease.try_acquire():
                    try:
                        await lease.fence()
                    except PASSING:
                        await lease.release()
                        raise
                    self.leases[partition] = lease
                    self._fences()[partition] = lease.headers
                    new.add(partition)
            if new:
                try:
                    await self.current.take(new)
                except PASSING:  # the stream electing a leader mid-rebuild: give them back, take them again later
                    await self._give_back(new)
                    raise

    async def _give_back(self, partitions: set[int]) -> None:
        """Stop deciding ``partitions`` and delete their keys, so that another coordinator takes them at once."""
        if not partitions:
            return
        leases = [self.leases.pop(p) for p in partitions if p in self.leases]
        await self.current.drop(partitions)
        fences = self._fences()
        for partition in partitions:
            fences.pop(partition, None)
        for lease in leases:
            with contextlib.suppress(Exception):  # the connection may be gone: the key expires by itself
                await lease.release()

    def _fences(self) -> dict[int, dict[str, str]]:
        if self.bus.fences is None:
            self.bus.fences = {}
        return self.bus.fences
