"""The projector's spans: an execution's events written in one batch share one span; an event alone has its own."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from planexe_ax.bus import Bus
from planexe_ax.bus.tracing import MAX_LINKS, execution_root
from planexe_ax.projector import Projector
from tests.integration.test_projector_service import drain, publish_all, scenario

pytestmark = [pytest.mark.nats]


def projected(found: tuple[ReadableSpan, ...], execution_id: str) -> list[ReadableSpan]:
    """The projector's spans of one execution (its consumer spans; the publishes are producer spans)."""
    trace_id = execution_root(execution_id).trace_id
    return [s for s in found if s.kind == SpanKind.CONSUMER and s.context and s.context.trace_id == trace_id]


async def test_a_batch_of_an_executions_events_is_one_span_linked_to_what_they_carried(
    bus: Bus, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    many = scenario("e1") + scenario("e3")[:1]  # e1's run, and e3 created: two executions in one batch
    await publish_all(bus, many)
    publishes = {s.context.span_id: s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER and s.context}
    await publish_all(bus, scenario("e2")[:1])
    async with Projector(bus, sqlite_url) as projector:
        await drain(projector)
        assert projector.projected == len(many) + 1
    found = spans.get_finished_spans()

    [batch] = projected(found, "e1")
    e1_events = len(many) - 1
    assert batch.name == "process ax.evt.{execution}.>"
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == e1_events
    assert batch.attributes["messaging.consumer.group.name"] == projector.durable
    assert batch.attributes["planexe.execution_id"] == "e1"
    e1_publishes = [s for s in publishes.values() if s.attributes and s.attributes.get("planexe.execution_id") == "e1"]
    assert len(e1_publishes) == e1_events, "each event was published in a span of its own, carried in its headers"
    assert batch.parent is not None
    last = max(e1_publishes, key=lambda s: s.start_time or 0)
    assert last.context is not None
    assert batch.parent.span_id == last.context.span_id, "a child of the last event it wrote"
    linked = {link.context.span_id for link in batch.links}
    others = {s.context.span_id for s in e1_publishes if s.context} - {last.context.span_id}
    assert len(linked) == min(len(others), MAX_LINKS)
    assert linked <= others, "linked to the contexts the other events carried"

    for alone in ("e2", "e3"):  # one event of the execution in its batch: the event's own span, as before
        [single] = projected(found, alone)
        assert single.name == "process ax.evt.{execution}.execution_created"
        assert single.attributes is not None
        assert isinstance(single.attributes["messaging.nats.stream.sequence"], int)
        assert "messaging.batch.message_count" not in single.attributes
