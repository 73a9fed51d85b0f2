"""Limits: streams get their sizes from the settings; a plan too large is refused clearly, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.bus import Bus, CancelExecution, ExecutionStatus, connect
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.bus.errors import BusError
from planexe_ax.config import Settings
from planexe_ax.readmodel.projection import PLANS_CHECKPOINT
from tests.helpers.acli import acli
from tests.helpers.agents import dead_letters
from tests.helpers.eventually import eventually
from tests.helpers.factories import echo_plan
from tests.helpers.gateway import Stack, example_document, running_stack
from tests.helpers.inprocess import coordinator

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

LIMIT = 256 * 1024


def padded(plan_id: str, size: int) -> dict[str, Any]:
    """The example plan, padded to about ``size`` bytes of JSON with a long task description."""
    document = example_document()
    document["plan_id"] = plan_id
    document["phases"][0]["tasks"][0]["description"] = "x" * (size - len(json.dumps(document)))
    return document


@pytest.fixture
async def stack(settings: Settings, nats_url: str, postgres_url: str) -> AsyncIterator[Stack]:
    limited = settings.model_copy(update={"max_message_bytes": LIMIT})
    async with running_stack(limited, nats_url, postgres_url) as running:
        yield running


async def test_streams_take_their_limits_from_the_settings(nats_url: str, settings: Settings) -> None:
    limited = settings.model_copy(update={"max_message_bytes": LIMIT, "events_max_bytes": 3 * 1024 * 1024})
    bus = await connect(limited, nats_url, "limits", role="admin")
    try:
        subjects = bus.subjects
        for stream in (subjects.tasks_stream, subjects.events_stream, subjects.commands_stream, subjects.dlq_stream):
            config = (await bus.js.stream_info(stream)).config
            assert config.max_msg_size == LIMIT, stream
            expected = 3 * 1024 * 1024 if stream == subjects.events_stream else limited.stream_max_bytes
            assert config.max_bytes == expected, stream
        assert (await bus.js.stream_info(subjects.tasks_stream)).config.discard == "new"
    finally:
        await bus.close()


async def test_a_plan_too_large_for_the_catalog_gets_413_and_one_too_large_for_a_start_travels_by_reference(
    stack: Stack,
) -> None:
    huge = await stack.client.post("/api/plans", json=padded("huge", 1_100_000))
    assert huge.status_code == 413, huge.text
    detail = huge.json()["detail"]
    assert "plan huge is" in detail
    assert f"at most {LIMIT - 16 * 1024} bytes" in detail
    assert "PLANEXE_MAX_MESSAGE_BYTES" in detail

    # A plan that the catalog holds (put there by an older version, or by hand) but no message can carry
    # with a start's envelope: the start puts it in the plan object store and refers to it.
    bus: Bus = stack.gateway.bus
    document = json.dumps(padded("tight", LIMIT - 8 * 1024)).encode()
    revision = await (await bus.plans_kv()).put("tight", document)
    await stack.gateway.wait_projected(revision, PLANS_CHECKPOINT)
    started = await stack.client.post("/api/executions", json={"plan_id": "tight"})
    assert started.status_code == 201, started.text
    assert started.json()["plan_id"] == "tight"
    start = json.loads((await bus.js.get_last_msg(bus.subjects.commands_stream, bus.subjects.all_commands)).data or b"")
    assert start["plan"] is None
    assert start["plan_ref"]["plan_id"] == "tight"
    fine = await stack.client.post("/api/plans", json=padded("fine", LIMIT // 2))
    assert fine.status_code == 201, fine.text


async def test_exec_start_of_a_plan_too_large_to_start_is_one_line(
    nats_url: str, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(padded("huge", 200_000)))
    env = {"PLANEXE_NATS_URL": nats_url, "PLANEXE_NAMESPACE": settings.namespace,
           "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir), "PLANEXE_MAX_PLAN_BYTES": str(128 * 1024),
           "PLANEXE_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    started = await acli(["exec", "start", str(path)], env)
    assert started.returncode == 2, started.stderr
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert lines[0].startswith("planexe-ax: plan huge is ")
    assert "PLANEXE_MAX_PLAN_BYTES" in lines[0]


async def fits(bus: Bus, subject: str, data: bytes) -> bool:
    """Publish ``data``; False when the stream is full."""
    try:
        await bus.js.publish(subject, data)
    except BusError as exc:
        if "maximum bytes exceeded" not in str(exc):
            raise
        return False
    return True


async def test_a_full_work_queue_dead_letters_the_offer_and_the_coordinator_goes_on(
    nats_url: str, settings: Settings
) -> None:
    """AX_TASKS refuses new offers when full; the coordinator dead-letters the offer instead of waiting for ever."""
    limited = settings.model_copy(update={"max_message_bytes": 64 * 1024, "stream_max_bytes": 1024 * 1024})
    bus = await connect(limited, nats_url, "limits", role="admin")
    try:
        nobody = bus.subjects.task("nobody_offers_this")
        for size in (60_000, 100):  # fill it to the last few bytes
            while await fits(bus, nobody, b"x" * size):
                pass
        async with coordinator(limited, nats_url) as service:
            execution_id = await start_execution(bus, echo_plan())
            letters = await eventually(lambda: dead_letters(bus), timeout=20)
            assert letters[0].reason.startswith(f"cannot publish offer {execution_id}:")
            assert "maximum bytes exceeded" in letters[0].reason
            await bus.send_command(CancelExecution(execution_id=execution_id))
            outcome = await follow(bus, execution_id, timeout_s=20)
            assert outcome.status == ExecutionStatus.CANCELLED
            assert service.dead_lettered >= 1
    finally:
        await bus.close()
