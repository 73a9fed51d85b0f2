"""Rule S5: every wire message type has a golden fixture, and every fixture decodes with the current codec.

Fixtures live in ``tests/contracts/<type>/v<N>.json`` and are never edited once shipped: a new field with a
default needs no new fixture, a breaking change needs a new version, an upcaster and a ``v<N+1>.json``.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from planexe_ax.bus import messages
from planexe_ax.bus.codec import decode_command, decode_event, upcast

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
FIXTURE_NAME = re.compile(r"^v([1-9][0-9]*)\.json$")


@dataclass(frozen=True)
class Contract:
    model: type[BaseModel]
    decode: Callable[[bytes], BaseModel]


def _members(union: Any) -> list[type[BaseModel]]:
    return list(typing.get_args(typing.get_args(union)[0]))


def _type_of(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


def _plain(model: type[BaseModel]) -> Callable[[bytes], BaseModel]:
    return model.model_validate_json


# The wire types: every member of the Event and Command unions, plus the messages that are not in a union.
CONTRACTS_BY_TYPE: dict[str, Contract] = {
    **{_type_of(m): Contract(m, decode_event) for m in _members(messages.Event)},
    **{_type_of(m): Contract(m, decode_command) for m in _members(messages.Command)},
    "task_offer": Contract(messages.TaskOffer, _plain(messages.TaskOffer)),
    "agent_card": Contract(messages.AgentCard, _plain(messages.AgentCard)),
    "dead_letter": Contract(messages.DeadLetter, _plain(messages.DeadLetter)),
}


def current_version(model: type[BaseModel]) -> int:
    field = model.model_fields.get("version")
    return int(field.default) if field is not None else 1


def fixtures() -> list[Path]:
    return sorted(CONTRACTS.glob("*/v*.json"))


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def assert_known(fixture: Any, dumped: Any, where: str = "$") -> None:
    """Every key and value of the fixture survives decoding: nothing was renamed, dropped or reinterpreted.

    The dump may hold more keys (fields added later with defaults); the fixture may not.
    """
    if isinstance(fixture, dict):
        assert isinstance(dumped, dict), f"{where}: expected an object, got {dumped!r}"
        for key, value in fixture.items():
            assert key in dumped, f"{where}.{key} is in the fixture but the model dropped it (renamed or removed?)"
            assert_known(value, dumped[key], f"{where}.{key}")
    elif isinstance(fixture, list):
        assert isinstance(dumped, list), f"{where}: expected a list, got {dumped!r}"
        assert len(fixture) == len(dumped), f"{where}: {len(fixture)} items became {len(dumped)}"
        for i, (a, b) in enumerate(zip(fixture, dumped, strict=True)):
            assert_known(a, b, f"{where}[{i}]")
    else:
        assert fixture == dumped, f"{where}: {fixture!r} decoded as {dumped!r}"


# ---------------------------------------------------------------------------------------------- coverage
def test_every_wire_type_has_a_fixture_of_its_current_version() -> None:
    missing = [
        f"{kind}/v{current_version(c.model)}.json"
        for kind, c in CONTRACTS_BY_TYPE.items()
        if not (CONTRACTS / kind / f"v{current_version(c.model)}.json").is_file()
    ]
    assert missing == [], f"add golden fixtures under tests/contracts/: {missing}"


def test_no_fixture_without_a_wire_type() -> None:
    folders = {p.name for p in CONTRACTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders - set(CONTRACTS_BY_TYPE) == set(), "fixture folder for a type the codec does not know"
    assert all(FIXTURE_NAME.match(p.name) for p in CONTRACTS.glob("*/*.json")), "fixtures are named v<N>.json"


def test_the_unions_are_what_the_fixtures_cover() -> None:
    """Guards the coverage test itself: it must see every event and command type."""
    assert {"subtask_result", "execution_created", "command_rejected"} <= set(CONTRACTS_BY_TYPE)
    assert {"start", "pause", "resume", "cancel"} <= set(CONTRACTS_BY_TYPE)
    assert len(CONTRACTS_BY_TYPE) == len(_members(messages.Event)) + len(_members(messages.Command)) + 3


# ---------------------------------------------------------------------------------------------- each fixture
@pytest.fixture(params=fixtures(), ids=fixture_id)
def fixture_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_fixture_decodes_with_the_current_codec(fixture_path: Path) -> None:
    contract = CONTRACTS_BY_TYPE[fixture_path.parent.name]
    raw = fixture_path.read_bytes()
    decoded = contract.decode(raw)
    assert isinstance(decoded, contract.model)
    fixture = json.loads(raw)
    if "type" in contract.model.model_fields:
        assert fixture["type"] == fixture_path.parent.name
    match = FIXTURE_NAME.match(fixture_path.name)
    assert match is not None
    if "version" in fixture:
        assert fixture["version"] == int(match.group(1)), "the file name and the version field disagree"
    if int(match.group(1)) == current_version(contract.model):
        # A fixture of the current version must survive decoding whole; older ones go through upcasters.
        assert_known(fixture, decoded.model_dump(mode="json", by_alias=True))


@pytest.mark.parametrize("by_alias", [False, True], ids=["bus-encoding", "by-alias"])
def test_encode_then_decode_is_stable(fixture_path: Path, by_alias: bool) -> None:
    contract = CONTRACTS_BY_TYPE[fixture_path.parent.name]
    first = contract.decode(fixture_path.read_bytes())
    # Bus.publish sends model_dump_json(); by_alias is what a plan file looks like ("from" in dependencies).
    encoded = first.model_dump_json(by_alias=by_alias).encode()
    second = contract.decode(encoded)
    assert second == first
    assert second.model_dump_json(by_alias=by_alias).encode() == encoded


ADAPTERS: dict[Callable[[bytes], BaseModel], TypeAdapter[Any]] = {
    decode_event: messages.EVENT_ADAPTER,
    decode_command: messages.COMMAND_ADAPTER,
}


@pytest.mark.parametrize(
    "path", [p for p in fixtures() if CONTRACTS_BY_TYPE[p.parent.name].decode in ADAPTERS], ids=fixture_id
)
def test_fixture_decodes_as_the_long_way_does(path: Path) -> None:
    """The codec validates most messages from their bytes: the model is the one json.loads, upcast, validate gave."""
    decode = CONTRACTS_BY_TYPE[path.parent.name].decode
    expected = ADAPTERS[decode].validate_python(upcast(json.loads(path.read_bytes())))
    decoded = decode(path.read_bytes())
    assert type(decoded) is type(expected)
    assert decoded == expected
    assert decoded.model_dump_json() == expected.model_dump_json()
    assert decoded.model_fields_set == expected.model_fields_set


def test_assert_known_catches_a_dropped_field() -> None:
    with pytest.raises(AssertionError, match="dropped"):
        assert_known({"percent": 1, "old_name": "x"}, {"percent": 1})
    with pytest.raises(AssertionError, match="decoded as"):
        assert_known({"ts": "2025-01-01T00:00:00+01:00"}, {"ts": "2024-12-31T23:00:00Z"})


def test_unknown_type_is_rejected_by_the_codec() -> None:
    raw = json.loads((CONTRACTS / "subtask_started" / "v1.json").read_text())
    raw["type"] = "subtask_exploded"
    with pytest.raises(ValueError, match="subtask_exploded"):
        decode_event(json.dumps(raw).encode())
