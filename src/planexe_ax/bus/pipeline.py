"""Publishing many messages without waiting for each ack in turn (JetStream's asynchronous publish).

Each message goes out as a PUB whose reply subject is one token of this connection's ack inbox; the
stream answers there, and the answer resolves that message's future. At most ``window`` acks are
outstanding: the next message waits for the oldest. A batch thus costs one round trip per window instead
of one per message, and no task per message. Every message gets its own outcome (its ack, or the error
the stream or the connection gave), so the caller retries or dead-letters each one as it would a single
publish.

Messages leave in the order given, on one connection; a single server stores them in that order. The
stream checks each message's headers (``Nats-Msg-Id``, the fence's expected last subject sequence) as it
stores it, so a pipelined fenced message is checked as a lone one is. A replicated stream, however, refuses
a message that checks a subject's last sequence while another one checking the same subject is being
replicated ("temporarily unavailable"); with ``serial_fence`` the messages checking one fence subject (one
partition's) go one at a time, each after the previous one's ack, while the others (unfenced, or checking
another partition's fence) keep flowing. Once one of them fails (the stream electing a leader), the messages
after it checking the same fence are not sent and fail with it: sent again in order by the caller, none of
them is stored before the one that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from planexe_ax.bus import parser

NO_RESPONDERS = "503"
FENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
"""The header naming the subject a fenced message checks (bus/leader.py): one partition's fence."""
PLAIN_ACK = frozenset({"stream", "seq", "domain", "duplicate"})
"""The fields of a usual publish ack (no batch, no counter)."""
YIELD_EVERY = 128
"""Messages encoded between two chances for the connection's flusher to send what is buffered."""
_PLAIN_ACK = re.compile(rb'\{"stream":"([^"\\]+)", ?(?:"domain":"([^"\\]*)", ?)?"seq":(\d+)(, ?"duplicate": ?true)?\}')
"""A usual publish ack as nats-server writes it; anything else goes through ``json``."""
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name as nats-py accepts one (an RFC 7230 token)."""
_PLAIN_KEYS: set[str] = set()
"""Header names seen to pass :data:`_HEADER_KEY` (the services use a handful)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: subject, bytes, headers; ``fenced`` when its headers check a fence."""

    subject: str
    data: bytes
    headers: dict[str, str]
    fenced: bool = False


Outcome = PubAck | Exception
"""What became of one message: the stream's ack, or why it was not stored (a timeout, a refusal)."""


def hpub_command(subject: str, reply: str, headers: dict[str, str], data: bytes) -> bytes | None:
    """The ``HPUB`` protocol command that publishes ``data`` with ``headers`` (what nats-py's ``publish`` writes).

    None when the subject, the reply or a header is not plainly safe to write as given (whitespace in a subject,
    a line break in a header, surrounding blanks that nats-py would strip): that message goes through nats-py's
    own checks instead. Every message the services build passes (ids are checked tokens, header names are ours).
    """
    for key, value in headers.items():
        if key not in _PLAIN_KEYS:
            if not _HEADER_KEY.fullmatch(key) or len(_PLAIN_KEYS) >= 64:
                return None
            _PLAIN_KEYS.add(key)
        if value != value.strip():
            return None
    lines = [f"{key}: {value}\r\n" for key, value in headers.items()]
    head = "NATS/1.0\r\n" + "".join(lines) + "\r\n"
    breaks = len(lines) + 2
    if head.count("\n") != breaks or head.count("\r") != breaks:
        return None
    if not subject or " " in subject or " " in reply or not (subject.isprintable() and reply.isprintable()):
        return None
    encoded = head.encode()
    size = len(encoded) + len(data)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject.encode(), reply.encode(), len(encoded), size, encoded, data)


