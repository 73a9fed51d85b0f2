"""Streams, consumers and the KV bucket, declared as data and applied idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import BadRequestError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from planexe_ax.bus.subjects import Subjects
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError

log = logging.getLogger(__name__)

COMMANDS_MAX_AGE_S = 30 * 24 * 3600.0
COORDINATOR_CONSUMER_IDLE_S = 24 * 3600.0
"""A coordinator's own events consumer outlives the coordinator this long (a crashed one's is then removed)."""
HTTP_LEASES_KEEP_S = 24 * 3600.0
"""How long an entry of ``ax-http-leases`` lives unless written again: ended leases are remembered this long."""


@dataclass(frozen=True)
class Topology:
    """Every stream, durable consumer and bucket PlanExe-AX provisions, for one namespace."""

    streams: tuple[StreamConfig, ...]
    consumers: tuple[tuple[str, ConsumerConfig], ...]
    agents_bucket: KeyValueConfig
    plans_bucket: KeyValueConfig
    leases_bucket: KeyValueConfig
    http_leases_bucket: KeyValueConfig
    plan_objects: ObjectStoreConfig

    @property
    def buckets(self) -> tuple[KeyValueConfig, ...]:
        """Every KV bucket, in the order they are provisioned."""
        return (self.agents_bucket, self.plans_bucket, self.leases_bucket, self.http_leases_bucket)


def topology(subjects: Subjects, settings: Settings) -> Topology:
    """Build the declared topology from names and settings."""
    window = settings.duplicate_window_s
    max_msg, max_bytes = settings.max_message_bytes, settings.stream_max_bytes
    replicas = settings.replicas
    streams = (
        StreamConfig(
            name=subjects.tasks_stream,
            description="Work offers: one message per subtask attempt, removed when an agent acks it.",
            subjects=[subjects.all_tasks, subjects.all_direct],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=window,
            discard=DiscardPolicy.NEW,  # a full work queue refuses new offers rather than dropping queued work
            max_msg_size=max_msg,
            max_bytes=max_bytes,
        ),
        StreamConfig(
            name=subjects.events_stream,
            description="Immutable facts of every execution: agent reports and coordinator decisions.",
            subjects=[subjects.all_events, subjects.all_fences],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=settings.events_max_age_s,
            duplicate_window=window,
            max_msg_size=max_msg,
            max_bytes=settings.events_max_bytes,
        ),
        StreamConfig(
            name=subjects.commands_stream,
            description="Control commands: start, pause, resume, cancel; stored under their execution's partition.",
            subjects=[subjects.all_commands],
            subject_transform=SubjectTransform(*subjects.command_partitioning(settings.partitions)),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=COMMANDS_MAX_AGE_S,
            duplicate_window=window,
            max_msg_size=max_msg,
            max_bytes=max_bytes,
        ),
        StreamConfig(
            name=subjects.dlq_stream,
            description="Messages a consumer rejected, with the reason and the original bytes.",
            subjects=[subjects.all_dlq],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=COMMANDS_MAX_AGE_S,
            max_msg_size=max_msg,
            max_bytes=max_bytes,
        ),
    )
    consumers = (
        (subjects.events_stream, projector_consumer(subjects, Subjects.PROJECTOR_EVENTS)),
        (subjects.events_stream, events_consumer(subjects, Subjects.WEBHOOK_EVENTS, settings)),
        (subjects.events_stream, notifier_consumer(subjects, settings)),
    )
    bucket = KeyValueConfig(
        bucket=subjects.agents_bucket,
        description="Agent cards; an entry expires when its agent stops heartbeating.",
        history=1,
        ttl=settings.agent_ttl_s,
        storage=StorageType.FILE,
        replicas=replicas,
        max_value_size=settings.max_message_bytes,
        direct=True,  # the coordinator reads the heartbeats in batches (bus/kv_reads.py)
    )
    plans = KeyValueConfig(
        bucket=subjects.plans_bucket,
        description="Uploaded plans by plan id; a deleted plan leaves a delete marker.",
        history=1,
        storage=StorageType.FILE,
        replicas=replicas,
        max_value_size=settings.max_message_bytes,
    )
    leases = KeyValueConfig(
        bucket=subjects.leases_bucket,
        description="Leadership leases: the holder of a role's key leads; it expires when the holder stops renewing.",
        history=1,
        ttl=settings.leader_ttl_s,
        storage=StorageType.FILE,
        replicas=replicas,
        direct=True,  # coordinators list the running coordinators and the partitions held (bus/leader.py)
    )
    http_leases = KeyValueConfig(
        bucket=subjects.http_leases_bucket,
        description="HTTP agents' leases, their agents' last-heard times and the running gateways; gateways only.",
        history=1,
        ttl=HTTP_LEASES_KEEP_S,
        storage=StorageType.FILE,
        replicas=replicas,
        max_value_size=settings.max_message_bytes,
    )
    plan_objects = ObjectStoreConfig(
        bucket=subjects.plan_objects_bucket,
        description="Plans too large to travel in a message, by SHA-256; a start and its execution_created refer "
        "to one. Kept as long as the events.",
        ttl=settings.events_max_age_s,
        storage=StorageType.FILE,
        replicas=replicas,
    )
    return Topology(
        streams=streams,
        consumers=consumers,
        agents_bucket=bucket,
        plans_bucket=plans,
        leases_bucket=leases,
        http_leases_bucket=http_leases,
        plan_objects=plan_objects,
    )


def _durable(
    name: str, filter_subject: str, settings: Settings, max_deliver: int = -1, *, named: bool = False
) -> ConsumerConfig:
    # ``named``: created on $JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>, so a permission on that
    # subject lets an agent create its consumer with that filter only (only for filters without wildcards).
    return ConsumerConfig(
        name=name if named else None,
        durable_name=name,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=settings.ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=1000,
    )


def events_consumer(subjects: Subjects, durable: str, settings: Settings) -> ConsumerConfig:
    """A durable pull consumer of every event, acked explicitly (the webhook delivery service's, ``resume_after``'s)."""
    return _durable(durable, subjects.all_events, settings)


def projector_consumer(subjects: Subjects, durable: str) -> ConsumerConfig:
    """A projector's durable pull consumer of every event: no acks, its checkpoint in the read model is its position.

    The projector commits each batch with its checkpoint and recreates this durable from the event after the
    checkpoint whenever it starts writing, or starts pulling again after an error (:func:`position_consumer`),
    so an ack would record nothing it reads back: with ``AckPolicy.NONE`` the server takes a delivery as done,
    keeps no pending set and never redelivers, and the projector's pull credits alone bound what is in flight.
    An event lost in flight (a pull given up, a node gone with it) is found by the projector instead: a later
    batch that jumps over it, or, at the end of the stream, an event after the checkpoint that does not come
    while the projector waits; either way the durable is recreated after the checkpoint. An event dead-lettered
    is passed by the checkpoint like any other, so nothing needs to be terminated either.
    """
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=subjects.all_events,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
    )


def coordinator_events_consumer(subjects: Subjects, holder: str, settings: Settings) -> ConsumerConfig:
    """One coordinator process's consumer of every agent report; removed by the server a day after it was last used.

    Reports only: the coordinator's decisions are its own (it knows where each was stored from the stream's ack),
    and no other process may publish decisions.
    """
    config = _durable(Subjects.coordinator_events(holder), subjects.all_reports, settings)
    return dataclasses.replace(config, inactive_threshold=COORDINATOR_CONSUMER_IDLE_S)


def partition_commands_consumer(subjects: Subjects, partition: int, settings: Settings) -> ConsumerConfig:
    """The durable consumer of one partition's commands (made by the coordinator that first holds it)."""
    return _durable(Subjects.coordinator_commands(partition), subjects.partition_commands(partition), settings)


