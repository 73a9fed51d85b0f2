"""The connection to NATS and the publish helpers every service uses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.client import RawCredentials
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError
from nats.js.kv import KeyValue

from planexe_ax.bus import event_ids, headers, parser, tracing
from planexe_ax.bus.codec import event_subject
from planexe_ax.bus.errors import WRONG_LAST_SEQUENCE, Deposed
from planexe_ax.bus.identities import Identities, creds_inbox_prefix
from planexe_ax.bus.messages import CommandBase, DeadLetter, EventBase, StartExecution, TaskOffer, WireModel, utcnow
from planexe_ax.bus.partitions import partition_of
from planexe_ax.bus.pipeline import Outgoing, Pipeline
from planexe_ax.bus.plan_store import PLAN_ENVELOPE_BYTES, offload
from planexe_ax.bus.subjects import Subjects
from planexe_ax.bus.topology import ensure_topology
from planexe_ax.bus.wakes import on_set
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError, MessageTooLarge, PlanTooLarge

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
MSG_ID = "Nats-Msg-Id"
DLQ_KEEP_BYTES = 64 * 1024
"""A dead letter keeps at most this much of the original message, so that the letter itself fits the DLQ."""
PUBLISH_WINDOW = 512
"""Most acks :meth:`Bus.publish_many` keeps outstanding on one connection."""
PUBLISH_TIMEOUT_S = 5.0
"""How long a message of :meth:`Bus.publish_many` waits for its ack (nats-py's JetStream default)."""


REMOVED = frozenset({"DEL", "PURGE"})
"""KV operations that take a key away."""


@dataclass(frozen=True)
class KvEntry:
    """One change of a KV bucket: a value put under ``key``, or the key removed."""

    key: str
    value: bytes
    revision: int
    operation: str | None
    """None for a put; ``DEL`` or ``PURGE`` for a removal."""
    created: datetime | None

    @property
    def removed(self) -> bool:
        """The change took the key away (delete or purge)."""
        return self.operation in REMOVED

    @classmethod
    def of(cls, entry: KeyValue.Entry) -> KvEntry:
        """The entry as the bus hands it on."""
        stamp: object = entry.created  # a datetime in watch updates, whatever nats-py's annotation says
        created = stamp if isinstance(stamp, datetime) else None
        return cls(entry.key, entry.value or b"", entry.revision or 0, entry.operation, created)


@dataclass(frozen=True, slots=True)
class Publication:
    """One message for :meth:`Bus.publish_many`.

    Attributes:
        subject: A stream subject built by :class:`Subjects`.
        message: The model to send as JSON.
        msg_id: De-duplication id (``Nats-Msg-Id``).
        fenced: Carry the fence of this leader's epoch (when it leads): the stream refuses it once deposed.
        traceparent: The trace context it carries (the span it was decided in); default its execution's root.
    """

    subject: str
    message: WireModel
    msg_id: str | None = None
    fenced: bool = False
    traceparent: str | None = None


ErrorCallback = Callable[[Exception], Awaitable[None]]
Callback = Callable[[], Awaitable[None]]


@dataclass
class Bus:
    """A connected client with the names of its namespace. Close it with :meth:`close`."""

    nc: NATS
    js: JetStreamContext
    subjects: Subjects
    settings: Settings
    _kv: KeyValue | None = field(default=None, repr=False)
    _plans: KeyValue | None = field(default=None, repr=False)
    _leases: KeyValue | None = field(default=None, repr=False)
    closing: bool = False
    fences: dict[int, dict[str, str]] | None = None
    """Set while this process decides partitions (:mod:`planexe_ax.coordinator.partitions`): by partition, the
    epoch headers every decision about an execution of it carries (:mod:`planexe_ax.bus.leader`). None: a
    coordinator alone, whose decisions are not fenced."""
    _fenced: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _pipeline: Pipeline | None = field(default=None, repr=False)
    reconnected_at: datetime | None = None
    report_key: bytes = field(default_factory=event_ids.report_key, repr=False)
    """This process's secret for the ids of the agent reports it publishes (``event_ids.report``)."""

    @property
    def connected(self) -> bool:
        """The connection to the server is up now (it reconnects by itself when it is not)."""
        return bool(self.nc.is_connected)

    async def publish(
        self, subject: str, message: WireModel, msg_id: str | None = None, fence: dict[str, str] | None = None
    ) -> PubAck:
        """Publish ``message`` to a stream subject and wait for the stream's ack.

        Args:
            subject: A subject built by :class:`Subjects`.
            message: The model to send as JSON.
            msg_id: De-duplication id (``Nats-Msg-Id``); the same id within the window is stored once.
            fence: Expected-sequence headers of a leader's epoch (:mod:`planexe_ax.bus.leader`).

        Raises:
            Deposed: the stream refused the fenced publish: a newer leader has published its epoch.
        """
        data, headers, kind = self._encode(message, msg_id)
        if not tracing.enabled():  # no span to make: carry the execution's context, at the cost of a lookup
            tracing.carry(headers, message)
            return await self._send(subject, data, headers, fence, kind)
        template = self.subjects.template(subject)
        if tracing.noted_in_current(template, subject, msg_id, headers, message):
            return await self._send(subject, data, headers, fence, kind)
        with tracing.publish_span(template, subject, msg_id, headers, message):
            return await self._send(subject, data, headers, fence, kind)

    def _encode(self, message: WireModel, msg_id: str | None) -> tuple[bytes, dict[str, str], str]:
        """The message's bytes, its headers (type, de-duplication id) and its type.

        Raises:
            MessageTooLarge: when the bus cannot carry it.
        """
        kind = str(getattr(message, "type", type(message).__name__))
        data = message.model_dump_json(by_alias=True).encode()
        if len(data) > self.max_message_bytes:
            raise MessageTooLarge(
                f"{kind} of {len(data)} bytes is larger than the {self.max_message_bytes} bytes a bus message may "
                "have (PLANEXE_MAX_MESSAGE_BYTES, and the NATS server's max_payload)"
            )
        headers = {"Content-Type": CONTENT_TYPE, "Ax-Type": kind}
        if msg_id:
            headers[MSG_ID] = msg_id
        return data, headers, kind

    async def publish_many(self, publications: Sequence[Publication]) -> list[PubAck | Exception]:
        """Publish every message in order without waiting for each ack in turn; the outcome of each.

        Up to ``PUBLISH_WINDOW`` acks are outstanding at once (:mod:`planexe_ax.bus.pipeline`). No span is
        made here: each message carries the context it was given (the span that decided it). An outcome
        is the stream's ack or the error that kept the message out (a timeout, a lost connection, a message
        too large, a refusal), for the caller to retry or dead-letter as it would a single publish.

        Raises:
            Deposed: the stream refused a fenced message: a newer leader has published its epoch. The
                stream checks each fenced message, so every later one of this leader is refused too.
        """
        outgoing: list[Outgoing] = []
        placed: list[int] = []
        outcomes: list[PubAck | Exception] = [NatsTimeoutError()] * len(publications)
        for index, publication in enumerate(publications):
            try:
                data, headers, _ = self._encode(publication.message, publication.msg_id)
            except (ValueError, TypeError) as exc:  # too large, or a model that cannot be serialised
                outcomes[index] = exc
                continue
            if publication.traceparent:
                headers[tracing.TRACEPARENT] = publication.traceparent
            else:
                tracing.carry(headers, publication.message)
            fence = self.fence_of(publication.message) if publication.fenced else {}
            fenced = bool(fence)
            if fenced:
                headers.update(fence)
            outgoing.append(Outgoing(publication.subject, data, headers, fenced))
            placed.append(index)
        for index, outcome in zip(placed, await self._pipelined().send(outgoing), strict=True):
            outcomes[index] = outcome
        for publication, outcome in zip(publications, outcomes, strict=True):
            if publication.fenced and isinstance(outcome, APIError) and outcome.err_code == WRONG_LAST_SEQUENCE:
                kind = str(getattr(publication.message, "type", ""))
                why = f"{kind} refused: a newer leader fenced this one off ({outcome.description})"
                raise Deposed(why) from outcome
        return outcomes

    def fence_of(self, message: WireModel) -> dict[str, str]:
        """The fence headers of a decision about ``message``'s execution ({} when decisions are not fenced).

        Raises:
            Deposed: this process fences its decisions and does not hold the execution's partition (any more).
        """
        if self.fences is None:
            return {}
        execution_id = str(getattr(message, "execution_id", ""))
        partition = partition_of(execution_id, self.settings.partitions)
        fence = self.fences.get(partition)
        if fence is None:
            raise Deposed(f"partition {partition} (execution {execution_id}) is not held by this coordinator")
        return fence

    def _pipelined(self) -> Pipeline:
        if self._pipeline is None:
            serial = self.settings.replicas > 1  # see pipeline.py: a replicated stream checks one fence at a time
            self._pipeline = Pipeline(self.nc, PUBLISH_WINDOW, PUBLISH_TIMEOUT_S, serial_fence=serial)
        return self._pipeline

    def event_publication(self, event: EventBase, traceparent: str | None = None) -> Publication:
        """An event for :meth:`publish_many`: on its subject, de-duplicated by its id, fenced while leading."""
        return Publication(event_subject(self.subjects, event), event, event.event_id, True, traceparent)

    def offer_publication(
        self, offer: TaskOffer, agent_id: str | None = None, traceparent: str | None = None
    ) -> Publication:
        """An offer for :meth:`publish_many`, to every agent of its action or to one agent when pinned."""
        subject = self.subjects.direct(agent_id) if agent_id else self.subjects.task(offer.action)
        return Publication(subject, offer, offer.msg_id, False, traceparent)

    async def _send(
        self, subject: str, data: bytes, headers: dict[str, str], fence: dict[str, str] | None, kind: str
    ) -> PubAck:
        """One publish and its ack; with ``fence``, refused (:class:`Deposed`) once a newer leader published."""
        if not fence:
            return await self.js.publish(subject, data, headers=headers)
        try:
            # One fenced publish in flight at a time: a clustered stream refuses a second one checking the
            # same subject while the first is being replicated (10164), whatever the two epochs.
            async with self._fenced:
                return await self.js.publish(subject, data, headers={**headers, **fence})
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise Deposed(f"{kind} refused: a newer leader fenced this one off ({exc.description})") from exc
            raise

    @property
    def max_message_bytes(self) -> int:
        """The largest message this bus publishes: the setting, capped by the server's max_payload."""
        return min(self.settings.max_message_bytes, self.nc.max_payload)

    def check_plan_size(self, plan_id: str, size: int) -> None:
        """Refuse a plan whose JSON (``size`` bytes) is too large for the messages that carry it.

        Raises:
            PlanTooLarge: naming the plan, its size and the limit.
        """
        limit = self.max_message_bytes - PLAN_ENVELOPE_BYTES
        if size > limit:
            raise PlanTooLarge(
                f"plan {plan_id} is {size} bytes of JSON; the bus carries plans of at most {limit} bytes "
                "(PLANEXE_MAX_MESSAGE_BYTES, capped by the NATS server's max_payload): split the plan"
            )

    async def publish_event(self, event: EventBase) -> PubAck:
        """Publish an event on its subject (:func:`event_subject`), de-duplicated by its ``event_id``."""
        return await self.publish(event_subject(self.subjects, event), event, event.event_id, self.fence_of(event))

    async def publish_offer(self, offer: TaskOffer, agent_id: str | None = None) -> PubAck:
        """Offer one subtask attempt to every agent of its action, or to one agent when pinned."""
        subject = self.subjects.direct(agent_id) if agent_id else self.subjects.task(offer.action)
        return await self.publish(subject, offer, msg_id=offer.msg_id)

    async def send_command(self, command: CommandBase) -> PubAck:
        """Send a control command; commands are durable and de-duplicated by ``command_id``.

        A start whose plan is too large for a message puts the plan in the plan object store first and
        carries a reference to it (:func:`planexe_ax.bus.plan_store.offload`).

        Raises:
            PlanTooLarge: a ``start`` whose plan is over ``PLANEXE_MAX_PLAN_BYTES``.
        """
        if isinstance(command, StartExecution):
            command = await offload(self, command)
        return await self.publish(self.subjects.command(command.execution_id), command, msg_id=command.command_id)

    async def dead_letter(self, source: str, msg: Msg, reason: str, *, term: bool = True) -> None:
        """Move ``msg`` to ``ax.dlq.<source>`` with ``reason`` and stop its redelivery.

        ``term``: False for a consumer that takes no acks (the projector's): nothing is redelivered to stop.
        """
        seq = msg.metadata.sequence.stream if msg.reply else None
        msg_id = event_ids.dead_letter(source, msg.subject, seq) if seq else None
        await self.dead_letter_data(source, msg.subject, msg.data, reason, msg_id, dict(msg.headers or {}), seq)
        if msg.reply and term:
            try:
                await msg.term()
            except Exception:  # already acked or terminated: the letter is kept all the same
                log.debug("term after dead-letter failed", exc_info=True)

    async def dead_letter_data(
        self,
        source: str,
        subject: str,
        data: bytes,
        reason: str,
        msg_id: str | None,
        headers: dict[str, str] | None = None,
        stream_seq: int | None = None,
    ) -> None:
        """Publish a dead letter for ``data`` (meant for ``subject``) on ``ax.dlq.<source>``.

        Args:
            source: Who gave up on the message (a lower-case token).
            subject: Where the message was, or was meant to go.
            data: Its bytes; the letter keeps the first ``DLQ_KEEP_BYTES`` of them and the full size.
            reason: Why, in one line.
            msg_id: A stable de-duplication id, so that giving up again (after a restart) stores one letter.
            headers: The message's headers.
            stream_seq: Its stream sequence, when it was read from a stream.
        """
        letter = DeadLetter(
            source=source,
            subject=subject,
            reason=reason,
            data_b64=base64.b64encode(data[:DLQ_KEEP_BYTES]).decode(),
            size=len(data),
            headers=headers or {},
            stream_seq=stream_seq,
        )
        await self.publish(self.subjects.dlq(source), letter, msg_id=msg_id)
        log.warning("message dead-lettered", extra={"source": source, "subject": subject, "reason": reason})

    async def agents_kv(self) -> KeyValue:
        """The ``ax-agents`` bucket (agent cards with a TTL)."""
        if self._kv is None:
            self._kv = await self.js.key_value(self.subjects.agents_bucket)
        return self._kv

    async def leases_kv(self) -> KeyValue:
        """The ``ax-leases`` bucket (leadership leases and the running coordinators)."""
        if self._leases is None:
            self._leases = await self.js.key_value(self.subjects.leases_bucket)
        return self._leases

    async def plans_kv(self) -> KeyValue:
        """The ``ax-plans`` bucket (uploaded plans by plan id)."""
        if self._plans is None:
            self._plans = await self.js.key_value(self.subjects.plans_bucket)
        return self._plans

    async def put_plan(self, plan_id: str, document: bytes) -> int:
        """Store an uploaded plan (its JSON) under its id; returns the entry's revision.

        Raises:
            PlanTooLarge: when the bus cannot carry the plan.
        """
        self.check_plan_size(plan_id, len(document))
        return int(await (await self.plans_kv()).put(plan_id, document))

    async def delete_plan(self, plan_id: str) -> int:
        """Leave a delete marker for an uploaded plan; returns the marker's revision.

        The marker is published directly (rather than with ``KeyValue.delete``) to learn its revision,
        which is what a reader waits for to see the delete.
        """
        subject = f"$KV.{self.subjects.plans_bucket}.{plan_id}"
        ack = await self.js.publish(subject, b"", headers={"KV-Operation": "DEL"})
        return int(ack.seq)

    async def agent_updates(self, stop: asyncio.Event, poll_s: float) -> AsyncIterator[KvEntry | None]:
        """Entries of the ``ax-agents`` bucket as they change, until ``stop`` is set (see :meth:`kv_updates`)."""
        async for entry in self.kv_updates(await self.agents_kv(), stop, poll_s):
            yield entry

    async def plan_updates(self, stop: asyncio.Event, poll_s: float) -> AsyncIterator[KvEntry | None]:
        """Entries of the ``ax-plans`` bucket as they change, until ``stop`` is set (see :meth:`kv_updates`)."""
        async for entry in self.kv_updates(await self.plans_kv(), stop, poll_s):
            yield entry

    async def kv_updates(self, kv: KeyValue, stop: asyncio.Event, poll_s: float) -> AsyncIterator[KvEntry | None]:
        """Entries of a bucket as they change, until ``stop`` is set.

        Yields each change as a :class:`KvEntry`, and None when the initial
        values are done or nothing changed within ``poll_s`` (a tick for time-based checks). A watch does
        not survive a server restart, so after a reconnect the bucket is read afresh. ``stop`` ends the wait
        for an update in progress (with a tick), not its ``poll_s``.
        """
        watcher: Any = None
        since, wait_s = self.reconnected_at, 0.1

        def tick() -> None:
            """Stopped: the wait in progress returns a tick now (the watcher's queue, as its end of initial values)."""
            if watcher is not None:
                with contextlib.suppress(asyncio.QueueFull):  # full: the wait returns at once anyway
                    watcher._updates.put_nowait(None)

        try:
            with on_set(stop, tick):
                while not stop.is_set():
                    if watcher is None or self.reconnected_at != since:
                        await _stop_watch(watcher)
                        watcher, since = None, self.reconnected_at
                        try:
                            watcher = await kv.watchall()
                        except (nats.errors.Error, TimeoutError) as exc:  # the bucket's stream electing a leader: again
                            log.warning("watch failed; trying again", extra={"error": repr(exc)})
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), wait_s)
                            wait_s = min(wait_s * 2, 5.0)
                            continue
                        wait_s = 0.1
                    try:
                        entry = await watcher.updates(timeout=poll_s)
                    except TimeoutError:  # nats' TimeoutError subclasses it: nothing new in poll_s
                        entry = None
                    yield None if entry is None else KvEntry.of(entry)
        finally:
            await _stop_watch(watcher)

    async def close(self) -> None:
        """Flush what was published and close; safe to call twice.

        Consume loops stop before this is called, so there is nothing left to drain from subscriptions;
        flushing sends every buffered publish before the socket closes.
        """
        if self.nc.is_closed:
            return
        self.closing = True
        try:
            await self.nc.flush(timeout=5)
        except Exception:  # a connection that is already gone has nothing left to flush
            log.debug("flush before close failed", exc_info=True)
        await self.nc.close()