async def publish_fast(nc: NATS, subject: str, reply: str, headers: dict[str, str], data: bytes) -> None:
    """Publish as ``nc.publish(subject, data, reply=reply, headers=headers)`` does, for less CPU.

    The command is built once (:func:`hpub_command`) and put on the connection's pending buffer, as nats-py
    does after its checks; the connection's flusher sends it with whatever else is pending. A message that
    needs nats-py's checks, or a connection that is not plainly connected (closed, draining, reconnecting:
    nats-py decides what to refuse or buffer), goes through ``nc.publish``.
    """
    command = hpub_command(subject, reply, headers, data) if nc.is_connected and not nc.is_draining else None
    if command is None or len(data) > nc.max_payload:
        await nc.publish(subject, data, reply=reply, headers=headers)
        return
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(data)
    await nc._send_command(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def answer_ack(future: asyncio.Future[PubAck], msg: Msg) -> None:
    """Resolve ``future`` with the stream's answer in ``msg``: its ack, or the error it names.

    The errors: no responders, a refusal, a malformed answer. A future already done (given up on, cancelled) is
    left as it is.
    """
    if future.done():
        return
    if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
        future.set_exception(NoStreamResponseError())
        return
    ack = parse_ack(msg.data)
    if ack is not None:
        future.set_result(ack)
        return
    try:
        answer = json.loads(msg.data)
    except ValueError as exc:
        future.set_exception(exc)
        return
    if "error" not in answer:
        # The usual answer's fields are PubAck's own: built directly (from_response looks up every field).
        future.set_result(PubAck(**answer) if answer.keys() <= PLAIN_ACK else PubAck.from_response(answer))
        return
    try:
        APIError.from_error(answer["error"])  # raises the error's class (bad request, not found, ...)
    except Exception as refused:  # an APIError by its code; anything else is a malformed answer
        future.set_exception(refused)


def parse_ack(data: bytes) -> PubAck | None:
    """The publish ack in ``data`` when it has the usual form (stream, optional domain, seq, duplicate)."""
    match = _PLAIN_ACK.fullmatch(data)
    if match is None:
        return None
    stream, domain, seq, duplicate = match.groups()
    return PubAck(
        stream=stream.decode(),
        seq=int(seq),
        domain=domain.decode() if domain is not None else None,
        duplicate=True if duplicate else None,
    )


class AckInbox:
    """One inbox of a connection for the acks of asynchronous publishes (JetStream's, without nats-py's extras).

    Each message is put on the connection with a reply subject of this inbox (its prefix and a counter) and gets
    the future of its ack; one subscription answers them all (:func:`answer_ack`). nats-py's own asynchronous
    publish makes a random token, waits on a semaphore and sets a callback for each message. A future the
    caller gives up on (cancels, or ends in a timeout of its own) is let go by :meth:`prune`.

    Args:
        nc: The connection.
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}

    async def publish(self, subject: str, headers: dict[str, str], data: bytes) -> asyncio.Future[PubAck]:
        """Put the message on the connection now (:func:`publish_fast`); the future of its ack.

        Raises:
            Exception: what the connection raised (closed, draining, a bad subject): nothing was sent.
        """
        if self._sub is None:
            prefix = f"{self.nc.new_inbox()}."
            self._sub = await parser.subscribe(self.nc, f"{prefix}*", self._answer)  # acks answered as read
            self._prefix = prefix
        token = str(next(self._tokens))
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future  # before its ack can come
        try:
            await publish_fast(self.nc, subject, self._prefix + token, headers, data)
        except BaseException:
            del self._waiting[token]
            raise
        return future

    def _answer(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if future is not None:
            answer_ack(future, msg)

    def prune(self) -> None:
        """Let go of the futures already done (given up on): their acks, if they come, find nobody."""
        self._waiting = {token: future for token, future in self._waiting.items() if not future.done()}

    async def close(self) -> None:
        """Stop listening; the futures still waited for end in ``TimeoutError``."""
        sub, self._sub = self._sub, None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(TimeoutError("no ack before the inbox was closed"))
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await parser.unsubscribe(self.nc, sub)


class Pipeline:
    """Asynchronous publishes on one connection, with a bounded window of outstanding acks.

    Args:
        nc: The connection.
        window: Most acks outstanding at once.
        timeout_s: How long a message waits for its ack, from when it is sent.
        serial_fence: Send fenced messages one at a time (the stream is replicated).
    """

    def __init__(self, nc: NATS, window: int, timeout_s: float, serial_fence: bool) -> None:
        if window < 1:
            raise ValueError(f"a publish window of {window} holds nothing; it must be at least 1")
        self.nc = nc
        self.window = window
        self.timeout_s = timeout_s
        self.serial_fence = serial_fence
        self._acks = AckInbox(nc)

    async def send(self, items: Sequence[Outgoing]) -> list[Outcome]:
        """Publish ``items`` in order; the outcome of each, in the same order."""
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome | None] = [None] * len(items)
        flight: deque[tuple[int, float, asyncio.Future[PubAck]]] = deque()
        last_fenced: dict[str, tuple[int, float, asyncio.Future[PubAck]]] = {}
        broken: dict[str, Exception] = {}
        try:
            for index, item in enumerate(items):
                while len(flight) >= self.window:
                    await self._settle(flight.popleft(), outcomes)
                fence = item.headers.get(FENCE_SUBJECT, "") if item.fenced else ""
                if item.fenced and self.serial_fence and fence in last_fenced:
                    await self._wait(last_fenced[fence])
                    failure = _failure(last_fenced[fence][2])
                    if failure is not None:
                        broken.setdefault(fence, failure)
                if item.fenced and fence in broken:
                    outcomes[index] = broken[fence]  # not sent: stored after the one that failed, it would overtake it
                    continue
                try:
                    future = await self._acks.publish(item.subject, item.headers, item.data)
                except Exception as exc:  # closed, draining, a bad subject: this message's outcome
                    outcomes[index] = exc
                    continue
                sent = (index, loop.time() + self.timeout_s, future)
                flight.append(sent)
                if item.fenced:
                    last_fenced[fence] = sent
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let the flusher send what is buffered while the rest is encoded
            while flight:
                await self._settle(flight.popleft(), outcomes)
        finally:
            for _, _, future in flight:  # cancelled meanwhile: nobody waits for these acks any more
                future.cancel()
            self._acks.prune()
        return [outcome if outcome is not None else NatsTimeoutError() for outcome in outcomes]

    async def _wait(self, sent: tuple[int, float, asyncio.Future[PubAck]]) -> None:
        """Wait until ``sent`` is answered or its time is up (it is settled later, in order)."""
        _, deadline, future = sent
        if not future.done():
            left = deadline - asyncio.get_running_loop().time()
            if left > 0:
                await asyncio.wait((future,), timeout=left)

    async def _settle(self, sent: tuple[int, float, asyncio.Future[PubAck]], outcomes: list[Outcome | None]) -> None:
        await self._wait(sent)
        index, _, future = sent
        if not future.done():
            future.cancel()
            outcomes[index] = NatsTimeoutError()
        elif (error := future.exception()) is not None:
            outcomes[index] = error if isinstance(error, Exception) else NatsTimeoutError()
        else:
            outcomes[index] = future.result()


def _failure(future: asyncio.Future[PubAck]) -> Exception | None:
    """Why a sent message was not stored (its error, or a timeout when unanswered); None once it was."""
    if not future.done():
        return NatsTimeoutError()
    if future.cancelled():
        return NatsTimeoutError()
    error = future.exception()
    if error is None:
        return None
    return error if isinstance(error, Exception) else NatsTimeoutError()
