"""The codec: most messages are validated from their bytes; upcasting and the errors on bad input are as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.bus import codec
from planexe_ax.bus.codec import decode_command, decode_event
from planexe_ax.bus.messages import ExecutionCreated, StartExecution, SubtaskResult, SubtaskState, TaskStatus
from planexe_ax.bus.subjects import Subjects

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
PLAN_REF = {"plan_id": "plan-prospecting-1", "sha256": "0" * 64, "size": 10}


def fixture(kind: str, version: int) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS / kind / f"v{version}.json").read_text())
    return loaded


def encode(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw).encode()


@pytest.fixture
def upcasts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The types the codec ran through the upcasters (the long way), in order."""
    seen: list[str] = []
    real = codec.upcast

    def spy(raw: dict[str, Any]) -> dict[str, Any]:
        seen.append(str(raw.get("type")))
        return real(raw)

    monkeypatch.setattr(codec, "upcast", spy)
    return seen


@pytest.mark.parametrize("kind", ["subtask_result", "subtask_started", "task_state", "execution_created"])
def test_a_current_event_is_validated_from_its_bytes(kind: str, upcasts: list[str]) -> None:
    raw = fixture(kind, 2 if kind == "execution_created" else 1)
    assert decode_event(encode(raw)).type == kind
    assert upcasts == []


def test_a_current_start_is_validated_from_its_bytes(upcasts: list[str]) -> None:
    assert isinstance(decode_command(encode(fixture("start", 2))), StartExecution)
    assert upcasts == []


@pytest.mark.parametrize(("kind", "decode"), [("execution_created", decode_event), ("start", decode_command)])
@pytest.mark.parametrize("version", [1, None], ids=["v1", "no-version"])
def test_a_v1_plan_message_is_upcast(kind: str, decode: Any, version: int | None, upcasts: list[str]) -> None:
    """v1 never carried plan_ref: the upcaster drops one sent all the same, as it did before."""
    raw = fixture(kind, 1) | {"plan_ref": PLAN_REF}
    if version is None:
        del raw["version"]
    decoded = decode(encode(raw))
    assert isinstance(decoded, ExecutionCreated | StartExecution)
    assert (decoded.version, decoded.plan_ref, decoded.plan is not None) == (2, None, True)
    assert upcasts == [kind]


def test_a_v1_message_without_its_plan_still_fails_after_the_upcast() -> None:
    raw = fixture("execution_created", 1) | {"plan": None, "plan_ref": PLAN_REF}
    with pytest.raises(ValueError, match="a plan or a plan_ref is required"):
        decode_event(encode(raw))


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


def test_a_version_string_is_read_as_pydantic_reads_an_int() -> None:
    """'1.0' is version 1 to pydantic; before, the upcaster lookup's int() refused it on every type."""
    assert decode_event(encode(fixture("subtask_started", 1) | {"version": "1.0"})).version == 1
    with pytest.raises(ValueError):  # noqa: PT011 - an upcaster starts from v1: the long way refuses it still
        decode_command(encode(fixture("start", 1) | {"version": "1.0"}))


@pytest.mark.parametrize("decode", [decode_event, decode_command], ids=["event", "command"])
def test_an_unknown_type_raises_value_error(decode: Any) -> None:
    raw = fixture("subtask_started", 1) | {"type": "subtask_exploded"}
    with pytest.raises(ValueError, match="subtask_exploded"):
        decode(encode(raw))


def test_unknown_fields_are_ignored_as_before() -> None:
    raw = fixture("subtask_result", 1) | {"added_later": {"x": 1}}
    event = decode_event(encode(raw))
    assert event == decode_event(encode(fixture("subtask_result", 1)))
    assert not hasattr(event, "added_later")


def test_a_decision_on_its_subject_is_stored_as_sent_and_anything_else_is_dumped_again() -> None:
    subjects = Subjects("ns")
    decision = SubtaskState(execution_id="e1", task_id="t1", subtask_id="s1", status=TaskStatus.RUNNING, attempt=1)
    report = SubtaskResult(execution_id="e1", task_id="t1", subtask_id="s1", agent_id="a1", ok=True, attempt=1)
    # What the bus writes is what the model dumps again: keeping the bytes changes nothing stored.
    data = decision.model_dump_json(by_alias=True).encode()
    assert decode_event(data).model_dump_json(by_alias=True).encode() == data
    assert codec.stored_as_sent(codec.decode_event_on(subjects, subjects.event("e1", "subtask_state"), data))
    # A report, which an agent may write its own way.
    on_report_subject = subjects.report("e1", "subtask_result", "a1")
    report_data = report.model_dump_json(by_alias=True).encode()
    assert not codec.stored_as_sent(codec.decode_event_on(subjects, on_report_subject, report_data))
    # A decision is read only from its own execution's decision subject (where only the coordinator publishes).
    with pytest.raises(ValueError, match="cannot be on"):
        codec.decode_event_on(subjects, subjects.event("e2", "subtask_state"), data)
    # A type an upcaster changes: the bytes may be of an older version.
    assert {"start", "execution_created"} == codec.UPCAST_TYPES
    created = decode_event(encode(fixture("execution_created", 1)))
    assert not codec.stored_as_sent(created)
