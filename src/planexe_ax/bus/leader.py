"""Leadership of a role (the coordinator) from what NATS gives: a KV lease, and a fence the stream enforces.

The lease is one key of the ``leases`` bucket, whose entries expire after ``leader_ttl_s``. A candidate
takes it with ``create`` (only when nobody holds it) and its holder keeps it with ``update(last=revision)``
(only when nobody took it meanwhile): compare-and-set on the key's revision, so two holders never renew
the same key. A holder that stops renewing (crashed, paused, cut off) loses it when the entry expires.

A lease alone does not stop a deposed leader that still believes it leads (paused longer than the TTL,
then resumed). The fence does: on taking the lease, the new leader publishes a marker on the role's fence
subject in AX_EVENTS; its sequence is the epoch. Every decision event then carries the epoch as
``Nats-Expected-Last-Subject-Sequence`` of the fence subject, and the server refuses a decision whose epoch
is not the latest marker's. The refusal surfaces as :class:`~planexe_ax.bus.errors.Deposed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from planexe_ax.bus.connection import Bus
from planexe_ax.bus.errors import PASSING as PASSING  # named here by its users since before errors.py had it
from planexe_ax.bus.kv_reads import DirectBatches, batched_reads, read_since
from planexe_ax.bus.subjects import COORDINATOR_MEMBERS, PARTITION_LEASES, Subjects
from planexe_ax.bus.topology import (
    coordinator_events_consumer,
    ensure_consumer,
    partition_commands_consumer,
    position_consumer,
)

log = logging.getLogger(__name__)
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
_TAKEN_OR_PASSING: tuple[type[Exception], ...] = (KeyWrongLastSequenceError, *PASSING)
_ABSENT_OR_PASSING: tuple[type[Exception], ...] = (NotFoundError, *PASSING)


class LeaderLease:
    """One candidate for the leadership of ``role``.

    Args:
        bus: A connected bus (topology provisioned: the leases bucket and the fence subject exist).
        role: The role led: its key in the leases bucket.
        holder: This candidate's name, stored as the key's value (shown to operators).
        fence_subject: Where :meth:`fence` publishes this term's marker; default ``subjects.fence(role)``.
    """

    def __init__(self, bus: Bus, role: str, holder: str, fence_subject: str | None = None) -> None:
        self.bus = bus
        self.role = role
        self.holder = holder
        self.fence_subject = fence_subject
        self.headers: dict[str, str] = {}
        """This term's fence: the expected-sequence headers every decision of it carries."""
        self.ttl_s = bus.settings.leader_ttl_s
        self.revision = 0
        self.epoch = 0
        self._renewed_at = 0.0
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.leases_kv()
        return self._kv

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this candidate now holds it."""
        kv = await self._bucket()
        try:
            self.revision = await kv.create(self.role, self.holder.encode())
        except KeyWrongLastSequenceError:
            return False  # held by another (or by an earlier term of ours that has not expired yet)
        self._renewed_at = time.monotonic()
        return True

    async def fence(self) -> int:
        """Publish this term's marker on the fence subject; its sequence is the epoch every decision carries.

        The headers that carry it are :attr:`headers` from then on.
        """
        subject = self.fence_subject or self.bus.subjects.fence(self.role)
        ack = await self.bus.js.publish(subject, self.holder.encode())
        self.epoch = ack.seq
        self.headers = {EXPECTED_LAST_SEQ: str(ack.seq), EXPECTED_LAST_SUBJECT: subject}
        return ack.seq

    async def renew(self) -> bool:
        """Renew the lease; False once it is lost (taken by another, or lapsed and fenced off since).

        A fenced lease whose key lapsed (this process was too busy to renew it within the TTL: a large plan's
        start, a long rebuild) is taken back when nobody took the key and no newer term published a fence
        marker meanwhile (:meth:`_reclaim`): nobody else decided, so nothing this holder knows is stale.
        """
        kv = await self._bucket()
        try:
            self.revision = await kv.update(self.role, self.holder.encode(), last=self.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            return await self._reclaim(kv)
        except PASSING as exc:  # the server is away: still ours until the TTL runs out
            log.warning("lease renewal failed", extra={"role": self.role, "error": repr(exc)})
            return time.monotonic() - self._renewed_at < self.ttl_s
        self._renewed_at = time.monotonic()
        return True

    async def _reclaim(self, kv: KeyValue) -> bool:
        """Take the lapsed key back if this term's fence marker is still the latest; True when it is ours again.

        Safe against a new holder at every step: one that took the key first makes ``create`` fail; one that
        fenced (and let go) since makes the marker check fail; one that fences after this check makes the
        stream refuse this holder's next decision (:class:`~planexe_ax.bus.errors.Deposed`).
        """
        subject = self.headers.get(EXPECTED_LAST_SUBJECT)
        if subject is None:
            return False  # not fenced: nothing tells whether another holder worked meanwhile
        try:
            revision = await kv.create(self.role, self.holder.encode())
        except _TAKEN_OR_PASSING:
            return False  # another holder has it, or the server is away past the TTL
        try:
            marker = await self.bus.js.get_last_msg(self.bus.subjects.events_stream, subject)
        except _ABSENT_OR_PASSING:
            marker = None
        if marker is None or marker.seq != self.epoch:
            with contextlib.suppress(*PASSING):
                await kv.delete(self.role, last=revision)
            return False
        self.revision = revision
        self._renewed_at = time.monotonic()
        log.warning("lease lapsed and taken back", extra={"role": self.role, "holder": self.holder})
        return True

    async def keep(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """Renew every third of the TTL until ``stop``; set ``lost`` and return when the lease is lost."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl_s / 3)
            if stop.is_set():
                return
            if not await self.renew():
                log.warning("leadership lost", extra={"role": self.role, "holder": self.holder, "epoch": self.epoch})
                lost.set()
                return

    async def release(self) -> None:
        """Step down: forget this term's fence and delete the key (if still ours) so a standby takes over at once."""
        self.headers = {}
        with contextlib.suppress(*PASSING):
            kv = await self._bucket()
            await kv.delete(self.role, last=self.revision)


