"""The header-line parser the bus installs on its connections gives exactly what nats-py's own gives, when read."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest
from nats.aio.client import Client

from planexe_ax.bus.headers import Headers, install, parse_header_lines

EVENT_HEADERS = (
    b"Content-Type: application/json\r\nAx-Type: subtask_state\r\n"
    b"Nats-Msg-Id: 0123456789abcdef0123456789abcdef-x\r\n"
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"
)
PIECES = [b"a", b"B", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x0b", b"\x0c", b"\x1c", b"\x1f", b"\x85",
          b"\xc3\xa9", b"\xe2\x80\x83", b"\xff"]  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        EVENT_HEADERS,
        b"",
        b"\r\n",
        b"no colon\r\n",
        b" Name : value \r\n",
        b"Two words: dropped\r\n",
        b"\xffName: not ascii, dropped\r\n",
        b"Name: \xff\xfe malformed UTF-8\r\n",
        b"Name: caf\xc3\xa9\r\n",
        b"Sep\x1c: the separator is whitespace to str, not to bytes\r\n",
        b"\x1cName: stripped by str, kept by bytes\x1c\r\n",
        b": empty name\r\n",
        b"Name: a:b\r\nName: later wins\r\n",
        b"\tName\t:\tvalue\t\r\n",
        b"Name\x0b: \x0bvalue\x0c\r\n",
        b"Nats-Expected-Last-Subject-Sequence: 12\r\nNats-Expected-Last-Subject-Sequence-Subject: ax.fence.3\r\n\r\n",
        b"A:1\r\nB:\tvalue with : colons \r\nno colon here\r\n:empty name\r\n\r\n",
        b"Caf\xc3\xa9: not ascii\r\nValue: caf\xc3\xa9 \xff\xfe\r\nDup: 1\r\nDup: 2\r\n",
        b"Lone\rCR: x\r\nLone\nLF: y\r\n",
    ],
)
def test_the_same_dict_as_nats_py(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_the_same_dict_as_nats_py_for_random_blocks() -> None:
    rnd = random.Random(13)
    for _ in range(20_000):
        raw = b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 16)))
        assert parse_header_lines(raw) == Client._parse_header_lines(raw), raw


def test_headers_read_as_the_dict_nats_py_gives() -> None:
    """Every way a reader looks at a message's headers answers as nats-py's dict, whether parsed yet or not."""
    rnd = random.Random(17)
    names: list[Any] = ["Status", "Ax-Type", "a", "B", "Caf\u00e9", "", "Nats-Msg-Id", "a:b", 7]
    for _ in range(5_000):
        raw = b"".join(rnd.choice([*PIECES, b"Status: 408", b"Ax-Type: x"]) for _ in range(rnd.randint(3, 16)))
        expected = Client._parse_header_lines(raw)
        for name in names:
            assert Headers(raw).get(name) == expected.get(name), (raw, name)
            assert (name in Headers(raw)) == (name in expected), (raw, name)
            assert Headers(raw).get(name, "none") == expected.get(name, "none"), (raw, name)
        headers = Headers(raw)
        assert dict(headers) == expected == headers
        assert (len(headers), sorted(headers)) == (len(expected), sorted(expected))
        assert all(headers[name] == value for name, value in expected.items())
        assert {**(headers or {})} == expected


def test_a_header_read_before_the_block_is_parsed_raises_as_a_dict_does() -> None:
    headers = Headers(EVENT_HEADERS)
    with pytest.raises(KeyError):
        headers["Status"]
    assert headers["Ax-Type"] == "subtask_state"
    assert bool(headers)


def test_install_makes_a_client_use_it() -> None:
    nc = Client()
    install(nc)
    assert cast(object, nc._parse_header_lines) is Headers
    assert nc._parse_header_lines(EVENT_HEADERS)["Ax-Type"] == "subtask_state"
    assert cast(object, Client._parse_header_lines) is not Headers, "other connections keep nats-py's own"
