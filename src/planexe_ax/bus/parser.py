"""The NATS wire protocol as the client reads it: messages without a regular expression each.

nats-py's ``Parser`` matches every control line against one pattern per kind of line (``MSG``, then ``HMSG``,
...), and deletes each line and each payload from the front of its buffer on its own. A bulk consumer, such as the
projector replaying a stream, receives tens of thousands of messages a second: the patterns' backtracking alone
was a tenth of the client's work. :class:`Parser` reads ``MSG`` and ``HMSG`` lines by splitting them at
whitespace and slices every message of a read from one copy of the buffer, which it trims once. Any other line
(``PING``, ``PONG``, ``+OK``, ``-ERR``, ``INFO``) it hands to nats-py's own parser alone, then reads on; a message
line it does not take (malformed: the server sends none) it leaves to nats-py's parser with all that follows, to
be read, or refused, as before. A test holds the two equal on the same bytes, cut anywhere.

A subscription can also take its messages straight from the parser (:func:`subscribe` makes one,
:func:`unsubscribe` ends it; :func:`deliver_directly` turns it on for a subscription made otherwise): each message
is handed, in order, to a plain function as soon as it is read, instead of nats-py queueing it for a task that
awaits the subscription's callback (a queue, a task switch and a coroutine per message). The standing pulls of
:mod:`planexe_ax.bus.consumer`, the publish acks of :class:`planexe_ax.bus.pipeline.AckInbox` and the
subscriptions of :func:`planexe_ax.bus.replay.listen` (an agent's execution watches) take their messages this way.

:func:`install` makes a connected client read with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from nats.aio import client as nats_client
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol import parser as nats_parser

log = logging.getLogger(__name__)

CRLF = b"\r\n"
STATUS_AT = len(b"NATS/1.0")
"""Where a header block's status follows a space (``NATS/1.0 404``); a block without one has CR LF there."""
LINES_AT = STATUS_AT + len(CRLF)
MESSAGE_LINES = (b"MSG", b"HMSG")
"""How the control lines this parser reads itself begin."""
WITH_HEADERS = b"HMSG"
ALL_THAT_FOLLOWS = -1

Deliver = Callable[[Msg], None]
"""A function a subscription's messages are handed to as they are read (it must not block)."""

__all__ = ["Deliver", "Parser", "deliver_directly", "install", "stop_delivering", "subscribe", "unsubscribe"]


class Parser(nats_parser.Parser):
    """nats-py's parser, reading the ``MSG`` and ``HMSG`` lines and their payloads itself (same state, same calls).

    ``direct`` maps a subscription's sid to the function its messages are handed to (:func:`deliver_directly`).
    """

    def __init__(self, nc: Client | None = None) -> None:
        self.direct: dict[int, Deliver] = {}
        super().__init__(nc)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """A message to its subscription: the client's way, or straight to the function taking that sid's messages."""
        deliver = self.direct.get(sid)
        if deliver is None:
            await self.nc._process_msg(sid, subject, reply, data, headers)
            return
        nc = self.nc
        nc.stats["in_msgs"] += 1
        nc.stats["in_bytes"] += len(data)
        if not headers:
            hdr = None
        elif headers[STATUS_AT : STATUS_AT + 1] == b" " or nats_client.parse_email is not None:
            # A status line (or headers read by another library): as nats-py reads them, awaited here, not queued.
            hdr = await nc._process_headers(headers)
        else:  # NATS/1.0 CR LF, then the lines: what nats-py's _process_headers gives for them, in one step
            hdr = nc._parse_header_lines(headers[LINES_AT:]) or None if len(headers) > LINES_AT else None
        try:
            deliver(nc._build_message(sid, subject, reply, data, hdr))
        except Exception as exc:  # as nats-py treats a callback's error: reported, and the connection reads on
            log.exception("a message's handler failed", extra={"sid": sid})
            await nc._error_cb(exc)

    async def parse(self, data: bytes = b"") -> None:
        """Hand each complete message in the buffer to the client; any other line to nats-py's parser."""
        self.buf.extend(data)
        while True:
            buf = self.buf
            other = await self._read_messages(buf)
            if other == ALL_THAT_FOLLOWS:
                await super().parse()
                return
            if not other or self.buf is not buf:
                return  # all read (or waiting for the next read), or reset for a new connection meanwhile
            # The line alone, so that every message after it is still read here (a subscription's messages, handed
            # over directly, keep their order): the rest is put back after it.
            rest = bytes(buf[other:])
            del buf[other:]
            await super().parse()
            if self.buf is not buf:
                return
            read = not buf  # else nats-py's parser left the line, waiting on it as it always has
            buf.extend(rest)
            if not read:
                return

    async def _read_messages(self, buf: bytearray) -> int:
        """Hand on the messages at the front of ``buf`` and trim them off; what stops the reading.

        Returns:
            0 when the rest (if any) needs the next read; else the length of the line at the front that is not a
            message, or :data:`ALL_THAT_FOLLOWS` for a message line this parser does not take.
        """
        if self.state == nats_parser.AWAITING_MSG_PAYLOAD and len(buf) < self.needed + len(CRLF):
            return 0  # a large payload arriving a read at a time: copied once, when it is all here
        chunk, pos, other = bytes(buf), 0, 0
        size = len(chunk)
        process = self._process_msg if self.direct else self.nc._process_msg
        try:
            while pos < size:
                if self.state == nats_parser.AWAITING_MSG_PAYLOAD:
                    end = pos + self.needed
                    if size < end + len(CRLF):
                        break
                    split = pos + self.header_needed
                    arg = self.msg_arg
                    self.state, self.header_needed = nats_parser.AWAITING_CONTROL_LINE, 0
                    headers = chunk[pos:split] if split > pos else None
                    pos = end + len(CRLF)
                    await process(arg["sid"], arg["subject"], arg["reply"], chunk[split:end], headers)
                    if self.buf is not buf:
                        break  # reset for a new connection while the message was handled: the rest is gone
                    continue
                line_end = chunk.find(CRLF, pos)
                if line_end < 0:
                    break  # the rest of the line is in the next read
                if not chunk.startswith(MESSAGE_LINES, pos):
                    other = line_end + len(CRLF) - pos  # another kind of line: nats-py's parser reads it alone
                    break
                line = _message_line(chunk[pos:line_end])
                if line is None:
                    other = ALL_THAT_FOLLOWS  # nats-py's parser reads it, or reports it, as it always has
                    break
                subject, sid, reply, header_size, total = line
                start = line_end + len(CRLF)
                if size < start + total + len(CRLF):  # the payload comes in the next reads
                    self.msg_arg = {"subject": subject, "sid": sid, "reply": reply}
                    self.needed, self.header_needed = total, header_size
                    self.state, pos = nats_parser.AWAITING_MSG_PAYLOAD, start
                    break
                split, end = start + header_size, start + total
                pos = end + len(CRLF)
                await process(sid, subject, reply, chunk[split:end], chunk[start:split] if header_size else None)
                if self.buf is not buf:
                    break
        finally:
            del buf[:pos]
        return other