async def position_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig, after_seq: int) -> None:
    """Recreate a durable consumer so that it delivers from stream sequence ``after_seq + 1`` on, in order.

    For an owner that keeps its own position (a checkpoint, an ack floor it rebuilt from): messages a
    dead predecessor held unacked would otherwise come back after ack_wait, behind newer ones.
    """
    start = (
        {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after_seq + 1}
        if after_seq
        else {"deliver_policy": DeliverPolicy.ALL, "opt_start_seq": None}
    )
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, config.durable_name or "")
    await ensure_consumer(js, stream, dataclasses.replace(config, **start))


def notifier_consumer(subjects: Subjects, settings: Settings) -> ConsumerConfig:
    """The notifier's durable pull consumer: every execution's inbox_opened events."""
    return _durable(Subjects.NOTIFIER_INBOX, subjects.events_of_kind("inbox_opened"), settings)


def ordered_consumer(start_seq: int | None) -> ConsumerConfig:
    """An ordered (ephemeral) consumer from stream sequence ``start_seq`` on, or (None) of new messages only."""
    if start_seq is None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)


def rebuild_consumer() -> ConsumerConfig:
    """An ephemeral pull consumer that reads every event once, without acks (a rebuild from the stream)."""
    return ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60.0, mem_storage=True
    )


def capability_consumer(subjects: Subjects, capability: str, settings: Settings) -> ConsumerConfig:
    """The durable pull consumer that every agent of ``capability`` shares."""
    name = Subjects.capability_consumer(capability)
    return _durable(name, subjects.task(capability), settings, settings.max_deliver, named=True)


def direct_consumer(subjects: Subjects, agent_id: str, settings: Settings) -> ConsumerConfig:
    """The durable pull consumer of work pinned to one agent."""
    name = Subjects.direct_consumer(agent_id)
    return _durable(name, subjects.direct(agent_id), settings, settings.max_deliver, named=True)


