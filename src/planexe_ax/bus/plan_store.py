"""Plans too large to travel in a message: kept in a JetStream object store, referred to by id and SHA-256.

A start whose plan's JSON is over ``PLANEXE_PLAN_INLINE_BYTES`` puts the plan in the ``ax-plan-objects``
bucket under its SHA-256 and carries a :class:`~planexe_ax.bus.messages.PlanRef` instead; the
coordinator's ``execution_created`` carries the same reference. A reader gets the plan back with
:func:`load_plan`, which checks the bytes against the digest the message carries: a missing or
rewritten object is an error that says so, never another plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, TypeVar

from nats.errors import TimeoutError as FetchTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore
from pydantic import ValidationError

from planexe_ax.bus.messages import ExecutionCreated, PlanRef, StartExecution
from planexe_ax.bus.plan import Plan
from planexe_ax.errors import PlanTooLarge, PlanUnavailable

if TYPE_CHECKING:
    from planexe_ax.bus.connection import Bus

log = logging.getLogger(__name__)

CHUNKS_PER_PULL = 64
"""Chunks of an object asked for in one pull (128 KiB each: 8 MiB)."""
CHUNKS_WAIT_S = 10.0
"""How long one pull of an object's chunks waits for them (they are stored: they come at once)."""
INACTIVE_S = 30.0
"""How long the server keeps an object's reader left behind (its process died while reading)."""
PLAN_ENVELOPE_BYTES = 16 * 1024
"""Room left beside a plan in the messages that carry it (``start``, ``execution_created``): ids, pins, headers."""

Carrier = TypeVar("Carrier", StartExecution, ExecutionCreated)


def digest(document: bytes) -> str:
    """The SHA-256 of a plan's JSON, hex: its object's name and what a reader checks."""
    return hashlib.sha256(document).hexdigest()


def inline_limit(bus: Bus) -> int:
    """The largest plan (bytes of JSON) that travels inside its messages."""
    return min(bus.settings.plan_inline_bytes, bus.max_message_bytes - PLAN_ENVELOPE_BYTES)


async def _objects(bus: Bus) -> ObjectStore:
    return await bus.js.object_store(bus.subjects.plan_objects_bucket)


async def store_plan(bus: Bus, plan: Plan, document: bytes | None = None) -> PlanRef:
    """Put ``plan`` in the plan object store (idempotent: the same plan is the same object) and refer to it.

    Args:
        bus: A connection whose identity may write the bucket (operator, gateway, admin).
        plan: The plan.
        document: Its JSON, when the caller has it already.
    """
    data = document if document is not None else plan.model_dump_json(by_alias=True).encode()
    ref = PlanRef(plan_id=plan.plan_id, sha256=digest(data), size=len(data))
    await (await _objects(bus)).put(ref.sha256, data)
    log.info("plan stored", extra={"plan_id": plan.plan_id, "bytes": ref.size, "sha256": ref.sha256})
    return ref


async def read_object(bus: Bus, name: str) -> bytes | None:
    """The bytes of object ``name`` of the plan bucket (None: its chunks did not all come in time).

    The chunks are pulled in batches through an ephemeral pull consumer of the object's chunk subject. nats-py's
    ``ObjectStore.get`` reads them through an ordered push consumer, which the server paces with flow control: a
    10 MB plan (20,000 subtasks) took 0.55 s that way, against 0.02 s pulled. What the bytes are is checked by
    the caller, against the SHA-256 the message carries.

    Raises:
        ObjectNotFoundError: there is no such object (or it was deleted).
    """
    store = await _objects(bus)
    info = await store.get_info(name)
    if not info.size or not info.chunks:
        return b""
    stream, reader = bus.subjects.plan_objects_stream, f"plan-read-{secrets.token_hex(8)}"
    config = ConsumerConfig(
        name=reader,
        filter_subject=bus.subjects.plan_object_chunks(info.nuid),
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        inactive_threshold=INACTIVE_S,
    )
    await bus.js.add_consumer(stream, config)  # named here (pull_subscribe would name it), so it is deleted after
    chunks = await bus.js.pull_subscribe_bind(consumer=reader, stream=stream)
    parts: list[bytes] = []
    try:
        while len(parts) < info.chunks:
            try:
                msgs = await chunks.fetch(min(CHUNKS_PER_PULL, info.chunks - len(parts)), timeout=CHUNKS_WAIT_S)
            except FetchTimeoutError:
                return None
            parts.extend(msg.data for msg in msgs)
    finally:
        with contextlib.suppress(Exception):  # the server drops the consumer after INACTIVE_S anyway
            await chunks.unsubscribe()
        with contextlib.suppress(Exception):
            await bus.js.delete_consumer(stream, reader)
    return b"".join(parts)


async def load_plan(bus: Bus, ref: PlanRef) -> Plan:
    """The plan ``ref`` names, read from the plan object store and checked against its digest.

    Raises:
        PlanUnavailable: the object is missing (expired, deleted), or its bytes are not the plan ``ref`` names.
    """
    where = f"plan {ref.plan_id} (sha256 {ref.sha256[:12]}…) in bucket {bus.subjects.plan_objects_bucket}"
    try:
        data = await read_object(bus, ref.sha256)
    except ObjectNotFoundError as exc:
        raise PlanUnavailable(f"{where} is not there: it expired or was deleted") from exc
    if data is None:
        raise PlanUnavailable(f"{where} is incomplete: its chunks did not all come within {CHUNKS_WAIT_S:g} s")
    if len(data) != ref.size or digest(data) != ref.sha256:
        raise PlanUnavailable(
            f"{where} was tampered with: {len(data)} bytes with sha256 {digest(data)[:12]}…, not the "
            f"{ref.size} bytes the message refers to"
        )
    try:
        plan = Plan.model_validate_json(data)
    except ValidationError as exc:  # the digest matched: a plan stored by something else than store_plan
        raise PlanUnavailable(f"{where} does not hold a plan: {str(exc)[:200]}") from exc
    if plan.plan_id != ref.plan_id:
        raise PlanUnavailable(f"{where} holds plan {plan.plan_id}")
    return plan


async def offload(bus: Bus, command: StartExecution) -> StartExecution:
    """The start command as it travels: its plan inline, or (too large for that) stored and referred to.

    Raises:
        PlanTooLarge: a plan over ``PLANEXE_MAX_PLAN_BYTES``.
    """
    if command.plan is None:
        return command
    document = command.plan.model_dump_json(by_alias=True).encode()
    if len(document) > bus.settings.max_plan_bytes:
        raise PlanTooLarge(
            f"plan {command.plan.plan_id} is {len(document)} bytes of JSON; a start carries plans of at most "
            f"{bus.settings.max_plan_bytes} bytes (PLANEXE_MAX_PLAN_BYTES): split the plan"
        )
    if len(document) <= inline_limit(bus):
        return command
    ref = await store_plan(bus, command.plan, document)
    return command.model_copy(update={"plan": None, "plan_ref": ref})


async def with_plan(bus: Bus, message: Carrier) -> Carrier:
    """``message`` with its plan in hand: read from the object store when it travelled by reference.

    The copy keeps ``plan_ref``, so what it came as is still known.

    Raises:
        PlanUnavailable: the referred plan cannot be read back whole (see :func:`load_plan`).
    """
    if message.plan is not None or message.plan_ref is None:
        return message
    return message.model_copy(update={"plan": await load_plan(bus, message.plan_ref)})


def needs_plan(message: object) -> bool:
    """Whether ``message`` is a start or an ``execution_created`` whose plan is not in it."""
    return isinstance(message, StartExecution | ExecutionCreated) and message.plan is None
