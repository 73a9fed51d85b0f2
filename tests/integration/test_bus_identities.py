"""The server enforces who may do what: anonymous clients, agents and services outside their rights are refused."""

from __future__ import annotations

from pathlib import Path

import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError, NotFoundError
from pydantic import BaseModel

from planexe_ax.agents import AgentRuntime
from planexe_ax.bus import (
    AgentCard,
    AuditCheckpoint,
    Bus,
    CancelExecution,
    ExecutionCreated,
    Identities,
    Subjects,
    SubtaskProgress,
    SubtaskResult,
    SubtaskState,
    TaskStatus,
    WebhookDisabled,
    connect,
    utcnow,
)
from planexe_ax.bus.plan_store import store_plan
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError
from tests.helpers.agents import agent, offer, pending_offers
from tests.helpers.factories import make_plan
from tests.helpers.identities import agent_creds, anonymous, client

pytestmark = pytest.mark.nats

EXECUTION = "x1"


async def test_a_client_without_credentials_is_refused(nats_url: str, settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await anonymous(nats_url)
    nobody = settings.model_copy(update={"nats_auth_dir": tmp_path / "no-identities"})
    with pytest.raises(ConfigError, match="refused a client without credentials"):
        await connect(nobody, nats_url, "nobody", role=None)


def forgeries(bus: Bus) -> dict[str, tuple[str, BaseModel]]:
    """What an agent might try beyond its rights: subject and body of each attempt."""
    s, now = bus.subjects, utcnow()
    state = SubtaskState(execution_id=EXECUTION, task_id="t1", subtask_id="s1", status=TaskStatus.COMPLETED)
    plan = make_plan(["t1"])
    created = ExecutionCreated(execution_id=EXECUTION, plan=plan)
    result = SubtaskResult(execution_id=EXECUTION, task_id="t1", subtask_id="s1", agent_id="agent-b", ok=True)
    card = AgentCard(agent_id="agent-b", name="forged", capabilities=[], started_at=now, heartbeat_at=now)
    checkpoint = AuditCheckpoint(execution_id=EXECUTION, up_to_seq=1, count=1, head_hash="00" * 32)
    return {
        "decision": (s.event(EXECUTION, "subtask_state"), state),
        "execution_created": (s.event(EXECUTION, "execution_created"), created),
        "command": (s.command(EXECUTION), CancelExecution(execution_id=EXECUTION, reason="forged")),
        "report of another agent": (s.report(EXECUTION, "subtask_result", "agent-b"), result),
        "card of another agent": (s.agent_card("agent-b"), card),
        "plan catalog entry": (f"$KV.{s.plans_bucket}.p1", plan),
        "plan object": (f"$O.{s.plan_objects_bucket}.C.forged", plan),
        "audit checkpoint": (s.event(EXECUTION, "audit_checkpoint"), checkpoint),
    }


async def nothing_stored(bus: Bus, subject: str) -> bool:
    s = bus.subjects
    stream = s.commands_stream if subject == s.command(EXECUTION) else s.events_stream
    if subject.startswith("$O."):
        stream = s.plan_objects_stream
    if subject.startswith("$KV."):
        bucket = await (bus.plans_kv() if s.plans_bucket in subject else bus.agents_kv())
        with pytest.raises(KeyNotFoundError):
            await bucket.get(subject.rsplit(".", 1)[1])
        return True
    with pytest.raises(NotFoundError):
        await bus.js.get_last_msg(stream, subject)
    return True


@pytest.mark.parametrize(
    "attempt",
    [
        "decision",
        "execution_created",
        "command",
        "report of another agent",
        "card of another agent",
        "plan catalog entry",
        "plan object",
        "audit checkpoint",
    ],
)
async def test_an_agent_is_refused_beyond_its_rights(
    attempt: str, bus: Bus, nats_url: str, nats_auth: Path, tmp_path: Path
) -> None:
    subject, body = forgeries(bus)[attempt]
    creds = agent_creds(nats_auth, bus.subjects, "agent-a", ["echo"], tmp_path)
    async with client(nats_url, creds) as agent:
        with pytest.raises(nats.errors.TimeoutError):  # the server drops it: no stream ever acks
            await agent.nc.jetstream().publish(subject, body.model_dump_json().encode(), timeout=1)
        await agent.refused(subject)
    assert await nothing_stored(bus, subject)


async def test_an_agent_may_not_read_the_buckets_that_allow_direct_gets(
    bus: Bus, nats_url: str, nats_auth: Path, tmp_path: Path
) -> None:
    """ax-agents and ax-leases answer batched direct gets (the coordinator's and projector's reads): not to agents."""
    creds = agent_creds(nats_auth, bus.subjects, "agent-a", ["echo"], tmp_path)
    async with client(nats_url, creds) as agent:
        for bucket in (bus.subjects.agents_bucket, bus.subjects.leases_bucket):
            subject = f"$JS.API.DIRECT.GET.KV_{bucket}"
            await agent.nc.publish(subject, b'{"seq": 1, "batch": 10}', reply=agent.nc.new_inbox())
            await agent.refused(subject)


async def test_an_agent_may_not_read_a_stored_plan(bus: Bus, nats_url: str, nats_auth: Path, tmp_path: Path) -> None:
    """Plans are read back through a consumer of the read's own on the object store's stream: not by agents."""
    ref = await store_plan(bus, make_plan(["t1"]))
    info = await (await bus.js.object_store(bus.subjects.plan_objects_bucket)).get_info(ref.sha256)
    stream, chunks = bus.subjects.plan_objects_stream, bus.subjects.plan_object_chunks(info.nuid or "")
    creds = agent_creds(nats_auth, bus.subjects, "agent-a", ["echo"], tmp_path)
    async with client(nats_url, creds) as agent:
        subject = f"$JS.API.CONSUMER.CREATE.{stream}.plan-read-forged.{chunks}"
        await agent.nc.publish(subject, b"{}", reply=agent.nc.new_inbox())
        await agent.refused(subject)
    assert await bus.js.consumers_info(stream) == []
    for role in ("coordinator", "projector"):  # the services that load plans may
        async with client(nats_url, Identities.load(nats_auth).role_creds(role, bus.subjects)) as service:
            config = ConsumerConfig(name=f"plan-read-{role}", filter_subject=chunks, ack_policy=AckPolicy.NONE)
            made = await service.nc.jetstream().add_consumer(stream, config)
            assert made.name == f"plan-read-{role}"
            await service.nc.jetstream().delete_consumer(stream, made.name)


async def test_an_agent_may_report_as_itself_and_keep_its_own_card(
    bus: Bus, nats_url: str, nats_auth: Path, tmp_path: Path
) -> None:
    creds = agent_creds(nats_auth, bus.subjects, "agent-a", ["echo"], tmp_path)
    report = SubtaskProgress(execution_id=EXECUTION, task_id="t1", subtask_id="s1", agent_id="agent-a", percent=5)
    now = utcnow()
    card = AgentCard(agent_id="agent-a", name="A", capabilities=[], started_at=now, heartbeat_at=now)
    async with client(nats_url, creds) as agent:
        js = agent.nc.jetstream()
        ack = await js.publish(
            bus.subjects.report(EXECUTION, "subtask_progress", "agent-a"), report.model_dump_json().encode()
        )
        await js.publish(bus.subjects.agent_card("agent-a"), card.model_dump_json().encode())
        assert agent.errors == []
    stored = await bus.js.get_msg(bus.subjects.events_stream, ack.seq)
    assert SubtaskProgress.model_validate_json(stored.data or b"") == report
    assert (await (await bus.agents_kv()).get("agent-a")).value == card.model_dump_json().encode()


async def test_an_agent_pulls_only_from_its_own_consumers(
    bus: Bus, nats_url: str, nats_auth: Path, tmp_path: Path
) -> None:
    creds = agent_creds(nats_auth, bus.subjects, "agent-a", ["echo"], tmp_path)
    tasks = bus.subjects.tasks_stream
    async with client(nats_url, creds) as agent:
        for consumer in ("agents-other", "agent-agent-b"):
            subject = f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.{consumer}"
            await agent.nc.publish(subject, b'{"batch": 1}', reply=agent.nc.new_inbox())
            await agent.refused(subject)


@pytest.mark.parametrize("forgery", ["execution_created", "audit checkpoint"])
@pytest.mark.parametrize("role", ["projector", "gateway", "operator", "builtin-agents", "notifier", "webhooks"])
async def test_only_the_coordinator_publishes_decisions(
    role: str, forgery: str, bus: Bus, nats_url: str, nats_auth: Path, settings: Settings
) -> None:
    subject, body = forgeries(bus)[forgery]
    creds = Identities.load(nats_auth).role_creds(role, bus.subjects)
    async with client(nats_url, creds) as service:
        with pytest.raises(nats.errors.TimeoutError):
            await service.nc.jetstream().publish(subject, body.model_dump_json().encode(), timeout=1)
        await service.refused(subject)
    assert await nothing_stored(bus, subject)


SERVICE_LEASES = {
    "projector": Subjects.projector_lease(Subjects.PROJECTOR_EVENTS),
    "webhooks": Subjects.webhooks_lease(Subjects.WEBHOOK_EVENTS),
}
OTHERS = ("coordinator", "projector", "webhooks", "gateway", "builtin-agents")


@pytest.mark.parametrize(
    ("owner", "role"), [(owner, role) for owner in SERVICE_LEASES for role in OTHERS if role != owner]
)
async def test_only_its_service_touches_a_service_lease(
    owner: str, role: str, bus: Bus, nats_url: str, nats_auth: Path
) -> None:
    leases = f"$KV.{bus.subjects.leases_bucket}"
    theirs = f"{leases}.{SERVICE_LEASES[owner]}"
    identities = Identities.load(nats_auth)
    async with client(nats_url, identities.role_creds(role, bus.subjects)) as other:
        with pytest.raises(nats.errors.TimeoutError):
            await other.nc.jetstream().publish(theirs, b"other", timeout=1)
        await other.refused(theirs)
    async with client(nats_url, identities.role_creds(owner, bus.subjects)) as service:
        await service.nc.jetstream().publish(theirs, owner.encode(), timeout=5)
        await service.nc.publish(f"{leases}.coordinator", owner.encode())  # and not the coordinator's
        await service.refused(f"{leases}.coordinator")
    kv = await bus.js.key_value(bus.subjects.leases_bucket)
    assert (await kv.get(SERVICE_LEASES[owner])).value == owner.encode()


@pytest.mark.parametrize("role", ["projector", "webhooks", "gateway", "operator", "builtin-agents", "notifier"])
async def test_only_a_coordinator_takes_a_partition_fences_it_or_counts_itself_in(
    role: str, bus: Bus, nats_url: str, nats_auth: Path
) -> None:
    leases = f"$KV.{bus.subjects.leases_bucket}"
    subjects = [
        f"{leases}.{Subjects.partition_lease(3)}",
        f"{leases}.{Subjects.coordinator_member('intruder')}",
        bus.subjects.partition_fence(3),
    ]
    identities = Identities.load(nats_auth)
    async with client(nats_url, identities.role_creds(role, bus.subjects)) as other:
        for subject in subjects:
            await other.nc.publish(subject, b"intruder")
            await other.refused(subject)
    kv = await bus.js.key_value(bus.subjects.leases_bucket)
    with pytest.raises(KeyNotFoundError):
        await kv.get(Subjects.partition_lease(3))
    async with client(nats_url, identities.role_creds("coordinator", bus.subjects)) as coordinator:
        for subject in subjects:
            await coordinator.nc.jetstream().publish(subject, b"coordinator", timeout=5)
    assert (await kv.get(Subjects.partition_lease(3))).value == b"coordinator"


@pytest.mark.parametrize("role", ["projector", "builtin-agents", "notifier"])
async def test_a_service_without_the_right_sends_no_command(
    role: str, bus: Bus, nats_url: str, nats_auth: Path
) -> None:
    subject, body = forgeries(bus)["command"]
    async with client(nats_url, Identities.load(nats_auth).role_creds(role, bus.subjects)) as service:
        with pytest.raises(nats.errors.TimeoutError):
            await service.nc.jetstream().publish(subject, body.model_dump_json().encode(), timeout=1)
        await service.refused(subject)
    assert await nothing_stored(bus, subject)


async def test_the_webhooks_service_tells_the_coordinator_of_a_webhook_it_disabled(
    bus: Bus, nats_url: str, nats_auth: Path
) -> None:
    command = WebhookDisabled(execution_id=EXECUTION, webhook_id="wh_1", url="http://x/…", event_id="e1", reason="r")
    async with client(nats_url, Identities.load(nats_auth).role_creds("webhooks", bus.subjects)) as webhooks:
        ack = await webhooks.nc.jetstream().publish(
            bus.subjects.command(EXECUTION), command.model_dump_json().encode(), timeout=5
        )
        assert webhooks.errors == []
    stored = await bus.js.get_msg(bus.subjects.commands_stream, ack.seq)
    assert WebhookDisabled.model_validate_json(stored.data or b"") == command


async def test_an_sdk_agent_works_with_nothing_but_its_own_creds(
    bus: Bus, nats_url: str, nats_auth: Path, settings: Settings, tmp_path: Path
) -> None:
    creds = agent_creds(nats_auth, bus.subjects, "tester-1", ["echo"], tmp_path)
    own = settings.model_copy(update={"nats_creds": creds, "nats_auth_dir": tmp_path / "not-the-account"})
    work = offer("echo", {"text": "ab"})
    await bus.publish_offer(work)
    agent_bus = await connect(own, nats_url, "tester-1", provision=False, role=None)
    try:
        await AgentRuntime(agent_bus, agent()).run_until_idle()
    finally:
        await agent_bus.close()
    stored = await bus.js.get_last_msg(
        bus.subjects.events_stream, bus.subjects.report("e1", "subtask_result", "tester-1")
    )
    result = SubtaskResult.model_validate_json(stored.data or b"")
    assert (result.ok, result.output["text"]) == (True, "ab")
    assert await pending_offers(bus) == 0


async def test_a_projector_acks_nothing_and_may_not(bus: Bus, nats_url: str, nats_auth: Path) -> None:
    """Its durable takes no acks (the checkpoint is its position): an ack, on it or on another consumer, is refused."""
    events, tasks = bus.subjects.events_stream, bus.subjects.tasks_stream
    acks = [f"$JS.ACK.{events}.{Subjects.PROJECTOR_EVENTS}.1.1.1.0.0", f"$JS.ACK.{tasks}.agents-echo.1.1.1.0.0"]
    async with client(nats_url, Identities.load(nats_auth).role_creds("projector", bus.subjects)) as projector:
        for subject in acks:
            await projector.nc.publish(subject, b"+ACK")
            await projector.refused(subject)
