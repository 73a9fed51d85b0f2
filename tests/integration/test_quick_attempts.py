"""Attempts that end before their start is announced, through every service: no start report, no RUNNING, each
subtask's start kept from its result, in the coordinator's decisions, the read model and the audit chain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from planexe_ax.agents import TaskContext, capability
from planexe_ax.bus import ExecutionStatus, SubtaskResult, SubtaskState, TaskStatus, connect
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.bus.replay import last_event
from planexe_ax.config import Settings
from planexe_ax.projector import Projector
from planexe_ax.readmodel.audit import verify
from planexe_ax.readmodel.models import ExecutionSubtask
from tests.helpers.agents import WaitParams, agent, events
from tests.helpers.eventually import eventually
from tests.helpers.factories import make_plan
from tests.helpers.inprocess import agent_running, coordinator

pytestmark = pytest.mark.nats


@capability("echo")
async def at_once(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
    return {"done": ctx.subtask_id}


async def test_a_run_of_quick_attempts_keeps_each_start_and_its_audit_chain_verifies(
    nats_url: str, settings: Settings, sqlite_url: str
) -> None:
    operator = await connect(settings, nats_url, "operator", role="operator")
    try:
        plan = make_plan({"a": 2, "b": 1}, [("a", "b", "finish_to_start", 0)])
        async with coordinator(settings, nats_url), agent_running(settings, nats_url, agent(at_once)):
            execution_id = await start_execution(operator, plan)
            outcome = await follow(operator, execution_id, timeout_s=60)

            async def end_signed() -> bytes | None:
                return await last_event(operator, execution_id, "audit_checkpoint")

            await eventually(end_signed)
        assert outcome.status == ExecutionStatus.COMPLETED, outcome
        stored = [e for e in await events(operator) if e.execution_id == execution_id]
        assert "subtask_started" not in {e.type for e in stored}, "every attempt ended before its start was announced"
        states = [e for e in stored if isinstance(e, SubtaskState)]
        assert TaskStatus.RUNNING not in {e.status for e in states}
        began = {e.subtask_id: e.started_at for e in stored if isinstance(e, SubtaskResult)}
        assert set(began) == {"a_s0", "a_s1", "b_s0"}
        assert None not in began.values()
        completed = {e.subtask_id: e.started_at for e in states if e.status == TaskStatus.COMPLETED}
        assert completed == began, "each COMPLETED carries the start its result said"

        projecting = await connect(settings, nats_url, "projector", role="projector")
        try:
            async with Projector(projecting, sqlite_url) as projector, asyncio.timeout(30):
                await projector.run_until_idle()
                async with projector.sessions() as session:
                    rows = (await session.scalars(select(ExecutionSubtask))).all()
                assert {r.subtask_id: r.started_at for r in rows} == began
                for row in rows:
                    assert row.started_at is not None
                    assert row.finished_at is not None
                    assert row.started_at <= row.finished_at
                assert (await verify(projecting, projector.sessions, execution_id)).ok
        finally:
            await projecting.close()
    finally:
        await operator.close()
