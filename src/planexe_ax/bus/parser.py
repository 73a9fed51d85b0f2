"""The NATS wire protocol as the client reads it: messages without a regular expression each.

nats-py's ``Parser`` matches every control line against one pattern per kind of line (``MSG``, then ``HMSG``,
...), and deletes each line and each payload from the front of its buffer on its own. A bulk consumer, such as the
projector replaying a stream, receives tens of thousands of messages a second: the patterns' backtracking alone
was a tenth of the client's work. :class:`Parser` reads ``MSG`` and ``HMSG`` lines by splitting them at
whitespace and slices every message of a read from one copy of the buffer, which it trims once; anything else
(``PING``, ``PONG``, ``+OK``, ``-ERR``, ``INFO``, a malformed line) it leaves to nats-py's own parser, which then
reads it, and what follows it, exactly as before. A test holds the two equal on the same bytes, cut anywhere.

:func:`install` makes a connected client read with it.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.protocol import parser as nats_parser

CRLF = b"\r\n"
MESSAGE_LINES = (b"MSG", b"HMSG")
"""How the control lines this parser reads itself begin."""
WITH_HEADERS = b"HMSG"

__all__ = ["Parser", "install"]


class Parser(nats_parser.Parser):
    """nats-py's parser, reading the ``MSG`` and ``HMSG`` lines and their payloads itself (same state, same calls)."""

    async def parse(self, data: bytes = b"") -> None:
        """Hand each complete message in the buffer to the client; leave any other line to nats-py's parser."""
        buf = self.buf
        buf.extend(data)
        if self.state == nats_parser.AWAITING_MSG_PAYLOAD and len(buf) < self.needed + len(CRLF):
            return  # a large payload arriving a read at a time: copied once, when it is all here
        chunk, pos, other = bytes(buf), 0, False
        size = len(chunk)
        process = self.nc._process_msg
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
                        return  # reset for a new connection while the message was handled: the rest is gone
                    continue
                line_end = chunk.find(CRLF, pos)
                if not chunk.startswith(MESSAGE_LINES, pos):
                    other = True  # another kind of line, or the start of one
                    break
                if line_end < 0:
                    break  # the rest of the line is in the next read
                line = _message_line(chunk[pos:line_end])
                if line is None:
                    other = True  # nats-py's parser reports it as it always has
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
                    return
        finally:
            del buf[:pos]
        if other:
            await super().parse()


def _message_line(line: bytes) -> tuple[bytes, int, bytes, int, int] | None:
    """A ``MSG`` or ``HMSG`` line's subject, sid, reply (or b""), header size (0 for MSG) and size.

    ``MSG <subject> <sid> [reply] <size>``, ``HMSG <subject> <sid> [reply] <header size> <size>``; None for any
    other line, which nats-py's parser then reads (and reports) itself.
    """
    fields = line.split()
    if fields[0] not in MESSAGE_LINES or not line[-1:].isdigit():
        return None
    headers = fields[0] == WITH_HEADERS
    numbers = fields[-2:] if headers else fields[-1:]
    named = len(fields) - len(numbers)
    if named not in (3, 4) or not all(field.isdigit() for field in numbers) or not fields[2].isdigit():
        return None
    header_size = int(numbers[0]) if headers else 0
    total = int(numbers[-1])
    if header_size > total:
        return None
    return fields[1], int(fields[2]), fields[3] if named == 4 else b"", header_size, total


def install(nc: Client) -> None:
    """Make ``nc`` read the messages it receives with :class:`Parser` (its buffer and state carried over).

    A nats-py whose parser is not the one this extends is left reading its own way.
    """
    ps = getattr(nc, "_ps", None)
    if type(ps) is nats_parser.Parser:
        ps.__class__ = Parser
