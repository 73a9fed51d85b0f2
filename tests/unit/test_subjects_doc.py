"""Rule N5: the tables in ``subjects.md`` are rendered from code, and this test fails when they are stale.

Run ``PLANEXE_UPDATE_DOCS=1 pytest tests/unit/test_subjects_doc.py`` to rewrite them.

Who publishes and who consumes is not in the code, so it is declared here (``ROLES``, ``USED_BY``); a new
subject template, durable consumer or message type without an entry makes this test fail.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import operator
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from planexe_ax.bus import messages, subjects
from planexe_ax.bus.permissions import ROLES as IDENTITY_ROLES
from planexe_ax.bus.permissions import agent_permissions, role_permissions
from planexe_ax.bus.subjects import Subjects
from planexe_ax.bus.topology import (
    Topology,
    capability_consumer,
    coordinator_events_consumer,
    direct_consumer,
    partition_commands_consumer,
    topology,
)
from planexe_ax.config import Settings

DOC = Path(__file__).resolve().parents[2] / "subjects.md"
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
UPDATE = os.environ.get("PLANEXE_UPDATE_DOCS") == "1"

# Placeholders: real tokens that the builders accept, swapped for <capability> / <agent_id> in the table.
CAPABILITY, AGENT_ID = "zzcapabilityzz", "zzagentidzz"
DLQ_SOURCES = ("coordinator", "projector", "agents")

# template constant in bus/subjects.py -> (published by, consumed by)
ROLES: dict[str, tuple[str, str]] = {
    "TASK": ("coordinator", "agents (SDK), durable `agents-<capability>` shared by every agent of the capability"),
    "DIRECT": ("coordinator (a subtask pinned to one agent)", "that agent, durable `agent-<agent_id>`"),
    "EVENT": (
        "coordinator (decisions: no one else may publish here)",
        "projector (`projector-events`); the coordinator knows its own from the stream's acks and reads them "
        "only when it rebuilds",
    ),
    "REPORT": (
        "agents (reports; each identity only with its own `<agent_id>`), ws_gateway (for HTTP agents)",
        "coordinator (`coordinator-events-<holder>`), projector (`projector-events`)",
    ),
    "COMMAND": (
        "CLI, ws_gateway; webhooks (`webhook_disabled` only, for a webhook it gave up on)",
        "coordinator holding the execution's partition (`coordinator-commands-<partition>`; AX_COMMANDS stores "
        "`ax.cmd.<execution_id>` as `ax.cmd.<partition>.<execution_id>`)",
    ),
    "FENCE": (
        "the coordinator that takes a partition (`ax.fence.coordinator.<partition>`; one marker per term; its "
        "sequence is the epoch)",
        "nobody: the server checks each decision's `Nats-Expected-Last-Subject-Sequence` against it",
    ),
    "DLQ": (
        "any consumer that gives up on a message; sources: " + ", ".join(f"`{s}`" for s in DLQ_SOURCES),
        "operators (no durable consumer)",
    ),
}
HOLDER_CONSUMER = "coordinator-events-<holder>"
PARTITION_CONSUMER = "coordinator-commands-<partition>"
# durable consumer name -> the process that pulls from it
USED_BY: dict[str, str] = {
    HOLDER_CONSUMER: "one coordinator process (removed a day after its last use); created by it",
    PARTITION_CONSUMER: "the coordinator holding the partition; created by the first that holds it",
    Subjects.PROJECTOR_EVENTS: "projector",
    Subjects.WEBHOOK_EVENTS: "webhooks (the delivery service)",
    Subjects.NOTIFIER_INBOX: "notifier (mails the people an inbox item is for)",
    "agents-<capability>": "every agent offering `<capability>`; created by the agent SDK",
    "agent-<agent_id>": "the one agent `<agent_id>`; created by the agent SDK",
}
# message models that are not events or commands -> where they travel
OTHER_MESSAGES: dict[str, str] = {
    "TaskOffer": "`ax.task.<capability>` and `ax.direct.<agent_id>` (AX_TASKS)",
    "AgentCard": "KV `ax-agents`, key = agent id",
    "CapabilityCard": "inside `AgentCard.capabilities`",
    "DeadLetter": "`ax.dlq.<source>` (AX_DLQ)",
    "PlanRef": "inside `start` and `execution_created` (`plan_ref`), for a plan kept in `ax-plan-objects`",
}


# ---------------------------------------------------------------------------------------------- formatting
def placeholders(text: str) -> str:
    return text.replace(CAPABILITY, "<capability>").replace(AGENT_ID, "<agent_id>")


def duration(seconds: float | None, zero: str = "unlimited") -> str:
    if not seconds:
        return zero
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def size(count: int | None) -> str:
    if not count or count < 0:
        return "unlimited"
    for unit, step in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count % step == 0:
            return f"{count // step} {unit}"
    return f"{count} B"


def enum_value(value: Any) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines, ""]


def without_metadata(annotation: Any) -> Any:
    """``annotation`` with every ``Annotated[T, ...]`` in it replaced by ``T`` (an id checked by pattern is a str)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return without_metadata(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    plain = tuple(without_metadata(arg) for arg in args)
    if plain == args:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, plain)
    return typing.get_origin(annotation)[plain]


