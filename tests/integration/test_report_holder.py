"""A report counts only from the agent that holds the attempt, and no one can take the id of its report first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from planexe_ax.agents import Agent, TaskContext, capability
from planexe_ax.bus import (
    Bus,
    Event,
    ExecutionStatus,
    Plan,
    SubtaskResult,
    SubtaskState,
    TaskOffer,
    TaskStatus,
    event_ids,
)
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.config import Settings
from tests.helpers.agents import events
from tests.helpers.factories import make_plan
from tests.helpers.inprocess import agent_running, coordinator

pytestmark = pytest.mark.nats

RELEASE = asyncio.Event()


class GatedParams(BaseModel):
    label: str = ""


@capability("gated_step")
async def gated_step(params: GatedParams, ctx: TaskContext) -> dict[str, Any]:
    """Work until the test lets it finish."""
    await RELEASE.wait()
    return {"by": "the holder"}


def gated_plan() -> Plan:
    document = make_plan({"a": 1}).model_dump(mode="json", by_alias=True)
    document["phases"][0]["tasks"][0]["subtasks"][0].update(action="gated_step", params={})
    return Plan.model_validate(document)


async def test_a_foreign_result_under_the_predictable_id_neither_counts_nor_drops_the_holders(
    nats_url: str, settings: Settings, bus: Bus
) -> None:
    RELEASE.clear()
    holder = Agent("holder-1", "Holder", capabilities=[gated_step])
    async with coordinator(settings, nats_url), agent_running(settings, nats_url, holder):
        execution_id = await start_execution(bus, gated_plan())
        running = asyncio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, SubtaskState) and event.status == TaskStatus.RUNNING:
                running.set()

        following = asyncio.create_task(follow(bus, execution_id, on_event, timeout_s=30))
        await asyncio.wait_for(running.wait(), 20)
        offer_id = TaskOffer(execution_id=execution_id, plan_id="p1", task_id="a", subtask_id="a_s0", attempt=1,
                             action="gated_step").msg_id  # fmt: skip
        ids = {"execution_id": execution_id, "task_id": "a", "subtask_id": "a_s0", "attempt": 1}
        guesses = [f"{offer_id}:result", f"{offer_id}:result:0000000000000000"]  # the old id, and a guessed tag
        for guess in guesses:
            forged = SubtaskResult(event_id=guess, ok=True, output={"by": "a forger"}, agent_id="forger-1", **ids)
            assert not (await bus.publish_event(forged)).duplicate
        forged_key = event_ids.report(event_ids.report_key(), offer_id, "holder-1", "result")
        claimed = SubtaskResult(event_id=forged_key, ok=True, output={"by": "a forger"}, agent_id="forger-1", **ids)
        assert not (await bus.publish_event(claimed)).duplicate
        RELEASE.set()
        outcome = await following

    assert outcome.status == ExecutionStatus.COMPLETED
    stored = await events(bus)
    results = [e for e in stored if isinstance(e, SubtaskResult)]
    assert [r.agent_id for r in results] == ["forger-1"] * 3 + ["holder-1"], "the holder's result was stored too"
    (completed,) = [e for e in stored if isinstance(e, SubtaskState) and e.status == TaskStatus.COMPLETED]
    assert (completed.agent_id, completed.output) == ("holder-1", {"by": "the holder"})
