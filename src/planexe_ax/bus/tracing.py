"""W3C trace context through NATS headers, and spans named by the messaging conventions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind

_tracer = trace.get_tracer("planexe_ax.bus")


def ensure_tracer_provider(service_name: str = "planexe-ax") -> None:
    """Install an SDK tracer provider when none is set, so every message gets a valid ``traceparent``.

    Exporting (OTLP to Jaeger) is configured by whoever installs a provider before this runs.
    """
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        from opentelemetry.sdk.resources import Resource

        trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service_name})))


@contextmanager
def publish_span(subject: str, msg_id: str | None, headers: dict[str, str]) -> Iterator[Span]:
    """A PRODUCER span around one publish; injects its context into ``headers``."""
    attributes = {"messaging.system": "nats", "messaging.destination.name": subject}
    if msg_id:
        attributes["messaging.message.id"] = msg_id
    with _tracer.start_as_current_span(f"publish {subject}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        propagate.inject(headers)
        yield span


@contextmanager
def consume_span(subject: str, headers: Mapping[str, str] | None) -> Iterator[Span]:
    """A CONSUMER span whose parent is the context carried in ``headers``."""
    parent = propagate.extract(dict(headers or {}))
    token = otel_context.attach(parent)
    try:
        attributes = {"messaging.system": "nats", "messaging.destination.name": subject}
        with _tracer.start_as_current_span(f"process {subject}", kind=SpanKind.CONSUMER, attributes=attributes) as s:
            yield s
    finally:
        otel_context.detach(token)