async def end_on_either(first: asyncio.Event, second: asyncio.Event, ended: asyncio.Event) -> None:
    """Set ``ended`` as soon as ``first`` or ``second`` is set (a term ends on a stop or a lost lease)."""
    waits = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    ended.set()


class HoldsLease:
    """What a service that works in :class:`Terms` (as ``_lead``) tells of its lease."""

    _lead: Terms

    @property
    def leading(self) -> bool:
        """Whether this process holds the lease (does the work) now."""
        return self._lead.leading

    @property
    def terms(self) -> int:
        """How many times this process has taken the lease."""
        return self._lead.terms


def default_holder() -> str:
    """A name that tells lease holders apart, in one process too: host, process id and a random suffix."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()[:24])  # one subject token: no dots
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


Work = Callable[[asyncio.Event], list[Coroutine[Any, Any, None]]]
"""What a holder runs during one term, given the event that ends the term."""


class Terms:
    """Work that one process of many does at a time: the holder of ``lease`` works, the others stand by.

    A term begins when the lease is taken (``begin`` runs first, e.g. to put a consumer at its checkpoint)
    and ends on ``stop`` or when the lease is lost; then this process stands by and campaigns again. A
    holder that dies stops renewing, and a standby takes over once the entry expires; one that stops
    cleanly deletes the key, so a standby takes over at once.

    Args:
        lease: The lease (None: always work, as if alone).
        begin: Runs at the start of every term, before the work.
        name: What the logs call this worker.
    """

    def __init__(self, lease: LeaderLease | None, begin: Callable[[], Awaitable[None]], name: str) -> None:
        self.lease = lease
        self.begin = begin
        self.name = name
        self.leading = False
        self.terms = 0

    async def try_lead(self) -> bool:
        """Take the lease if nobody holds it (no lease: always), then begin a term; True when this one leads."""
        if self.lease is not None:
            try:
                if not await self.lease.try_acquire():
                    return False
            except PASSING as exc:  # a bucket just made on a cluster may not answer yet
                log.warning("campaign failed", extra={"worker": self.name, "error": repr(exc)})
                return False
        try:
            await self.begin()
        except PASSING as exc:  # the stream electing a leader: give the lease back and campaign again
            log.warning("term could not begin", extra={"worker": self.name, "error": repr(exc)})
            if self.lease is not None:
                await self.lease.release()
            return False
        self.leading, self.terms = True, self.terms + 1
        log.info("leading", extra={"worker": self.name, "term": self.terms})
        return True

    async def campaign(self, stop: asyncio.Event) -> bool:
        """Try for the lease every tenth of its TTL until it is ours (True) or ``stop`` is set (False)."""
        every = self.lease.ttl_s / 10 if self.lease else 0.0
        while not stop.is_set():
            if await self.try_lead():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
        return False

    async def run(self, stop: asyncio.Event, work: Work) -> None:
        """Work in terms until ``stop`` is set, standing by between them; step down at the end."""
        try:
            while not stop.is_set():
                if not self.leading and not await self.campaign(stop):
                    return
                await self._term(stop, work)
        finally:
            await self.step_down()

    async def _term(self, stop: asyncio.Event, work: Work) -> None:
        ended, lost = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(end_on_either(stop, lost, ended))
            if self.lease is not None:
                tasks.create_task(self.lease.keep(stop, lost))
            for job in work(ended):
                tasks.create_task(job)
        if lost.is_set():
            self.leading = False
            log.warning("lease lost; standing by", extra={"worker": self.name})

    async def step_down(self) -> None:
        """Delete the lease (if still ours) so that a standby takes over at once; its TTL covers a failure."""
        if self.lease is not None and self.leading:
            self.leading = False
            try:
                await self.lease.release()
            except Exception as exc:  # the connection may be gone: the lease expires by itself
                log.warning("lease not released", extra={"worker": self.name, "error": repr(exc)})


# -- the coordinators' partitions (coordinator/partitions.py) ------------------------------------------
async def announce(bus: Bus, holder: str) -> None:
    """Say that coordinator ``holder`` runs (its member key, kept alive by writing it again within the TTL)."""
    kv = await bus.leases_kv()
    await kv.put(Subjects.coordinator_member(holder), holder.encode())


async def leave(bus: Bus, holder: str) -> None:
    """Delete coordinator ``holder``'s member key, so the others count one coordinator fewer at once."""
    with contextlib.suppress(Exception):  # the connection may be gone: the key expires by itself
        kv = await bus.leases_kv()
        await kv.delete(Subjects.coordinator_member(holder))


