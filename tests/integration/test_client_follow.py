"""Following an execution survives a nats-server restart: no event missed, none seen twice."""

import asyncio
from pathlib import Path

import pytest

from planexe_ax.bus import Bus, EmbeddedNats, Event, ExecutionState, ExecutionStatus, TaskState, TaskStatus, connect
from planexe_ax.bus.client import follow
from planexe_ax.bus.messages import SubtaskProgress, SubtaskStarted
from planexe_ax.config import Settings
from tests.helpers.acli import acli
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats


async def test_follow_goes_on_after_the_server_restarts(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    settings = Settings(namespace="follow", data_dir=tmp_path / "data", nats_auth_dir=server.auth_dir)
    bus = await connect(settings, server.url, "follow-test", role="admin")
    try:
        seen: list[str] = []
        first = asyncio.Event()

        def on_event(event: Event) -> None:
            seen.append(event.event_id)
            first.set()

        await bus.publish_event(TaskState(execution_id="x1", task_id="a", status=TaskStatus.RUNNING, event_id="e1"))
        following = asyncio.create_task(follow(bus, "x1", on_event, timeout_s=60))
        await asyncio.wait_for(first.wait(), 10)

        server.kill()
        restarted = EmbeddedNats(tmp_path / "nats", port=server.port)
        await restarted.start()

        async def reconnected() -> bool:
            return bus.reconnected_at is not None

        await eventually(reconnected, timeout=20)
        await bus.publish_event(TaskState(execution_id="x1", task_id="a", status=TaskStatus.COMPLETED, event_id="e2"))
        await bus.publish_event(ExecutionState(execution_id="x1", status=ExecutionStatus.COMPLETED, event_id="e3"))
        outcome = await asyncio.wait_for(following, 30)
        assert outcome.status == ExecutionStatus.COMPLETED
        assert seen == ["e1", "e2", "e3"]
    finally:
        await bus.close()
        await restarted.stop()


async def test_follow_skips_and_counts_messages_that_are_not_events(bus: Bus) -> None:
    """A message without `type` on the execution's subjects is skipped and counted, not a crash."""
    await publish_junk(bus, "x2")
    await bus.publish_event(ExecutionState(execution_id="x2", status=ExecutionStatus.COMPLETED, event_id="e9"))
    outcome = await follow(bus, "x2", timeout_s=10)
    assert outcome.status == ExecutionStatus.COMPLETED
    assert outcome.skipped == 2


async def test_exec_wait_skips_messages_that_are_not_events(bus: Bus, settings: Settings, nats_url: str) -> None:
    await publish_junk(bus, "x3")
    await bus.publish_event(ExecutionState(execution_id="x3", status=ExecutionStatus.CANCELLED, event_id="e10"))
    env = {"PLANEXE_NATS_URL": nats_url, "PLANEXE_NAMESPACE": settings.namespace,
           "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
           "PLANEXE_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    waited = await acli(["exec", "wait", "x3", "--timeout", "20"], env)
    assert "Traceback" not in waited.stderr
    assert waited.returncode == 1, waited.stderr  # CANCELLED, as the stream says
    assert "skipped 2 message(s)" in waited.stderr


async def publish_junk(bus: Bus, execution_id: str) -> None:
    """Two messages on the execution's subjects that are not events: no `type`, and not JSON at all."""
    subject = bus.subjects.event(execution_id, "junk")
    await bus.js.publish(subject, b'{"execution_id": "' + execution_id.encode() + b'"}')
    await bus.js.publish(subject, b"\xff not json")


async def test_follow_reads_only_the_kinds_asked_for_and_the_end(bus: Bus) -> None:
    """With ``kinds`` the server filters: other decisions and reports are never delivered; the end always is."""
    await bus.publish_event(TaskState(execution_id="x4", task_id="a", status=TaskStatus.RUNNING, event_id="e11"))
    started = SubtaskStarted(execution_id="x4", task_id="a", subtask_id="a1", attempt=1, agent_id="ag", event_id="e12")
    await bus.publish_event(started)
    await bus.publish_event(SubtaskProgress(execution_id="x4", task_id="a", subtask_id="a1", attempt=1,
                                            agent_id="ag", percent=50, event_id="e13"))  # fmt: skip
    await bus.publish_event(ExecutionState(execution_id="x4", status=ExecutionStatus.COMPLETED, event_id="e14"))
    seen: list[str] = []
    outcome = await follow(
        bus, "x4", lambda event: seen.append(event.event_id), timeout_s=10, kinds=["subtask_started"]
    )
    assert outcome.status == ExecutionStatus.COMPLETED
    assert seen == ["e12", "e14"]
    seen.clear()
    await follow(bus, "x4", lambda event: seen.append(event.event_id), timeout_s=10, kinds=["task_state"])
    assert seen == ["e11", "e14"]
