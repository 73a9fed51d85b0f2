"""The agents' header reading: the same headers as nats-py's, for any header block."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from planexe_ax.bus import Bus
from planexe_ax.bus.work import parse_header_lines, use_fast_headers

BLOCKS = [
    b"",
    b"\r\n",
    b"Content-Type: application/json\r\nAx-Type: subtask_state\r\nNats-Msg-Id: e1:s:s1:1:RUNNING:1\r\n"
    b"traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n\r\n",
    b"Nats-Expected-Last-Subject-Sequence: 12\r\nNats-Expected-Last-Subject-Sequence-Subject: ax.fence.3\r\n\r\n",
    b"A:1\r\nB:\tvalue with : colons \r\nno colon here\r\n:empty name\r\n\r\n",
    b"Bad Name: skipped\r\nTab\tName: skipped\r\nUnit\x1fSep: skipped\r\n  Padded  : kept\r\n",
    b"Caf\xc3\xa9: not ascii\r\nValue: caf\xc3\xa9 \xff\xfe\r\nDup: 1\r\nDup: 2\r\n",
    b"Lone\rCR: x\r\nLone\nLF: y\r\n",
]


@pytest.mark.parametrize("raw", BLOCKS)
def test_headers_are_read_as_nats_py_reads_them(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


LINE = st.lists(
    st.sampled_from([b"a", b"Z", b"-", b":", b" ", b"\t", b"\x1f", b"\x0b", b"\r", b"\n", b"\xc3\xa9", b"\xff"])
)


@given(st.lists(LINE.map(b"".join), max_size=8).map(b"\r\n".join) | st.binary(max_size=200))
def test_any_header_block_is_read_as_nats_py_reads_it(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


async def test_a_connection_is_made_to_read_headers_the_fast_way() -> None:
    nc = Client()
    use_fast_headers(cast(Bus, SimpleNamespace(nc=nc)))
    block = BLOCKS[2]
    assert nc._parse_header_lines(block) == Client._parse_header_lines(block)
    assert nc._parse_header_lines is parse_header_lines
    assert Client._parse_header_lines is not parse_header_lines, "other connections keep nats-py's own"
