"""Pull requests on a durable consumer whose messages are gathered in one go.

nats-py's ``PullSubscription.fetch`` awaits each message of a batch with its own timeout (a task per
message), which costs more than handling the message does in a bulk consumer (the webhook delivery service). A
:class:`Puller` sends the same pull request (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``) and collects
what the server sends back with one subscription callback, waiting once per request.

Every request has its own reply subject under one inbox, so a status message (``404`` no messages, ``408``
request expired) ends only the request it answers. Messages are kept in the order they arrive, whichever
request they answer: one that comes after its request gave up is handed on with the next batch, never dropped
(a dropped message would only come back after ``ack_wait``, behind newer ones); one still here when the puller
closes is given back (nak).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError

from planexe_ax.bus.connection import Bus
from planexe_ax.bus.wakes import wake, woken

STATUS, DESCRIPTION = "Status", "Description"
DONE = frozenset({"404", "408"})
"""Statuses that end a request without an error: nothing to deliver, or the request expired."""
HEARTBEAT = "100"
V1_TOKENS = 9
GRACE_S = 1.0
"""How much longer than the request's expiry the client waits for the server's ``408``."""


async def give_back(msgs: list[Msg]) -> None:
    """Nak ``msgs`` (received, not handled): the consumer delivers them again now, not after its ack wait."""
    for msg in msgs:
        with contextlib.suppress(Exception):  # not given back: redelivered after the consumer's ack wait
            await msg.nak()


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a JetStream message, read from its ack subject.

    ``msg.metadata`` parses every field of it (times, counts) into objects; a bulk consumer needs only this.
    Ack subjects are ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`` (9 tokens) or, with a
    domain and an account hash, ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<stream seq>...``.
    """
    reply = msg.reply or ""
    if reply.count(".") == V1_TOKENS - 1:  # the last four tokens split off: the stream sequence is the first
        return int(reply.rsplit(".", 4)[1])
    return msg.metadata.sequence.stream  # the other forms, or an error that says why


def delivery_seq(msg: Msg) -> int:
    """The consumer's sequence of this delivery, read from its ack subject (see :func:`stream_seq`).

    Every delivery of a consumer, a redelivery too, takes the next one: a jump means a delivery that never
    arrived (its node went down with it in flight, a pull was given up with messages on their way).
    """
    seq = _v1_token(msg, 6)
    return msg.metadata.sequence.consumer if seq is None else seq


def delivered_count(msg: Msg) -> int:
    """How many times this message has been delivered (1 the first time), read from its ack subject."""
    count = _v1_token(msg, 4)
    return msg.metadata.num_delivered if count is None else count


def _v1_token(msg: Msg, index: int) -> int | None:
    """The number at ``index`` of a 9-token ack subject (see :func:`stream_seq`); None for the other forms."""
    tokens = (msg.reply or "").split(".")
    return int(tokens[index]) if len(tokens) == V1_TOKENS else None


class Puller:
    """Pull batches from one durable consumer.

    Args:
        bus: A connected bus.
        stream: Stream name.
        durable: Durable pull consumer (it must exist).
    """

    def __init__(self, bus: Bus, stream: str, durable: str) -> None:
        self.bus = bus
        self.api_subject = f"{bus.js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"  # as StandingPull: the domain's
        self._inbox = ""
        self._sub: Subscription | None = None
        self._requests = 0
        self._reply = ""
        self._want = 0
        self._got: list[Msg] = []
        self._waiter: asyncio.Future[None] | None = None
        """The :meth:`fetch` waiting: woken once it has its batch, by its request's status, or by :meth:`interrupt`."""
        self._interrupted = False
        self._error: APIError | None = None

    async def __aenter__(self) -> Puller:
        self._inbox = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
        return self

    async def __aexit__(self, *_: object) -> None:
        """Unsubscribe, and give back (nak) the messages received and not handed out: another pull gets them now."""
        sub, self._sub = self._sub, None
        got, self._got = self._got, []
        await give_back(got)
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await sub.unsubscribe()

    def interrupt(self) -> None:
        """End the :meth:`fetch` in progress, and make every later one return at once: the loop is stopping.

        An interrupted fetch hands out nothing; what came for it is given back when the puller closes.
        """
        self._interrupted = True
        self._wake()

    async def fetch(self, batch: int, wait_s: float) -> list[Msg]:
        """Up to ``batch`` messages: those that come within ``wait_s`` (it returns once ``batch`` are in).

        Once :meth:`interrupt` was called: none, at once.

        Raises:
            APIError: The server refused the request (e.g. the consumer is gone).
        """
        if self._interrupted:
            return []
        self._requests += 1
        self._reply = f"{self._inbox}.{self._requests}"
        self._want, self._error = batch, None
        if len(self._got) < batch:
            request = {"batch": batch - len(self._got), "expires": int(wait_s * 1e9)}
            # A future woken by the batch, the status or a stop, or by its timer: no task per wait (wait_for makes
            # one). Made before the request is sent, so that an answer that comes while it is sent wakes it too.
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await self.bus.nc.publish(self.api_subject, json.dumps(request).encode(), reply=self._reply)
                await woken(waiter, wait_s + GRACE_S)
            finally:
                self._waiter = None
            if self._interrupted:
                return []
        got, self._got = self._got[:batch], self._got[batch:]
        if self._error is not None and not got:
            raise self._error
        return got

    def _wake(self) -> None:
        if self._waiter is not None:
            wake(self._waiter)

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(STATUS) if not msg.data else None
        if status is None:
            self._got.append(msg)
            if len(self._got) >= self._want:
                self._wake()
        elif status != HEARTBEAT and msg.subject == self._reply:
            if status not in DONE:
                self._error = APIError(code=int(status), description=headers.get(DESCRIPTION, ""))
            self._wake()
