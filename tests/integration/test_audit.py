"""audit export writes who did each thing; audit verify passes on a real run and names the event after a
read-model row is edited and after a message is deleted from the stream, from the REST API and the command line."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from planexe_ax.bus import AuditCheckpoint, Bus
from planexe_ax.readmodel import make_engine, make_session_factory
from planexe_ax.readmodel.models import ExecutionEvent
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document
from tests.helpers.processes import cli

pytestmark = [pytest.mark.nats, pytest.mark.postgres]


async def audit(stack: Stack, execution_id: str) -> dict[str, Any]:
    answer = await stack.client.get(f"/api/executions/{execution_id}/audit")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def edit_row(stack: Stack, seq: int) -> None:
    engine = make_engine(str(stack.settings.database_url))
    try:
        async with make_session_factory(engine).begin() as session:
            row = (await session.scalars(select(ExecutionEvent).where(ExecutionEvent.stream_seq == seq))).one()
            row.data = {**row.data, "reason": "nothing happened here"}
    finally:
        await engine.dispose()


async def test_audit_passes_on_a_run_and_names_an_edited_row_and_a_deleted_message(stack: Stack, bus: Bus) -> None:
    assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
    created = await stack.client.post("/api/executions", json={"plan_id": example_document()["plan_id"]})
    execution_id = created.json()["execution_id"]

    async def clean() -> dict[str, Any] | None:
        done = (await stack.client.get(f"/api/executions/{execution_id}")).json()["status"] == "COMPLETED"
        report = await audit(stack, execution_id) if done else None
        return report if report and report["ok"] else None

    report = await eventually(clean, timeout=30)
    assert report["events"] > 20
    assert len(report["head"]) == 64
    assert report["problems"] == []
    assert report["checkpoints"] >= 1, "the coordinator signed the chain's head at the end"
    assert report["signed_up_to"] > 0

    env = {
        "PLANEXE_NATS_URL": str(stack.settings.nats_url),
        "PLANEXE_NATS_AUTH_DIR": str(stack.settings.nats_identities_dir),
        "PLANEXE_NAMESPACE": stack.settings.namespace,
        "PLANEXE_DATA_DIR": str(stack.settings.data_dir),
        "PLANEXE_DATABASE_URL": str(stack.settings.database_url),
    }
    exported = await asyncio.to_thread(cli, ["audit", "export", execution_id], env)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(lines) == report["events"]
    assert lines[-1]["chain"] == report["head"]
    assert {line["who"] for line in lines if line["type"] == "execution_state"} == {"coordinator"}
    assert all(line["who"].startswith("agent:") for line in lines if line["type"] == "subtask_result")

    events = (await stack.client.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})).json()
    states = [e for e in events["items"] if e["type"] == "subtask_state"]
    edited, deleted = states[-2], states[1]  # two decisions, one early, one late (newest first)
    await edit_row(stack, edited["seq"])
    await bus.js.delete_msg(bus.subjects.events_stream, deleted["seq"])

    tampered = await audit(stack, execution_id)
    assert tampered["ok"] is False
    rows = [p for p in tampered["problems"] if p["kind"] in ("changed", "extra", "missing")]
    named = {(p["seq"], p["event_id"]): p["problem"] for p in rows}
    assert set(named) == {(edited["seq"], edited["event_id"]), (deleted["seq"], deleted["event_id"])}
    assert named[(edited["seq"], edited["event_id"])].startswith("changed in the read model: ")
    assert "reason differ" in named[(edited["seq"], edited["event_id"])]
    assert named[(deleted["seq"], deleted["event_id"])] == (
        "in the read model but not in the stream: deleted from the stream"
    )
    breaks = [p for p in tampered["problems"] if p["kind"] == "chain"]
    assert {p["problem"].split("'s hash chain")[0] for p in breaks} == {"the stream", "the read model"}
    for p in breaks:  # each names a window holding the event altered in that copy
        lo, hi = (int(n) for n in re.findall(r"after seq (\d+) and up to seq (\d+)", p["problem"])[0])
        altered = deleted if p["problem"].startswith("the stream") else edited
        assert lo < altered["seq"] <= hi, p
    assert tampered["head"] != report["head"]

    done = await asyncio.to_thread(cli, ["audit", "verify", execution_id], env)
    assert done.returncode == 1, done.stderr
    assert f"seq {edited['seq']} event {edited['event_id']}: changed" in done.stdout
    assert f"seq {deleted['seq']} event {deleted['event_id']}: in the read model but not in the stream" in done.stdout

    # A checkpoint in the coordinator's name whose signature is not the coordinator's is reported, never believed.
    key_id = stack.settings.effective_audit_key_file.with_suffix(".pub").read_text().strip()
    forged = AuditCheckpoint(
        execution_id=execution_id, up_to_seq=1, count=1, head_hash="00" * 32, key_id=key_id, signature="c2lnbmF0dXJl"
    )
    await bus.publish_event(forged)

    async def reported() -> list[dict[str, Any]] | None:
        found = [p for p in (await audit(stack, execution_id))["problems"] if p["event_id"] == forged.event_id]
        projected = not any(p["kind"] == "missing" for p in found)  # the read model holds it too
        return found if found and projected else None

    (problem,) = await eventually(reported, timeout=10)
    assert problem["kind"] == "checkpoint"
    assert "signature does not verify" in problem["problem"]
