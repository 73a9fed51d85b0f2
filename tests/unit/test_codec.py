"""The codec: upcasting, and a ValueError (what callers dead-letter) for every message that does not decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.bus.codec import decode_command, decode_event

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def fixture(kind: str, version: int) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS / kind / f"v{version}.json").read_text())
    return loaded


def encode(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"\xff", b"not json", b"[]", b"null", b'"x"', b"1", b"{}", b'{"type": 1}', b'{"no": "type"}'],
)
@pytest.mark.parametrize("decode", [decode_event, decode_command], ids=["event", "command"])
def test_malformed_bytes_raise_value_error(data: bytes, decode: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError is what callers dead-letter
        decode(data)


def test_bytes_that_are_not_json_raise_json_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        decode_event(b'{"type": "subtask_started", ')


@pytest.mark.parametrize("version", [None, [1], {"v": 1}, "x", 1e999], ids=repr)
@pytest.mark.parametrize("kind", ["start", "execution_created", "subtask_started"])
def test_a_version_that_is_no_number_raises_value_error(kind: str, version: Any) -> None:
    raw = fixture(kind, 1) | {"version": version}
    with pytest.raises(ValueError):  # noqa: PT011
        (decode_command if kind == "start" else decode_event)(encode(raw))


@pytest.mark.parametrize("decode", [decode_event, decode_command], ids=["event", "command"])
def test_an_unknown_type_raises_value_error(decode: Any) -> None:
    raw = fixture("subtask_started", 1) | {"type": "subtask_exploded"}
    with pytest.raises(ValueError, match="subtask_exploded"):
        decode(encode(raw))
