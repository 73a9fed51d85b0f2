"""Spans kept in memory: a tracer provider whose finished spans a test reads (the ``spans`` fixture, conftest.py)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from planexe_ax.bus import tracing

PROVIDER = TracerProvider(id_generator=tracing.ExecutionIds())
"""Installed for the ``spans`` fixture's test only (OpenTelemetry allows one global provider: this is not it)."""
EXPORTED = InMemorySpanExporter()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTED))
