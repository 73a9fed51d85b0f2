"""Subject grammar, namespaces and id checks of ``planexe_ax.bus.subjects``."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from planexe_ax.bus.codec import decode_event
from planexe_ax.bus.messages import PlanRef, StartExecution, TaskState, TaskStatus
from planexe_ax.bus.subjects import ID_RULE, Subjects, check_id, check_token
from planexe_ax.config import Settings

ID_CHARS = string.ascii_letters + string.digits + "_-"
TOKEN_CHARS = string.ascii_lowercase + string.digits + "_-"
LOWER_TOKEN = re.compile(r"^[a-z0-9_-]+$")
UNSAFE = ["a.b", "a b", "*", ">", "a*", "a>", "", "$sys", "tab\there", "x" * 129, "ü"]

# Longest namespace for which every subject stays under 256 characters with maximal ids
# (see test_subject_length_with_longest_ids); tests use "t" + 10 hex characters.
MAX_NAMESPACE = 32

ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=128)
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=64)
namespaces = st.one_of(st.just(""), st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=MAX_NAMESPACE))


def all_subjects(s: Subjects, ident: str, token: str) -> list[str]:
    return [
        s.task(token),
        s.direct(ident),
        s.event(ident, token),
        s.command(ident),
        s.dlq(token),
    ]


def all_filters(s: Subjects, ident: str) -> list[str]:
    return [s.events_of(ident), s.all_tasks, s.all_direct, s.all_events, s.all_commands, s.all_dlq]


def assert_grammar(subject: str) -> None:
    tokens_ = subject.split(".")
    assert len(tokens_) <= 16, subject
    assert len(subject) < 256, subject
    assert not subject.startswith(("$", "_INBOX")), subject
    assert all(tokens_), f"empty token in {subject!r}"
    assert not any(c.isspace() for c in subject), subject


# ------------------------------------------------------------------------------------------ fixed names
def test_production_names_match_design() -> None:
    s = Subjects("")
    assert s.task("web_search") == "ax.task.web_search"
    assert s.direct("agent-7") == "ax.direct.agent-7"
    assert s.event("e1", "subtask_result") == "ax.evt.e1.subtask_result"
    assert s.events_of("e1") == "ax.evt.e1.>"
    assert s.command("e1") == "ax.cmd.e1"
    assert s.dlq("coordinator") == "ax.dlq.coordinator"
    assert (s.tasks_stream, s.events_stream, s.commands_stream, s.dlq_stream) == (
        "AX_TASKS",
        "AX_EVENTS",
        "AX_COMMANDS",
        "AX_DLQ",
    )
    assert s.agents_bucket == "ax-agents"
    assert Subjects.capability_consumer("web_search") == "agents-web_search"
    assert Subjects.direct_consumer("agent-7") == "agent-agent-7"
    assert (Subjects.coordinator_events("h1"), Subjects.coordinator_commands(7), Subjects.PROJECTOR_EVENTS) == (
        "coordinator-events-h1",
        "coordinator-commands-7",
        "projector-events",
    )
    assert (s.partition_fence(7), s.partition_commands(7), s.stored_command("e1")) == (
        "ax.fence.coordinator.7",
        "ax.cmd.7.*",
        "ax.cmd.*.e1",
    )
    assert (Subjects.partition_lease(7), Subjects.coordinator_member("h1")) == (
        "coordinator.partition.7",
        "coordinator.member.h1",
    )
    assert s.template("ax.cmd.7.e1") == "ax.cmd.{execution}"
    assert s.command_partitioning(32) == ("ax.cmd.*", "ax.cmd.{{partition(32,1)}}.{{wildcard(1)}}")
    assert (s.execution_of("ax.evt.e1.task_state"), s.execution_of("ax.evt.e1.subtask_result.a1")) == ("e1", "e1")
    assert s.execution_of("ax.fence.coordinator.7") == ""


def test_fixed_tokens_are_lower_case_and_ids_come_last() -> None:
    s = Subjects("")
    for subject in all_subjects(s, "ID", "kind"):
        head = subject.split(".")[:2]
        assert all(LOWER_TOKEN.match(t) for t in head), subject
        assert subject.split(".")[0] == "ax"
    # identifiers keep their case (execution and agent ids may be mixed case), but sit after the kind
    assert s.event("ID", "kind").split(".")[2] == "ID"


def test_stream_names_are_upper_snake_and_consumers_service_dash_purpose() -> None:
    s = Subjects("")
    for name in (s.tasks_stream, s.events_stream, s.commands_stream, s.dlq_stream):
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), name
    for name in (
        Subjects.PROJECTOR_EVENTS,
        Subjects.WEBHOOK_EVENTS,
    ):
        assert re.fullmatch(r"[a-z]+-[a-z]+", name), name


# ------------------------------------------------------------------------------------------ namespaces
def test_namespace_prefixes_every_subject_stream_and_bucket() -> None:
    plain, spaced = Subjects(""), Subjects("t0123456789")
    for a, b in zip(all_subjects(plain, "x1", "k"), all_subjects(spaced, "x1", "k"), strict=True):
        assert b == f"t0123456789.{a}"
    for a, b in zip(all_filters(plain, "x1"), all_filters(spaced, "x1"), strict=True):
        assert b == f"t0123456789.{a}"
    assert spaced.tasks_stream == "T0123456789_AX_TASKS"
    assert spaced.events_stream == "T0123456789_AX_EVENTS"
    assert spaced.commands_stream == "T0123456789_AX_COMMANDS"
    assert spaced.dlq_stream == "T0123456789_AX_DLQ"
    assert spaced.agents_bucket == "t0123456789-ax-agents"


def test_namespaces_keep_streams_and_subjects_apart() -> None:
    a, b = Subjects("ta"), Subjects("tb")
    assert set(all_subjects(a, "x", "k")).isdisjoint(all_subjects(b, "x", "k"))
    assert {a.tasks_stream, a.events_stream, a.agents_bucket}.isdisjoint({b.tasks_stream, b.events_stream})
    assert a.agents_bucket != b.agents_bucket


def test_stream_name_with_dashed_namespace_is_a_valid_stream_name() -> None:
    assert Subjects("t-1").events_stream == "T_1_AX_EVENTS"


@pytest.mark.parametrize("namespace", ["a.b", "A", "a b", "*", ">", "ns.>"])
def test_settings_reject_a_namespace_that_is_not_one_token(namespace: str) -> None:
    with pytest.raises(ValidationError, match="namespace"):
        Settings(namespace=namespace)


# ------------------------------------------------------------------------------------------ unsafe ids
@pytest.mark.parametrize("bad", UNSAFE)
def test_builders_reject_unsafe_ids(bad: str) -> None:
    s = Subjects("")
    builders: list[Callable[[], str]] = [
        lambda: s.direct(bad),
        lambda: s.event(bad, "kind"),
        lambda: s.events_of(bad),
        lambda: s.command(bad),
        lambda: Subjects.direct_consumer(bad),
    ]
    for build in builders:
        with pytest.raises(ValueError, match="id"):
            build()


@pytest.mark.parametrize("bad", [*UNSAFE, "Upper", "x" * 65])
def test_builders_reject_unsafe_tokens(bad: str) -> None:
    s = Subjects("")
    builders: list[Callable[[], str]] = [
        lambda: s.task(bad),
        lambda: s.event("e1", bad),
        lambda: s.dlq(bad),
        lambda: Subjects.capability_consumer(bad),
    ]
    for build in builders:
        with pytest.raises(ValueError, match="must be"):
            build()


def test_error_names_what_was_wrong() -> None:
    with pytest.raises(ValueError, match=r"agent id 'a\.b'"):
        Subjects("").direct("a.b")
    with pytest.raises(ValueError, match=r"capability 'Web'"):
        Subjects("").task("Web")


@pytest.mark.parametrize("check", [check_id, check_token])
def test_trailing_newline_is_rejected(check: Callable[[str], str]) -> None:
    with pytest.raises(ValueError, match="must be"):
        check("abc\n")


# ------------------------------------------------------------------------------------------ properties
# Trailing "\n" is left out of the alphabet: it is the known bug pinned by test_trailing_newline_is_rejected.
ANY_TEXT = st.text(alphabet=st.sampled_from([*ID_CHARS, ".", " ", "*", ">", "$", "\t", "é", "\x00"]), max_size=140)


@given(ANY_TEXT)
def test_check_id_accepts_exactly_safe_ids(value: str) -> None:
    safe = 1 <= len(value) <= 128 and all(c in ID_CHARS for c in value)
    if safe:
        assert check_id(value) == value
    else:
        with pytest.raises(ValueError, match="must be"):
            check_id(value)


@given(ANY_TEXT)
def test_check_token_accepts_exactly_lower_case_tokens(value: str) -> None:
    safe = 1 <= len(value) <= 64 and all(c in TOKEN_CHARS for c in value)
    if safe:
        assert check_token(value) == value
    else:
        with pytest.raises(ValueError, match="must be"):
            check_token(value)


@given(namespaces, ids, tokens)
def test_every_built_subject_follows_the_grammar(namespace: str, ident: str, token: str) -> None:
    s = Subjects(namespace)
    for subject in all_subjects(s, ident, token) + all_filters(s, ident):
        assert_grammar(subject)
    # a concrete subject never contains a wildcard, so a publish can never fan out by accident
    for subject in all_subjects(s, ident, token):
        assert "*" not in subject.split(".")
        assert ">" not in subject.split(".")


@given(namespaces, ids)
def test_an_id_is_exactly_one_token(namespace: str, ident: str) -> None:
    s = Subjects(namespace)
    offset = 1 if namespace else 0
    assert s.command(ident).split(".")[2 + offset] == ident
    assert len(s.event(ident, "k").split(".")) == 4 + offset


def test_subject_length_with_longest_ids() -> None:
    s = Subjects("n" * MAX_NAMESPACE)
    subject = s.event("i" * 128, "k" * 64)
    assert len(subject) < 256
    assert_grammar(subject)


# ------------------------------------------------------------------------------------------ ids in messages
@pytest.mark.parametrize("bad", [*UNSAFE, "abc\n"])
def test_a_message_refuses_an_unsafe_id_naming_the_field(bad: str) -> None:
    body = {"type": "task_state", "execution_id": "e1", "task_id": bad, "status": "READY"}
    with pytest.raises(ValidationError) as refused:
        decode_event(json.dumps(body).encode())
    [error] = refused.value.errors()
    assert error["loc"] == ("task_state", "task_id")
    assert error["msg"] == ID_RULE
    with pytest.raises(ValidationError, match=r"(?s)task_id\n.*must be 1-128 characters"):
        TaskState(execution_id="e1", task_id=bad, status=TaskStatus.READY)


def test_a_pinned_agent_id_is_checked_under_its_key() -> None:
    with pytest.raises(ValidationError) as refused:
        StartExecution(execution_id="e1", plan_ref=PlanRef(plan_id="p", sha256="0" * 64, size=1), pins={"t1": "a b"})
    [error] = refused.value.errors()
    assert (error["loc"], error["msg"]) == (("pins", "t1"), ID_RULE)


@given(ANY_TEXT)
def test_messages_accept_exactly_the_ids_check_id_accepts(value: str) -> None:
    try:
        expected: str | None = check_id(value)
    except ValueError:
        expected = None
    body = {"type": "subtask_started", "execution_id": value, "task_id": "t", "subtask_id": "s", "agent_id": "a"}
    try:
        got: str | None = decode_event(json.dumps(body).encode()).execution_id
    except ValidationError:
        got = None
    assert got == expected