def _transform(transform: SubjectTransform | dict[str, str] | None) -> tuple[str, str] | None:
    if transform is None:
        return None
    if isinstance(transform, dict):  # as an older client hands back a stream's config
        return transform.get("src", ""), transform.get("dest", "")
    return transform.src, transform.dest


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create ``config``'s stream, or bring an existing one in line with it (logged, never skipped)."""
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config=config)
        log.info("stream created", extra={"stream": config.name})
        return
    current = info.config
    have_transform, wanted_transform = _transform(current.subject_transform), _transform(config.subject_transform)
    if have_transform and wanted_transform and have_transform != wanted_transform:
        raise ConfigError(
            f"stream {config.name} stores subjects as {have_transform[1]!r}, these settings as "
            f"{wanted_transform[1]!r}: every process of a deployment needs the same PLANEXE_PARTITIONS"
        )
    wanted = (config.subjects, config.max_age or 0, config.duplicate_window or current.duplicate_window,
              config.max_msg_size or -1, config.max_bytes or -1, config.discard or current.discard,
              config.num_replicas or 1, _transform(config.subject_transform))  # fmt: skip
    have = (current.subjects, current.max_age or 0, current.duplicate_window,
            current.max_msg_size or -1, current.max_bytes or -1, current.discard,
            current.num_replicas or 1, _transform(current.subject_transform))  # fmt: skip
    if wanted != have:
        log.warning("stream config differs, updating", extra={"stream": config.name, "have": str(have)})
        try:
            await js.update_stream(config=config)
        except BadRequestError as exc:
            log.error("stream update refused", extra={"stream": config.name, "error": str(exc)})
            raise


async def _allow_direct(js: JetStreamContext, bucket: str) -> None:
    """Let an existing bucket answer direct gets (a bucket made by an earlier version did not)."""
    info = await js.stream_info(f"KV_{bucket}")
    if not info.config.allow_direct:
        log.warning("bucket does not allow direct gets, updating", extra={"bucket": bucket})
        info.config.allow_direct = True
        await js.update_stream(config=info.config)


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig, tries: int = 4) -> None:
    """Create a durable consumer, or update it when its settings changed.

    On a cluster with a node down, the consumer's replicas elect a leader before the answer comes, which
    can take longer than the request's timeout; the request is idempotent, so it is sent again.
    """
    for attempt in range(1, tries + 1):
        try:
            await js.add_consumer(stream, config=config)
            return
        except NatsTimeoutError:
            if attempt == tries:
                raise
            log.warning("creating a consumer timed out; trying again", extra={"consumer": config.durable_name})


NO_PEERS_YET = 10005
"""JetStream's "no suitable peers for placement, peer offline": a cluster just started (or a node just back)
whose meta leader does not know every peer yet; the same request succeeds a moment later."""


async def ensure_topology(js: JetStreamContext, subjects: Subjects, settings: Settings, tries: int = 8) -> Topology:
    """Provision every stream, shared consumer and bucket. Safe to run from every process.

    On a cluster, the meta leader answers stream and bucket creations one after another; when several
    processes provision at once an answer can take longer than the request's timeout, and just after a
    node is lost or a cut heals JetStream answers "temporarily unavailable" (and, on a cluster just started,
    "no suitable peers for placement" for a replicated stream). Every step is idempotent, so
    such a provisioning starts again (``tries`` times in all, waiting 0.25 s doubled each time, up to 4 s:
    about 16 s of waits besides the requests' own timeouts).
    """
    for attempt in range(1, tries + 1):
        try:
            return await _provision(js, subjects, settings)
        except (NatsTimeoutError, ServiceUnavailableError, NoStreamResponseError, BadRequestError) as exc:
            if attempt == tries or (isinstance(exc, BadRequestError) and exc.err_code != NO_PEERS_YET):
                raise
            log.warning("provisioning failed; trying again", extra={"attempt": attempt, "error": repr(exc)})
            await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))  # while a leader is elected
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _provision(js: JetStreamContext, subjects: Subjects, settings: Settings) -> Topology:
    topo = topology(subjects, settings)
    for stream in topo.streams:
        await ensure_stream(js, stream)
    for stream_name, consumer in topo.consumers:
        try:
            await js.consumer_info(stream_name, consumer.durable_name or "")
        except NotFoundError:
            await ensure_consumer(js, stream_name, consumer)
        # An existing durable is left as it is: its owner may have positioned it (the projector starts
        # it right after its checkpoint), and a consumer's delivery policy cannot be changed in place.
    for bucket in topo.buckets:
        try:
            await js.key_value(bucket.bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(config=bucket)
            continue
        if bucket.direct:
            await _allow_direct(js, bucket.bucket)
    try:
        await js.object_store(topo.plan_objects.bucket or "")
    except (NotFoundError, BadRequestError):
        await js.create_object_store(topo.plan_objects.bucket or "", config=topo.plan_objects)
    return topo
