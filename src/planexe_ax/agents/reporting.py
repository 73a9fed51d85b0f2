"""Turn one attempt of a capability into the agent's reports: started, progress, blocked, rejected, result.

Event ids are derived from the offer's de-duplication id, the agent's id and a secret of the publishing
process (``event_ids.report``): a report published again by the same process is stored once within the
duplicate window, and nobody else can publish first under the id of a report the agent has yet to send.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeAlias

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from planexe_ax.agents.sdk import Capability, CapabilityOutput, RejectOffer, TaskContext, WorkCancelled
from planexe_ax.bus import (
    PLAN_ENVELOPE_BYTES,
    Bus,
    SubtaskBlocked,
    SubtaskProgress,
    SubtaskRejected,
    SubtaskResult,
    SubtaskStarted,
    TaskOffer,
    utcnow,
)
from planexe_ax.bus.consumer import Backoff
from planexe_ax.bus.errors import brief_validation_error, transient_publish_error
from planexe_ax.bus.work import SoonPublisher
from planexe_ax.errors import PermanentError

log = logging.getLogger(__name__)

REPORT_RETRY_S = 60.0
"""How long a report is sent again while the server is away or its stream elects a leader."""
ACK_WAIT_S = 5.0
"""How long a report put on the connection by :meth:`Reporter.send` waits for its ack before it is sent again
(nats-py's JetStream publish timeout): the agent runtime's :class:`~planexe_ax.bus.work.SoonPublisher` wait."""

Report: TypeAlias = SubtaskStarted | SubtaskProgress | SubtaskBlocked | SubtaskResult | SubtaskRejected

_keyed: dict[bytes, hmac.HMAC] = {}
"""The HMAC keyed with the last report key used, to copy (keying one costs more than copying one)."""


def report_ids(key: bytes, offer_id: str, agent_id: str) -> Callable[[str], str]:
    """``kind -> event_ids.report(key, offer_id, agent_id, kind)``, computed from one HMAC state per offer.

    The tag is an HMAC of ``<offer_id>:<agent_id>:<kind>``: the offer's part is hashed once and copied for each
    report, and the keyed state is kept for the next offer under the same key (a process has one).
    """
    base = _keyed.get(key)
    if base is None:
        base = hmac.new(key, digestmod=hashlib.sha256)
        _keyed.clear()  # one key kept: a process has one (a gateway's per-lease keys are not kept)
        _keyed[key] = base
    prefix = base.copy()
    prefix.update(f"{offer_id}:{agent_id}:".encode())

    def event_id(kind: str) -> str:
        mac = prefix.copy()
        mac.update(kind.encode())
        return f"{offer_id}:{kind}:{mac.hexdigest()[:16]}"

    return event_id


class Reporter:
    """Builds and publishes the reports of one offer, with event ids no one else can compute.

    The agent runtime publishes through it; the gateway builds the reports of HTTP agents with it (one
    reporter per lease), so a report sent again carries the same id whichever way the agent reached the bus.

    Args:
        bus: The connection.
        offer: The offer being worked on.
        agent_id: The agent doing the work.
        key: The secret of the report ids (default: the process's ``bus.report_key``); the gateways share one
            per lease, so a report retried through another gateway keeps its id.
        counts: How many progress and blocked reports were built already (by another gateway).
        publisher: What :meth:`send` puts reports on the connection with (the agent runtime's, one for all its
            offers; made with an ack wait of :data:`ACK_WAIT_S`); :meth:`send` needs one.
    """

    def __init__(
        self,
        bus: Bus,
        offer: TaskOffer,
        agent_id: str,
        key: bytes | None = None,
        counts: tuple[int, int] = (0, 0),
        publisher: SoonPublisher | None = None,
    ) -> None:
        self.bus = bus
        self.publisher = publisher
        self.offer = offer
        self.agent_id = agent_id
        self.key = bus.report_key if key is None else key
        self._progress_n, self._blocked_n = counts
        self._event_id = report_ids(self.key, offer.msg_id, agent_id)
        self.sent: list[tuple[Report, asyncio.Future[Any]]] = []
        """The reports :meth:`begin`'s attempt put on the connection (with their acks' futures), in order."""
        self._began: datetime | None = None
        self._announcing: asyncio.Future[None] | None = None
        self.before_start: Callable[[], Awaitable[None]] | None = None
        """Awaited before the announced ``subtask_started`` is sent (:meth:`announce`)."""

    @property
    def counts(self) -> tuple[int, int]:
        """How many progress and blocked reports were built so far."""
        return self._progress_n, self._blocked_n

    def _ids(self) -> dict[str, Any]:
        o = self.offer
        return {
            "execution_id": o.execution_id,
            "task_id": o.task_id,
            "subtask_id": o.subtask_id,
            "attempt": o.attempt,
            "agent_id": self.agent_id,
            "causation_id": o.msg_id,
        }

    async def _send(self, event: Report) -> None:
        """Publish one report until the stream stores it, for up to :data:`REPORT_RETRY_S`.

        The report keeps its event id, so a copy that did reach the stream before an ack was lost is stored
        once. Without this, an agent whose server died mid-attempt left its result unpublished and the offer
        unacked: redelivered to another agent, whose reports on that attempt do not count.
        """
        try:
            await self.bus.publish_event(event)
        except Exception as exc:
            if not transient_publish_error(exc):
                raise
            await self._send_again(event, exc, asyncio.get_running_loop().time() + REPORT_RETRY_S)

    async def _send_again(self, event: Report, exc: BaseException, deadline: float) -> None:
        """After ``exc`` kept ``event`` out of the stream: publish it again until it is stored or ``deadline``."""
        loop = asyncio.get_running_loop()
        backoff, never = Backoff(0.1, 2.0), asyncio.Event()
        while True:
            if loop.time() >= deadline:
                raise exc
            log.warning(
                "report not stored yet; sending it again",
                extra={"event_type": event.type, "subtask_id": event.subtask_id, "error": repr(exc)},
            )
            await backoff.wait(never)
            try:
                await self.bus.publish_event(event)
                return
            except Exception as again:
                if not transient_publish_error(again):
                    raise
                exc = again

    async def send(self, event: Report) -> asyncio.Future[Any]:
        """Put ``event`` on the connection now, without waiting for the stream; its ack comes to the future.

        Reports sent one after the other this way leave in that order, on one connection, so the stream
        stores them in that order. The message is the one :meth:`Bus.publish_event` sends (subject, bytes,
        headers, trace context), put by the reporter's ``publisher``; :meth:`confirm` waits for its ack and
        sends it again when it was not stored. Where that message would be fenced or get a publish span of
        its own, it is published with :meth:`_send`, which returns once it is stored, and the future is done.

        Raises:
            ValueError: The reporter was made without a publisher.
        """
        if self.publisher is None:
            raise ValueError("Reporter.send needs the publisher the reporter was made with")
        ack: asyncio.Future[Any] | None = await self.publisher.soon(event)
        if ack is None:
            await self._send(event)
            ack = asyncio.get_running_loop().create_future()
            ack.set_result(None)
        return ack

    async def confirm(self, event: Report, ack: asyncio.Future[Any]) -> None:
        """Wait until the stream has stored ``event``, put on the connection by :meth:`send` with ``ack``.

        The publisher ends ``ack`` within its ack wait (:data:`ACK_WAIT_S`); an ack that did not come, or a
        transient error, has the report sent again as :meth:`_send` does (same event id: stored once) for up
        to :data:`REPORT_RETRY_S`. When this wait is cancelled, ``ack`` is cancelled with it.

        Raises:
            Exception: What kept the report out of the stream for good.
        """
        try:
            await ack
            return
        except Exception as failure:
            error: BaseException = failure
        if not transient_publish_error(error):
            raise error
        await self._send_again(event, error, asyncio.get_running_loop().time() + REPORT_RETRY_S)

    async def started(self) -> None:
        """Publish ``subtask_started``."""
        await self._send(self.started_event())

    def begin(self) -> None:
        """The capability starts now; its ``subtask_started`` goes out by :meth:`announce` (the runtime's timer).

        Until then nothing is sent: an attempt that ends first is reported by its result alone, which carries
        ``started_at`` (one message instead of two, and the coordinator has one decision fewer to make). A
        progress or blocked report announces the start first, so the stream never holds one before it.
        """
        self._began = utcnow()

    def announce(self) -> None:
        """Put the attempt's ``subtask_started`` on its way (once; after :meth:`begin`; needs a publisher).

        :attr:`before_start` is awaited first (the runtime follows the subtask's decisions from then on).
        """
        if self._announcing is None and self._began is not None:
            self._announcing = asyncio.ensure_future(self._announce())

    async def _announce(self) -> None:
        if self.before_start is not None:
            await self.before_start()
        await self.put(self.started_event())

    async def announced(self) -> None:
        """Return once the ``subtask_started`` announced, if it was, is on the connection (reports follow it)."""
        if self._announcing is not None:
            await self._announcing

    async def put(self, event: Report) -> None:
        """:meth:`send` ``event`` and keep it, with its ack's future, in :attr:`sent`."""
        self.sent.append((event, await self.send(event)))

    async def progress(self, percent: float, message: str) -> None:
        """Publish the next ``subtask_progress`` (announcing the start of a begun attempt first)."""
        self.announce()
        await self.announced()
        await self._send(self.progress_event(percent, message))

    async def blocked(self, reason: str, max_wait_s: float | None) -> None:
        """Publish the next ``subtask_blocked`` (announcing the start of a begun attempt first)."""
        self.announce()
        await self.announced()
        await self._send(self.blocked_event(reason, max_wait_s))

    def started_event(self) -> SubtaskStarted:
        """Build the ``subtask_started`` (event id ``<msg_id>:started:<tag>``)."""
        return SubtaskStarted(event_id=self._event_id("started"), **self._ids())

    def progress_event(self, percent: float, message: str) -> SubtaskProgress:
        """Build the next ``subtask_progress`` (event id ``<msg_id>:progress:<n>:<tag>``, n from 1)."""
        self._progress_n += 1
        event_id = self._event_id(f"progress:{self._progress_n}")
        return SubtaskProgress(event_id=event_id, percent=percent, message=message, **self._ids())

    def blocked_event(self, reason: str, max_wait_s: float | None) -> SubtaskBlocked:
        """Build the next ``subtask_blocked`` (event id ``<msg_id>:blocked:<n>:<tag>``, n from 1)."""
        self._blocked_n += 1
        event_id = self._event_id(f"blocked:{self._blocked_n}")
        return SubtaskBlocked(event_id=event_id, reason=reason, max_wait_s=max_wait_s, **self._ids())

    def rejected(self, rejection: RejectOffer) -> SubtaskRejected:
        """Build the ``subtask_rejected`` (id ``<msg_id>:rejected:<tag>``); publish with :meth:`publish`."""
        return SubtaskRejected(
            event_id=self._event_id("rejected"),
            reason_code=rejection.reason_code,
            reason=rejection.reason,
            **self._ids(),
        )

    def result(
        self,
        *,
        ok: bool,
        output: dict[str, Any] | None = None,
        error: str | None = None,
        retryable: bool = True,
        confidence: float | None = None,
    ) -> SubtaskResult:
        """Build the ``subtask_result`` (id ``<msg_id>:result:<tag>``); publish it with :meth:`publish`.

        Of an attempt begun and not announced (:meth:`begin`), it carries ``started_at``.
        """
        if confidence is not None:
            confidence = min(1.0, max(0.0, confidence))
        return SubtaskResult(
            event_id=self._event_id("result"),
            ok=ok,
            output=output or {},
            error=error,
            retryable=retryable,
            confidence=confidence,
            started_at=self._began if self._announcing is None else None,
            **self._ids(),
        )

    async def publish(self, outcome: SubtaskResult | SubtaskRejected) -> SubtaskResult | SubtaskRejected:
        """Publish the attempt's outcome and wait for the stream's ack; returns what was published.

        An output too large to travel on the bus (the coordinator's decision repeats it, so the room for an
        envelope is kept) is reported as a failure that names the sizes, instead of being tried for ever.
        """
        outcome = self.sendable(outcome)
        await self._send(outcome)
        return outcome

    def sendable(self, outcome: SubtaskResult | SubtaskRejected) -> SubtaskResult | SubtaskRejected:
        """``outcome``, or the failure naming the sizes when its output is too large for the bus (:meth:`publish`)."""
        if not isinstance(outcome, SubtaskResult) or not outcome.ok or not outcome.output:
            return outcome  # without an output, a result is ids and a few fields: far below any limit
        room = self.bus.max_message_bytes - PLAN_ENVELOPE_BYTES
        if (size := len(outcome.model_dump_json())) > room:
            why = f"the output is {size} bytes of JSON; the bus carries at most {room} (PLANEXE_MAX_MESSAGE_BYTES)"
            return self.result(ok=False, error=why, retryable=False)
        return outcome


def validate_params(cap: Capability, offer: TaskOffer) -> BaseModel | str:
    """The offer's params as the capability's model, or the error text when they do not validate."""
    try:
        return cap.params_model.model_validate(offer.params)
    except ValidationError as exc:
        return f"invalid params for {offer.action}: {brief_validation_error(exc)}"


async def execute(
    cap: Capability, params: BaseModel, ctx: TaskContext, reporter: Reporter
) -> SubtaskResult | SubtaskRejected:
    """Run ``cap`` and turn its return value or exception into its outcome.

    ``RejectOffer`` gives a rejection, ``PermanentError`` a non-retryable failure, any other exception a
    retryable one, and an output that is not a JSON object a non-retryable one. Cancellation propagates.
    A ``WorkCancelled`` gives a retryable failure, which the runtime drops when it cancelled the work.
    """
    try:
        returned = await cap(params, ctx)
    except RejectOffer as exc:
        ctx.logger.info("capability rejected the offer", extra={"action": cap.action, "reason_code": exc.reason_code})
        return reporter.rejected(exc)
    except WorkCancelled as exc:
        ctx.logger.info("capability stopped", extra={"action": cap.action, "reason": str(exc)})
        return reporter.result(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True)
    except PermanentError as exc:
        ctx.logger.warning("capability failed permanently", extra={"action": cap.action, "error": str(exc)})
        return reporter.result(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=False)
    except Exception as exc:  # any failure of user code is reported, never lost
        ctx.logger.warning("capability failed", extra={"action": cap.action, "error": repr(exc)}, exc_info=True)
        return reporter.result(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True)
    output, confidence = (
        (returned.output, returned.confidence) if isinstance(returned, CapabilityOutput) else (returned, None)
    )
    if not isinstance(output, dict):
        return reporter.result(
            ok=False, error=f"{cap.action} returned {type(output).__name__}, not a dict", retryable=False
        )
    try:
        jsonable = to_jsonable_python(output)
    except Exception as exc:  # pydantic_core raises its own serialization error type
        return reporter.result(ok=False, error=f"{cap.action} returned output that is not JSON: {exc}", retryable=False)
    return reporter.result(ok=True, output=jsonable, confidence=confidence)