async def coordinator_keys(bus: Bus, reader: DirectBatches | None = None) -> tuple[set[str], set[int]]:
    """The running coordinators and the partitions held by any of them, read from the leases bucket.

    One batched direct get (``reader``, made for the call when None) rather than a watch, which is a
    consumer that the server keeps for minutes after it is stopped: one more every balance (still so on a
    server before 2.11, which does not answer batched direct gets).
    """
    keys = await _coordinator_keys(bus, reader) if batched_reads(bus) else await _coordinator_keys_watched(bus)
    members: set[str] = set()
    taken: set[int] = set()
    for key in keys:
        kind, _, name = key.rpartition(".")
        if kind == COORDINATOR_MEMBERS:
            members.add(name)
        elif kind == PARTITION_LEASES and name.isdigit():
            taken.add(int(name))
    return members, taken


async def _coordinator_keys(bus: Bus, reader: DirectBatches | None) -> set[str]:
    own = reader is None
    reader = reader or lease_reader(bus)
    try:
        entries, _ = await read_since(reader, f"$KV.{bus.subjects.leases_bucket}.", 0, keys="coordinator.>")
    finally:
        if own:
            await reader.close()
    last = {entry.key: entry for entry in entries}  # in stream order: a key's later entry replaces its earlier
    return {key for key, entry in last.items() if not entry.removed}


async def _coordinator_keys_watched(bus: Bus) -> set[str]:
    """The keys by a watch, on a server that does not answer batched direct gets (before 2.11)."""
    kv = await bus.leases_kv()
    watcher = await kv.watch("coordinator.>", ignore_deletes=True, meta_only=True)
    keys: set[str] = set()
    try:
        async for entry in watcher:
            if entry is None:
                break
            keys.add(entry.key)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return keys


def lease_reader(bus: Bus) -> DirectBatches:
    """Batched direct gets on the leases bucket, for :func:`coordinator_keys` (close it when done)."""
    return DirectBatches(bus, f"KV_{bus.subjects.leases_bucket}")


async def open_coordinator_events(bus: Bus, holder: str) -> int:
    """Make coordinator ``holder``'s own consumer of every event, delivering every event stored from now on.

    Returns the stream sequence it delivers after.
    """
    config = coordinator_events_consumer(bus.subjects, holder, bus.settings)
    info = await bus.js.stream_info(bus.subjects.events_stream)
    after = int(info.state.last_seq)
    await position_consumer(bus.js, bus.subjects.events_stream, config, after)
    return after


async def close_coordinator_events(bus: Bus, holder: str) -> None:
    """Remove coordinator ``holder``'s events consumer (a crashed one's goes a day after its last use)."""
    with contextlib.suppress(Exception):
        await bus.js.delete_consumer(bus.subjects.events_stream, Subjects.coordinator_events(holder))


async def ensure_partition_commands(bus: Bus, partition: int) -> None:
    """Make the durable consumer of ``partition``'s commands unless it exists (it keeps its place between holders)."""
    config = partition_commands_consumer(bus.subjects, partition, bus.settings)
    try:
        await bus.js.consumer_info(bus.subjects.commands_stream, config.durable_name or "")
    except NotFoundError:
        await ensure_consumer(bus.js, bus.subjects.commands_stream, config)
