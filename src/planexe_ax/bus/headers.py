"""A faster parser of the header lines nats-py reads with every message that has headers.

nats-py parses each message's header block with ``Client._parse_header_lines``, which tests every character of
every header name for whitespace in a Python generator and decodes each name and value on its own: a bulk
consumer such as the projector, whose events carry three or four headers each, spends a noticeable share of
its time there. :func:`parse_header_lines` gives the same dict (a test holds them equal), decoding an all-ASCII
block once and testing each name with one compiled pattern; :func:`install` makes a client use it.
"""

from __future__ import annotations

import re

from nats.aio.client import Client

CRLF = b"\r\n"
BYTES_WHITESPACE = " \t\n\r\x0b\x0c"
"""The characters ``bytes.strip()`` strips (``str.strip()`` strips more: the ASCII separators 28 to 31 too)."""
_WHITESPACE = re.compile(r"\s")
"""Any character ``str.isspace`` calls whitespace (the ``\\s`` of a str pattern is that same test)."""


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Name: Value`` lines (CR LF between them) to a dict, exactly as nats-py's ``_parse_header_lines``.

    A line without a colon, or whose name is not ASCII or has whitespace inside, is skipped; names and values
    are stripped; values are UTF-8 with malformed bytes replaced; a later line of a name wins.
    """
    if raw.isascii():
        return _parse_ascii(raw.decode("ascii"))
    out: dict[str, str] = {}
    search = _WHITESPACE.search
    for line in raw.split(CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if search(key) is None:
            out[key] = value.strip().decode("utf-8", "replace")
    return out


def _parse_ascii(text: str) -> dict[str, str]:
    """:func:`parse_header_lines` of a block that is all ASCII: decoded once, split and stripped as text."""
    out: dict[str, str] = {}
    search = _WHITESPACE.search
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip(BYTES_WHITESPACE)
        if search(key) is None:
            out[key] = value.strip(BYTES_WHITESPACE)
    return out


def install(nc: Client) -> None:
    """Make ``nc`` parse the header lines of the messages it receives with :func:`parse_header_lines`.

    A nats-py without that method (or one that reads headers another way) never calls it: the client then reads
    them its own way, and the test that holds the two equal says so.
    """
    if callable(getattr(nc, "_parse_header_lines", None)):
        nc._parse_header_lines = parse_header_lines  # type: ignore[method-assign]
