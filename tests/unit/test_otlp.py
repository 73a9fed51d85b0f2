"""The OTLP request encoder: the bytes the SDK's encoder makes, for every kind of span, value, event and link."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import AttributeValue

from planexe_ax.common import otlp
from tests.helpers.otlp import otlp_receiver

REMOTE = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
LOCAL = SpanContext(0x123, 0x456, is_remote=False, trace_flags=TraceFlags(1))


def made_spans() -> tuple[ReadableSpan, ...]:
    """Spans of two resources and three scopes covering what a span can hold."""
    kept = InMemorySpanExporter()
    limits = SpanLimits(max_span_attributes=12, max_events=2, max_links=2, max_event_attributes=3)
    providers = [
        TracerProvider(resource=Resource.create({"service.name": "one", "n": 1}), span_limits=limits),
        TracerProvider(resource=Resource({"service.name": "two"}, schema_url="https://schema/1")),
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(kept))
    tracers = [
        providers[0].get_tracer("planexe_ax.bus"),
        providers[0].get_tracer("other", "1.2.3", schema_url="https://schema/2", attributes={"scope.attr": "x"}),
        providers[1].get_tracer(""),
    ]
    values: dict[str, AttributeValue] = {
        "text": "nats",
        "empty": "",
        "unicode": "Zürich ✓",
        "yes": True,
        "no": False,
        "zero": 0,
        "negative": -42,
        "large": 2**62,
        "float": 0.25,
        "strings": ("a", "b"),
        "bools": [True, False],
        "ints": [1, -2, 3],
        "floats": [1.5, -0.5],
        "nothing": (),
    }
    for i, kind in enumerate(SpanKind):
        tracer = tracers[i % len(tracers)]
        parent = (None, REMOTE, LOCAL)[i % 3]
        context = set_span_in_context(NonRecordingSpan(parent)) if parent else None
        links = [Link(REMOTE, {"why": "retry", "n": i}), Link(LOCAL)] if i % 2 else []
        span = tracer.start_span(f"span {kind.name.lower()}", context, kind, attributes=values, links=links)
        span.add_event("publish ax.evt.{execution}.subtask_result.{agent_id}", {"messaging.message.id": f"m{i}"})
        span.add_event("no attributes")
        if i == 1:
            span.add_event("one too many")  # dropped: at most two events
            span.set_status(Status(StatusCode.ERROR, "ConnectionError: calendar API unreachable"))
        elif i == 2:
            span.set_status(Status(StatusCode.OK))
        span.end()
    with tracers[0].start_as_current_span("parent") as outer, tracers[0].start_as_current_span("child"):
        outer.set_attribute("planexe.execution_id", "e1")
    return kept.get_finished_spans()


def test_the_request_is_byte_for_byte_the_sdks() -> None:
    spans = made_spans()
    assert any(span.dropped_attributes for span in spans), "the limits dropped some attributes"
    assert any(span.dropped_events for span in spans)
    encoder = otlp.Encoder()
    assert encoder.encode_spans(spans) == encode_spans(spans).SerializeToString()
    assert encoder.encode_spans(spans) == encode_spans(spans).SerializeToString(), "the same once its caches are warm"
    for one in spans:
        assert encoder.encode_spans([one]) == encode_spans([one]).SerializeToString(), one.name
    assert encoder.encode_spans([]) == encode_spans([]).SerializeToString()


def test_an_attribute_that_cannot_be_encoded_is_left_out_as_the_sdk_does(caplog: pytest.LogCaptureFixture) -> None:
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    provider.get_tracer("t").start_span("s", attributes={"fine": 1, "huge": 2**70, "after": "x"}).end()
    spans = kept.get_finished_spans()
    with caplog.at_level(logging.ERROR):
        encoded = otlp.Encoder().encode_spans(spans)
    assert encoded == encode_spans(spans).SerializeToString()
    assert b"huge" not in encoded
    assert b"after" in encoded
    assert any("cannot encode span attribute" in r.message for r in caplog.records)


def test_the_http_exporter_sends_the_encoders_request_to_a_collector() -> None:
    assert otlp.install()
    assert otlp.install(), "installing twice keeps the one installed"
    assert getattr(getattr(trace_exporter, "encode_spans", None), "planexe_ax", False)
    spans = made_spans()
    with otlp_receiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()  # type: ignore[no-untyped-call]
        received = receiver.spans
    sent = [(str(s.resource.attributes["service.name"]), s.name) for s in spans]
    assert sorted((s.service, s.name) for s in received) == sorted(sent), "every span, grouped by resource and scope"
    [failed] = [s for s in received if s.name == "span server"]
    assert failed.status_code == 2
    assert failed.attributes["unicode"] == "Zürich ✓"
    assert failed.links == ((f"{0xABC:032x}", f"{0xDEF:016x}"), (f"{0x123:032x}", f"{0x456:016x}"))


def test_many_scopes_and_attribute_values_encode_alike_past_what_the_encoder_keeps() -> None:
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    for i in range(otlp.KEPT + 50):  # a tracer per call, and ids in every attribute: more than the caches hold
        attributes = {f"a{j}": f"x{i}.{j}" for j in range(16)}
        provider.get_tracer(f"scope-{i}").start_span("s", attributes=attributes).end()
    spans = kept.get_finished_spans()
    assert len(spans) * 16 > otlp.PAIRS_KEPT
    encoder = otlp.Encoder()
    for _ in range(2):
        assert encoder.encode_spans(spans) == encode_spans(spans).SerializeToString()
