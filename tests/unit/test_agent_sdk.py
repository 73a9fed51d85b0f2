"""The SDK: the capability decorator, the task context and the agent card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from planexe_ax.agents import Agent, CapabilityOutput, TaskContext, builtin_agents, capability
from planexe_ax.agents.reporting import report_ids
from planexe_ax.bus import check_id, event_ids
from planexe_ax.config import Settings

SEED_ACTIONS = {
    "search_google_maps",
    "web_scrape",
    "send_email",
    "make_phone_call",
    "schedule_calendar_event",
    "analyze_website",
    "draft_document",
    "create_wireframes",
    "build_quote",
    "manage_csv",
}


class EchoParams(BaseModel):
    text: str = Field(description="What to echo.")
    times: int = 1


@capability("echo")
async def echo(params: EchoParams, ctx: TaskContext) -> dict[str, Any]:
    """Repeat the text.

    More words that stay out of the card.
    """
    await ctx.progress(150, "clamped")
    return {"text": params.text * params.times}


def test_capability_infers_the_params_model_and_description() -> None:
    assert echo.action == "echo"
    assert echo.params_model is EchoParams
    assert echo.description == "Repeat the text."
    card = echo.card()
    assert card.params_schema["properties"]["text"]["description"] == "What to echo."
    assert card.params_schema["required"] == ["text"]


def test_capability_rejects_bad_definitions() -> None:
    with pytest.raises(ValueError, match="action"):
        capability("Bad.Action")

    async def untyped(params, ctx):  # type: ignore[no-untyped-def]  # unannotated on purpose: it is refused
        return {}

    with pytest.raises(TypeError, match="pydantic model"):
        capability("untyped")(untyped)

    def not_async(params: EchoParams, ctx: TaskContext) -> dict[str, Any]:
        return {}

    with pytest.raises(TypeError, match="async"):
        capability("sync")(not_async)  # type: ignore[arg-type]  # not a coroutine function, on purpose


async def test_task_context_clamps_progress_and_creates_the_output_dir(tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []

    async def report(percent: float, message: str) -> None:
        seen.append((percent, message))

    settings = Settings(data_dir=tmp_path)
    ctx = TaskContext("e1", "t1", "s1", 2, "a1", settings, _progress=report)
    assert await echo(EchoParams(text="ab", times=2), ctx) == {"text": "abab"}
    assert seen == [(100.0, "clamped")]
    assert ctx.output_dir == tmp_path / "outputs" / "e1"
    assert ctx.output_dir.is_dir()
    assert ctx.logger.extra == {
        "execution_id": "e1",
        "task_id": "t1",
        "subtask_id": "s1",
        "attempt": 2,
        "agent_id": "a1",
    }


def test_agent_card_lists_capabilities_with_schemas() -> None:
    agent = Agent("echo-1", "Echo", role="demo", capabilities=[echo])
    card = agent.card(current=["s2", "s1"], host="h", pid=7)
    assert card.agent_id == "echo-1"
    assert card.current == ["s1", "s2"]
    assert card.pid == 7
    assert [c.action for c in card.capabilities] == ["echo"]
    assert agent.capability("echo") is echo
    assert agent.capability("other") is None
    with pytest.raises(ValueError, match="twice"):
        Agent("echo-2", "Echo", capabilities=[echo, echo])
    with pytest.raises(ValueError, match="agent id"):
        Agent("echo.1", "Echo", capabilities=[echo])


def test_capability_output_carries_confidence() -> None:
    assert CapabilityOutput({"a": 1}, 0.5).confidence == 0.5


def test_builtin_agents_cover_every_seed_action_with_safe_ids() -> None:
    agents = builtin_agents(Settings(), suffix="host-1")
    assert [a.agent_id for a in agents] == ["researcher-host-1", "outreach-host-1", "writer-host-1"]
    actions = [action for agent in agents for action in agent.actions]
    assert sorted(actions) == sorted(SEED_ACTIONS)
    for agent in builtin_agents(Settings()):
        check_id(agent.agent_id)
        for cap in agent.card().capabilities:
            assert cap.params_schema["type"] == "object"
            assert cap.description


def test_report_ids_are_event_ids_report_under_any_key() -> None:
    first, second = event_ids.report_key(), event_ids.report_key()
    kinds = ["started", "progress:1", "progress:2", "blocked:1", "rejected", "result"]
    for key, offer_id, agent_id in [(first, "e1:s1:1", "a1"), (second, "e1:s1:1", "a1"), (first, "e2:s9:3", "a-2")]:
        made = report_ids(key, offer_id, agent_id)
        assert [made(k) for k in kinds] == [event_ids.report(key, offer_id, agent_id, k) for k in kinds]