def credentials(settings: Settings, role: str | None) -> Path | None:
    """The ``.creds`` file to connect with: ``PLANEXE_NATS_CREDS``, else ``role``'s identity, else none.

    A role's identity is signed afresh with the account key of the identities folder, when this process
    can read it (the embedded server's data folder, or a folder made by ``planexe-ax auth init``).

    Raises:
        ConfigError: when PLANEXE_NATS_CREDS names a file that is not there.
    """
    if settings.nats_creds is not None:
        if not settings.nats_creds.is_file():
            raise ConfigError(f"PLANEXE_NATS_CREDS={settings.nats_creds}: no such file")
        return settings.nats_creds
    folder = settings.nats_identities_dir
    if role is None or not Identities.exists(folder):
        return None
    return Identities.load(folder).role_creds(role, Subjects(settings.namespace))


def _read(creds: Path | None) -> str | None:
    return creds.read_text() if creds else None


def _inbox_of(creds_text: str | None) -> str:
    """The inbox prefix the identity may subscribe to (its replies arrive there)."""
    return (creds_inbox_prefix(creds_text) if creds_text else None) or "_INBOX"


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.Error) and "authorization violation" in str(exc).lower()


async def _open(
    url: str, name: str, creds: Path | None, error_cb: ErrorCallback, disconnected_cb: Callback, **callbacks: Any
) -> NATS:
    nc, connecting = NATS(), True
    # Read once: the client would read the JWT and the seed in two reads of the file (on every reconnect
    # too), and another process of the same role signing its identity afresh may replace the file between
    # them: a JWT with another user's signature, refused as an authorization violation.
    creds_text = _read(creds)

    async def on_error(exc: Exception) -> None:
        if connecting and _refused(exc):
            raise exc  # refused on the first connect: fail now instead of retrying for ever
        await error_cb(exc)

    async def on_disconnect() -> None:
        if not connecting:  # a refused first connect is reported once, by the error below
            await disconnected_cb()

    try:
        await nc.connect(
            servers=[u.strip() for u in url.split(",")],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # Client.connect says int; it takes seconds
            user_credentials=RawCredentials(creds_text) if creds_text else None,
            inbox_prefix=_inbox_of(creds_text),
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            **callbacks,
        )
    except nats.errors.Error as exc:
        if not _refused(exc):
            raise
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)
        who = f"the identity in {creds}" if creds else "a client without credentials"
        raise ConfigError(
            f"NATS at {url} refused {who} ({exc}); set PLANEXE_NATS_CREDS to a .creds file it trusts"
        ) from exc
    connecting = False
    return nc


