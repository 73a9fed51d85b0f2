"""The agent's spans in one process: the attempt is current while the capability runs, a retry links back."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from planexe_ax.agents import AgentRuntime, TaskContext, capability
from planexe_ax.bus import Bus, tracing
from planexe_ax.bus.tracing import attempt_span_id, execution_root
from tests.helpers.agents import WaitParams, agent, fail_transiently, offer
from tests.helpers.spans import PROVIDER

pytestmark = pytest.mark.nats


@capability("call_llm")
async def call_llm(params: WaitParams, ctx: TaskContext) -> dict[str, Any]:
    """An agent author's own span around the call it makes."""
    with PROVIDER.get_tracer("author").start_as_current_span("llm call"):
        return {"answer": 42}


def named(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in found if span.name == name]


async def test_the_authors_span_nests_in_the_attempt_and_a_retry_links_back(
    bus: Bus, spans: InMemorySpanExporter
) -> None:
    await bus.publish_offer(offer("call_llm", attempt=2))
    await bus.publish_offer(offer("fail_transiently", n=2))
    await AgentRuntime(bus, agent(call_llm, fail_transiently)).run_until_idle()
    found = spans.get_finished_spans()

    [attempt] = named(found, "attempt call_llm")
    [llm] = named(found, "llm call")
    assert llm.parent is not None
    assert attempt.context is not None
    assert llm.parent.span_id == attempt.context.span_id, "the author's span is inside the attempt"
    assert attempt.context.trace_id == execution_root("e1").trace_id, "in the execution's trace"
    assert attempt.context.span_id == attempt_span_id("e1", "s1", 2)
    assert [link.context.span_id for link in attempt.links] == [attempt_span_id("e1", "s1", 1)]
    assert attempt.attributes is not None
    assert (attempt.attributes["planexe.subtask_id"], attempt.attributes["planexe.attempt"]) == ("s1", 2)
    assert attempt.attributes["planexe.capability"] == "call_llm"
    assert attempt.attributes["planexe.agent_id"] == "tester-1"

    [failed] = named(found, "attempt fail_transiently")
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "ConnectionError: calendar API unreachable"
    assert not failed.links, "a first attempt links to nothing"
    assert not [s.name for s in found if s.name.startswith("publish ax.evt.")], "a report is no span of its own"
    reported = [event.name for event in attempt.events]
    assert "publish ax.evt.{execution}.subtask_result.{agent_id}" in reported, "a report is an event of its attempt"
    result = await bus.js.get_last_msg(bus.subjects.events_stream, f"{bus.subjects.event('e1', 'subtask_result')}.>")
    carried = tracing.parse_traceparent((result.headers or {}).get("traceparent"))
    assert carried is not None
    assert carried.span_id in {attempt.context.span_id, failed.context.span_id}, "a report carries its attempt"


async def test_without_export_no_span_is_made_and_messages_carry_the_execution_context(bus: Bus) -> None:
    assert not tracing.enabled()
    await bus.publish_offer(offer("call_llm"))
    msg = await bus.js.get_last_msg(bus.subjects.tasks_stream, bus.subjects.task("call_llm"))
    root = execution_root("e1")
    assert msg.headers is not None
    assert msg.headers["traceparent"] == f"00-{root.trace_id:032x}-{root.span_id:016x}-01"