def _message_line(line: bytes) -> tuple[bytes, int, bytes, int, int] | None:
    """A ``MSG`` or ``HMSG`` line's subject, sid, reply (or b""), header size (0 for MSG) and size.

    ``MSG <subject> <sid> [reply] <size>``, ``HMSG <subject> <sid> [reply] <header size> <size>``; None for any
    other line, which nats-py's parser then reads (and reports) itself.
    """
    fields = line.split()
    count = len(fields)
    if fields[0] == WITH_HEADERS:
        if count not in (5, 6) or not fields[-2].isdigit():
            return None
        header_size = int(fields[-2])
        named = count - 2
    elif fields[0] == b"MSG" and count in (4, 5):
        header_size, named = 0, count - 1
    else:
        return None
    sid, size = fields[2], fields[-1]
    if not (sid.isdigit() and size.isdigit() and line[-1:].isdigit()) or header_size > int(size):
        return None
    return fields[1], int(sid), fields[3] if named == 4 else b"", header_size, int(size)


def install(nc: Client) -> None:
    """Make ``nc`` read the messages it receives with :class:`Parser` (its buffer and state carried over).

    A nats-py whose parser is not the one this extends is left reading its own way.
    """
    ps = getattr(nc, "_ps", None)
    if type(ps) is nats_parser.Parser:
        ps.__class__ = Parser
        cast(Parser, ps).direct = {}


def deliver_directly(nc: Client, sub: Subscription, deliver: Deliver) -> bool:
    """Hand ``sub``'s messages to ``deliver`` as the parser reads them, until :func:`stop_delivering`.

    Call it as soon as ``sub`` is made, before anything can be sent to it (a message the client queued for the
    subscription's callback before this would reach the callback). False when ``nc`` does not read with
    :class:`Parser`: the callback then takes every message.
    """
    ps = getattr(nc, "_ps", None)
    if not isinstance(ps, Parser):
        return False
    ps.direct[sub._id] = deliver
    return True


def stop_delivering(nc: Client, sub: Subscription) -> None:
    """Give ``sub``'s messages back to the client's own way (its callback)."""
    ps = getattr(nc, "_ps", None)
    if isinstance(ps, Parser):
        ps.direct.pop(sub._id, None)


async def subscribe(nc: Client, subject: str, deliver: Deliver) -> Subscription:
    """Subscribe to ``subject``, each message handed to ``deliver`` as it is read (:func:`deliver_directly`).

    On a connection that does not read with :class:`Parser` the messages reach ``deliver`` by way of the
    subscription's callback instead. End it with :func:`unsubscribe`.
    """

    async def queued(msg: Msg) -> None:
        deliver(msg)

    sub = await nc.subscribe(subject, cb=queued)
    deliver_directly(nc, sub, deliver)  # before the server can send it anything (the client's next flush)
    return sub


async def unsubscribe(nc: Client, sub: Subscription) -> None:
    """End a subscription made by :func:`subscribe` (the parser lets go of it first)."""
    stop_delivering(nc, sub)
    await sub.unsubscribe()
