"""HTTP agents' leases on the bus, so that any gateway can serve any HTTP agent.

The KV bucket ``ax-http-leases`` (written and read by the gateway identity only) holds:

* ``lease.<execution_id>.<subtask_id>.<attempt>``: an :class:`HttpLease`, what a gateway needs to act on an
  offer another gateway fetched: the offer, the agent holding it, the ack subject of the delivery (JetStream
  takes an ack, a nak or an ``in_progress`` from any connection allowed to publish there), the secret its
  reports' event ids are made with, and once it ended, how (so a retried outcome is answered as a duplicate);
* ``seen.<agent_id>``: an :class:`AgentSeen`, when any gateway last heard from the agent; a lease is kept
  while its agent is heard from, and given back (nak) once it is not;
* ``gateway.<gateway_id>``: a :class:`GatewaySeen`, each running gateway's presence, so that a gateway
  stopping gives the leases back at once only when no other gateway is left to keep them.

Entries expire after ``HTTP_LEASES_KEEP_S`` unless written again (a holder rewrites its held leases well before).
Every change of a held lease is a compare-and-set on the key's revision, so two gateways never both nak it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planexe_ax.bus.connection import Bus
from planexe_ax.bus.messages import TaskOffer, utcnow
from planexe_ax.bus.subjects import check_id
from planexe_ax.bus.topology import HTTP_LEASES_KEEP_S

log = logging.getLogger(__name__)

ACK, NAK, PROGRESS = b"+ACK", b"-NAK", b"+WPI"
"""JetStream's acknowledgement bodies, sent to a delivery's ack subject."""
ACK_TIMEOUT_S = 2.0
"""Longest wait for the server to confirm an ack."""
KEEP_S = HTTP_LEASES_KEEP_S
"""How long an entry lives unless written again."""
Key = tuple[str, str, int]
"""(execution_id, subtask_id, attempt): one lease."""


class LeaseChanged(Exception):
    """The lease's entry changed since it was read (another gateway wrote it): read it again."""


class Record(BaseModel):
    """A value of the bucket; frozen, unknown fields ignored (a newer gateway may add some)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Ended(Record):
    """How a lease ended: the outcome the agent reported."""

    agent_id: str
    event_type: str
    event_id: str
    seq: int


class HttpLease(Record):
    """One offer held for one HTTP agent; its message stays un-acked until the attempt's outcome."""

    kind: Literal["lease"] = "lease"
    offer: TaskOffer
    agent_id: str
    reply: str
    """The delivery's ack subject (``$JS.ACK.<stream>.<consumer>...``)."""
    delivered: int = 1
    report_key: str = Field(description="Hex secret of the attempt's report ids, the same from every gateway.")
    progress_n: int = 0
    blocked_n: int = 0
    traceparent: str | None = None
    written_at: datetime = Field(default_factory=utcnow)
    ended: Ended | None = None

    @property
    def key(self) -> Key:
        """The attempt this lease holds."""
        return (self.offer.execution_id, self.offer.subtask_id, self.offer.attempt)


class AgentSeen(Record):
    """When any gateway last heard from an HTTP agent."""

    kind: Literal["seen"] = "seen"
    agent_id: str
    seen_at: datetime


class GatewaySeen(Record):
    """A running gateway, written every period while it runs."""

    kind: Literal["gateway"] = "gateway"
    gateway_id: str
    written_at: datetime


def lease_key(key: Key) -> str:
    """The bucket key of a lease."""
    execution_id, subtask_id, attempt = key
    return f"lease.{check_id(execution_id, 'execution id')}.{check_id(subtask_id, 'subtask id')}.{int(attempt)}"


def seen_key(agent_id: str) -> str:
    """The bucket key of an agent's last-heard time."""
    return f"seen.{check_id(agent_id, 'agent id')}"


def gateway_key(gateway_id: str) -> str:
    """The bucket key of a gateway's presence."""
    return f"gateway.{check_id(gateway_id, 'gateway id')}"


Entry = HttpLease | AgentSeen | GatewaySeen