async def connect(settings: Settings, url: str, name: str, provision: bool = True, *, role: str | None) -> Bus:
    """Connect to NATS at ``url`` and (by default) provision the topology.

    Args:
        settings: Namespace, windows and timeouts.
        url: One or more server URLs, comma separated.
        name: The client name shown by the server (the service).
        provision: Create or update streams, shared consumers and the agents bucket.
        role: The identity to use when PLANEXE_NATS_CREDS is unset (see :func:`credentials`):
            coordinator, projector, webhooks, gateway, operator, builtin-agents, admin; None for a process that
            has no role of its own (an agent with its own .creds). Required, so that no caller gets
            rights by default.
    """
    creds = credentials(settings, role)
    made: list[Bus] = []  # lets the callbacks tell a close we asked for from a lost connection

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"client": name, "error": repr(exc)})

    async def on_disconnect() -> None:
        if made and made[0].closing:
            log.debug("nats connection closed", extra={"client": name})
        else:
            log.warning("nats disconnected", extra={"client": name})

    async def on_reconnect() -> None:
        if made:
            made[0].reconnected_at = utcnow()
        log.info("nats reconnected", extra={"client": name})

    nc = await _open(url, name, creds, error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect)
    headers.install(nc)
    parser.install(nc)
    js = nc.jetstream()
    subjects = Subjects(settings.namespace)
    if provision:
        await ensure_topology(js, subjects, settings)
    made.append(Bus(nc=nc, js=js, subjects=subjects, settings=settings))
    return made[0]


async def _stop_watch(watcher: Any) -> None:
    """Stop a KV watch; one whose subscription went with a lost connection is gone already."""
    if watcher is not None:
        with contextlib.suppress(nats.errors.Error):
            await watcher.stop()