def type_name(annotation: Any) -> str:
    annotation = without_metadata(annotation)
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    return re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Za-z_]\w*)", r"\1", text)


def default_of(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        factory: Callable[..., Any] = info.default_factory
        if factory in (dict, list):
            return json.dumps(factory())
        return f"{getattr(factory, '__name__', 'factory')}()"
    value = info.default
    return json.dumps(value.value if isinstance(value, enum.Enum) else value)


def constraints(info: FieldInfo) -> str:
    parts = [
        f"{key}={getattr(meta, key)}"
        for meta in info.metadata
        for key in ("ge", "gt", "le", "lt")
        if getattr(meta, key, None) is not None
    ]
    return f" ({', '.join(parts)})" if parts else ""


def field_line(name: str, info: FieldInfo) -> str:
    default = default_of(info)
    tail = "" if default == "required" else f" = {default}"
    return f"`{name}: {type_name(info.annotation)}{tail}`{constraints(info)}"


def field_rows(model: type[BaseModel], skip: Iterable[str] = ()) -> list[list[str]]:
    return [
        [f"`{name}`", f"`{type_name(info.annotation)}`", default_of(info) + constraints(info), info.description or ""]
        for name, info in model.model_fields.items()
        if name not in set(skip)
    ]


def own_fields(model: type[BaseModel], base: type[BaseModel]) -> str:
    lines = [field_line(n, i) for n, i in model.model_fields.items() if n not in base.model_fields and n != "type"]
    return "<br>".join(lines) or "(none)"


def union_members(union: Any) -> list[type[BaseModel]]:
    inner = typing.get_args(union)[0]  # Annotated[A | B | ..., Field(discriminator=...)]
    return list(typing.get_args(inner))


def type_of(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


# ---------------------------------------------------------------------------------------------- sections
def templates() -> dict[str, str]:
    """Every module-level subject template of bus/subjects.py, by constant name."""
    return {
        name: value
        for name, value in vars(subjects).items()
        if name.isupper() and isinstance(value, str) and value.startswith("ax.")
    }


def stream_of(template: str, streams: Iterable[StreamConfig]) -> str:
    wildcard = template.split("{", 1)[0] + ">"
    owners = [s.name or "" for s in streams if wildcard in (s.subjects or [])]
    assert len(owners) == 1, f"{template} must be captured by exactly one stream, found {owners}"
    return owners[0]


def render_subjects(streams: tuple[StreamConfig, ...]) -> list[str]:
    missing = set(templates()) - set(ROLES)
    assert not missing, f"add publishers and consumers of {missing} to ROLES in {__file__}"
    rows = [
        [f"`{template}`", f"`{name}`", stream_of(template, streams), *ROLES[name]]
        for name, template in templates().items()
    ]
    return ["### Subjects", "", *table(["Subject", "Constant", "Stream", "Published by", "Consumed by"], rows)]


def render_streams(streams: tuple[StreamConfig, ...]) -> list[str]:
    rows = [
        [
            f"`{s.name}`",
            ", ".join(f"`{subject}`" for subject in s.subjects or []),
            enum_value(s.retention),
            enum_value(s.storage),
            duration(s.max_age),
            duration(s.duplicate_window, zero="server default (2 min)"),
            size(s.max_msg_size),
            f"{size(s.max_bytes)}, then {enum_value(s.discard or 'old')}",
            s.description or "",
        ]
        for s in streams
    ]
    header = ["Stream", "Subjects", "Retention", "Storage", "Max age", "Duplicate window", "Max message", "Max bytes",
              "Holds"]  # fmt: skip
    return ["### Streams", "", *table(header, rows)]


def all_consumers(topo: Topology, settings: Settings) -> list[tuple[str, ConsumerConfig]]:
    s = Subjects("")
    return [
        *topo.consumers,
        (s.tasks_stream, capability_consumer(s, CAPABILITY, settings)),
        (s.tasks_stream, direct_consumer(s, AGENT_ID, settings)),
        (s.events_stream, replace(coordinator_events_consumer(s, "HOLDER", settings), durable_name=HOLDER_CONSUMER)),
        (s.commands_stream, replace(partition_commands_consumer(s, 0, settings), durable_name=PARTITION_CONSUMER,
                                    filter_subject="ax.cmd.<partition>.*")),
    ]  # fmt: skip


def render_consumers(topo: Topology, settings: Settings) -> list[str]:
    rows = []
    for stream, c in all_consumers(topo, settings):
        name = placeholders(c.durable_name or "")
        assert name in USED_BY, f"say which process uses durable {name!r} in USED_BY in {__file__}"
        rows.append(
            [
                f"`{name}`",
                stream,
                f"`{placeholders(c.filter_subject or '')}`",
                enum_value(c.ack_policy),
                enum_value(c.deliver_policy),
                "(no acks)" if c.ack_policy == AckPolicy.NONE else duration(c.ack_wait),
                "unlimited" if c.max_deliver in (None, -1) else str(c.max_deliver),
                USED_BY[name],
            ]
        )
    header = ["Durable", "Stream", "Filter", "Ack", "Deliver", "Ack wait", "Max deliver", "Used by"]
    return ["### Durable consumers (pull)", "", *table(header, rows)]


BUCKET_ROLES: dict[str, tuple[str, str]] = {
    "ax-leases": (
        "coordinators: `create` to take key `coordinator.partition.<n>`, `update(last=revision)` to renew it, "
        "`put` of `coordinator.member.<holder>` to be counted in the share; projectors "
        "likewise key `projector.<durable>` (one writer per read model), webhook delivery services key "
        "`webhooks.<durable>` (one sender per durable)",
        "coordinators (which partitions are free, how many coordinators run: one batched direct get per balance), "
        "projectors and webhook delivery services standing by (they try `create` until the holder's entry expires)",
    ),
    "ax-agents": (
        "agents (SDK): their `AgentCard`, rewritten every heartbeat; ws_gateway for HTTP agents",
        "coordinator (online agents: batched direct gets every 0.25 s), "
        "projector (the agents view: the same reads, one transaction each)",
    ),
    "ax-plans": (
        "ws_gateway: `POST /api/plans`, `POST /api/plans/import`, `DELETE /api/plans/{id}` (a delete marker)",
        "projector (the plan catalog; checkpoint `plans-kv` is the last revision applied)",
    ),
    "ax-http-leases": (
        "ws_gateway only: `lease.<execution_id>.<subtask_id>.<attempt>` (offer, agent, ack subject, report secret), "
        "`seen.<agent_id>`, `gateway.<gateway_id>`; changes are compare-and-set on the revision",
        "ws_gateway (every gateway watches it: any gateway serves any HTTP agent); agents may not read it",
    ),
}


def render_bucket(topo: Topology) -> list[str]:
    rows = []
    for b in topo.buckets:
        written, read = BUCKET_ROLES[b.bucket]
        rows.append(
            [
                f"`{b.bucket}`",
                str(b.history),
                duration(b.ttl) if b.ttl else "none",
                enum_value(b.storage),
                written,
                read,
                b.description or "",
            ]
        )
    header = ["Bucket", "History", "TTL", "Storage", "Written by", "Read by", "Holds"]
    return ["### KV buckets", "", *table(header, rows)]


def render_object_stores(topo: Topology) -> list[str]:
    b = topo.plan_objects
    row = [
        f"`{b.bucket}`",
        duration(b.ttl) if b.ttl else "none",
        enum_value(b.storage),
        "the CLI (`exec start`) and ws_gateway (`POST /api/executions`), when a start's plan is over "
        "`PLANEXE_PLAN_INLINE_BYTES`: object name = the plan's SHA-256",
        "coordinator (a start, a rebuild), projector (the read model keeps the plan with the event), notifier, audit; "
        "each checks the SHA-256 that `plan_ref` carries",
        b.description or "",
    ]
    header = ["Bucket", "TTL", "Storage", "Written by", "Read by", "Holds"]
    return ["### Object store buckets", "", *table(header, [row])]


def render_events() -> list[str]:
    events = union_members(messages.Event)
    rows = [
        [
            f"`{type_of(m)}`",
            m.__name__,
            "agents" if type_of(m) in messages.AGENT_REPORTS else "coordinator",
            own_fields(m, messages.EventBase),
        ]
        for m in events
    ]
    return [
        "### Events on `ax.evt.<execution_id>.<type>` (reports: `ax.evt.<execution_id>.<type>.<agent_id>`)",
        "",
        "Fields every event carries (`EventBase`):",
        "",
        *table(["Field", "Type", "Default", "Meaning"], field_rows(messages.EventBase)),
        *table(["Type", "Model", "Published by", "Fields of its own"], rows),
    ]


def render_commands() -> list[str]:
    rows = [
        [f"`{type_of(m)}`", m.__name__, own_fields(m, messages.CommandBase)] for m in union_members(messages.Command)
    ]
    return [
        "### Commands on `ax.cmd.<execution_id>`",
        "",
        "Fields every command carries (`CommandBase`):",
        "",
        *table(["Field", "Type", "Default", "Meaning"], field_rows(messages.CommandBase)),
        *table(["Type", "Model", "Fields of its own"], rows),
    ]


def render_other_messages() -> list[str]:
    rows = []
    for name, where in OTHER_MESSAGES.items():
        model: type[BaseModel] = getattr(messages, name)
        fields = "<br>".join(field_line(n, i) for n, i in model.model_fields.items())
        rows.append([name, where, fields])
    return ["### Other messages", "", *table(["Model", "Where", "Fields"], rows)]


def render_permissions() -> list[str]:
    s = Subjects("")
    identities = [(role, role_permissions(role, s)) for role in IDENTITY_ROLES]
    identities.append(("agent `<agent_id>`", agent_permissions(s, AGENT_ID, [CAPABILITY])))
    rows = [
        [
            name,
            "<br>".join(f"`{placeholders(p)}`" for p in perms.publish),
            "<br>".join(f"`{placeholders(p)}`" for p in perms.subscribe),
        ]
        for name, perms in identities
    ]
    return [
        "### Identities and their permissions",
        "",
        "The only subjects each identity's user JWT allows (`planexe_ax.bus.permissions`); the server refuses",
        "the rest. An agent's row is for one capability; it has the four consumer lines for each of its own.",
        "",
        *table(["Identity", "May publish to", "May subscribe to"], rows),
    ]


def render(settings: Settings) -> str:
    topo = topology(Subjects(""), settings)
    lines = [
        "<!-- Rendered by tests/unit/test_subjects_doc.py from planexe_ax.bus with default settings;",
        "     do not edit by hand: run `PLANEXE_UPDATE_DOCS=1 pytest tests/unit/test_subjects_doc.py`. -->",
        "",
        *render_subjects(topo.streams),
        *render_streams(topo.streams),
        *render_consumers(topo, settings),
        *render_bucket(topo),
        *render_object_stores(topo),
        *render_events(),
        *render_commands(),
        *render_other_messages(),
        *render_permissions(),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------- tests
@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as shipped: the table must not change with the environment of whoever runs the test."""
    for key in list(os.environ):
        if key.startswith("PLANEXE_"):
            monkeypatch.delenv(key)
    return Settings()


def split_doc(text: str) -> tuple[str, str, str]:
    assert text.count(BEGIN) == 1, f"{DOC.name} needs exactly one {BEGIN}"
    assert text.count(END) == 1, f"{DOC.name} needs exactly one {END}"
    head, rest = text.split(BEGIN)
    body, tail = rest.split(END)
    return head, body, tail


def test_subjects_md_table_is_current(default_settings: Settings) -> None:
    text = DOC.read_text(encoding="utf-8")
    head, body, tail = split_doc(text)
    wanted = "\n" + render(default_settings)
    if UPDATE and body != wanted:
        DOC.write_text(head + BEGIN + wanted + END + tail, encoding="utf-8")
        body = split_doc(DOC.read_text(encoding="utf-8"))[1]
    diff = "".join(
        difflib.unified_diff(
            body.splitlines(keepends=True), wanted.splitlines(keepends=True), "subjects.md", "generated"
        )
    )
    assert body == wanted, f"subjects.md is stale; run PLANEXE_UPDATE_DOCS=1 pytest {__file__}\n{diff}"


def test_every_template_lands_in_exactly_one_stream(default_settings: Settings) -> None:
    streams = topology(Subjects(""), default_settings).streams
    assert {name: stream_of(t, streams) for name, t in templates().items()} == {
        "TASK": "AX_TASKS",
        "DIRECT": "AX_TASKS",
        "EVENT": "AX_EVENTS",
        "REPORT": "AX_EVENTS",
        "COMMAND": "AX_COMMANDS",
        "DLQ": "AX_DLQ",
        "FENCE": "AX_EVENTS",
    }


def test_dlq_sources_are_valid_tokens() -> None:
    for source in DLQ_SOURCES:
        assert Subjects("").dlq(source) == f"ax.dlq.{source}"


def test_render_names_every_message_type(default_settings: Settings) -> None:
    rendered = render(default_settings)
    for model in union_members(messages.Event) + union_members(messages.Command):
        assert f"`{type_of(model)}`" in rendered
    for durable in USED_BY:
        assert f"`{durable}`" in rendered
    assert "`agents-<capability>`" in rendered
    assert CAPABILITY not in rendered
    assert AGENT_ID not in rendered


def test_render_follows_settings(default_settings: Settings) -> None:
    """The table is generated, not copied: change a setting and the text changes."""
    changed = default_settings.model_copy(update={"agent_ttl_s": 42.0})
    assert "| 42 s |" in render(changed)
    assert "| 42 s |" not in render(default_settings)