def parse(key: str, value: bytes) -> Entry | None:
    """The record under ``key``; None when it is not one this version reads."""
    kind = key.split(".", 1)[0]
    models: dict[str, type[Entry]] = {"lease": HttpLease, "seen": AgentSeen, "gateway": GatewaySeen}
    model = models.get(kind)
    if model is None:
        return None
    try:
        return model.model_validate_json(value)
    except ValidationError:
        log.warning("unreadable http lease entry skipped", extra={"key": key})
        return None


class HttpLeases:
    """The bucket of HTTP agents' leases, for one gateway.

    Args:
        bus: The gateway's connection.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        """The bucket."""
        if self._kv is None:
            self._kv = await self.bus.js.key_value(self.bus.subjects.http_leases_bucket)
        return self._kv

    async def get(self, key: Key) -> tuple[HttpLease, int] | None:
        """The lease on ``key`` and its revision; None when there is none."""
        try:
            entry = await (await self.kv()).get(lease_key(key))
        except KeyNotFoundError:
            return None
        found = parse(entry.key, entry.value or b"")
        return (found, entry.revision or 0) if isinstance(found, HttpLease) else None

    async def put(self, lease: HttpLease) -> int:
        """Store ``lease`` whatever was there (a fresh delivery replaces an older one); returns the revision."""
        return int(await (await self.kv()).put(lease_key(lease.key), lease.model_dump_json().encode()))

    async def update(self, lease: HttpLease, revision: int) -> int:
        """Store ``lease`` if its entry is still at ``revision``; returns the new revision.

        Raises:
            LeaseChanged: when another gateway wrote it meanwhile.
        """
        try:
            data = lease.model_dump_json().encode()
            return int(await (await self.kv()).update(lease_key(lease.key), data, last=revision))
        except KeyWrongLastSequenceError as exc:
            raise LeaseChanged(lease_key(lease.key)) from exc

    async def remove(self, key: Key, revision: int) -> None:
        """Delete the lease if its entry is still at ``revision``.

        Raises:
            LeaseChanged: when another gateway wrote or removed it meanwhile.
        """
        try:
            await (await self.kv()).delete(lease_key(key), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise LeaseChanged(lease_key(key)) from exc

    async def saw(self, agent_id: str) -> datetime:
        """Record that the agent was heard from now; returns the time recorded."""
        now = utcnow()
        record = AgentSeen(agent_id=agent_id, seen_at=now)
        await (await self.kv()).put(seen_key(agent_id), record.model_dump_json().encode())
        return now

    async def forget(self, agent_id: str, revision: int) -> None:
        """Delete the agent's last-heard entry if it is still at ``revision`` (it went quiet).

        Raises:
            LeaseChanged: when a gateway heard from it meanwhile (or another one forgot it first).
        """
        try:
            await (await self.kv()).delete(seen_key(agent_id), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise LeaseChanged(seen_key(agent_id)) from exc

    async def present(self, gateway_id: str, *, leaving: bool = False) -> None:
        """Write this gateway's presence (``leaving``: delete it)."""
        kv = await self.kv()
        if leaving:
            await kv.delete(gateway_key(gateway_id))
        else:
            record = GatewaySeen(gateway_id=gateway_id, written_at=utcnow())
            await kv.put(gateway_key(gateway_id), record.model_dump_json().encode())

    async def entries(self, stop: asyncio.Event, poll_s: float) -> AsyncIterator[tuple[str, Entry | None, int] | None]:
        """Changes of the bucket until ``stop``: (key, record or None when removed, revision), None as a tick."""
        async for entry in self.bus.kv_updates(await self.kv(), stop, poll_s):
            if entry is None:
                yield None
            else:
                yield entry.key, None if entry.removed else parse(entry.key, entry.value), entry.revision

    async def settle(self, reply: str, body: bytes) -> None:
        """Send ``body`` (:data:`ACK`, :data:`NAK`, :data:`PROGRESS`) to a delivery's ack subject.

        An ack waits for the server's answer, so that the offer is known to be gone before the caller goes on.
        """
        if body == ACK:
            await self.bus.nc.request(reply, body, timeout=ACK_TIMEOUT_S)
        else:
            await self.bus.nc.publish(reply, body)
