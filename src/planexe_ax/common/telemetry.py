"""Trace export, configured by the OpenTelemetry SDK's own ``OTEL_*`` variables.

Export is on when ``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``, or when an OTLP endpoint
is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true``
turns it off. Then an SDK tracer provider is installed with a batch processor per exporter; the sampler
(``OTEL_TRACES_SAMPLER``), the batch sizes (``OTEL_BSP_*``), the endpoint, headers and timeout of OTLP
are the SDK's to read. With none of them set nothing is installed and no span is made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from planexe_ax.bus import tracing
from planexe_ax.common import otlp
from planexe_ax.errors import ConfigError

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_MS = 5000
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def service_name(command: str, service: str | None = None) -> str:
    """The default ``service.name`` of a process: ``planexe-ax-<service>`` for ``serve``, else ``-cli``."""
    if command == "serve" and service:
        return f"planexe-ax-{service}"
    return "planexe-ax" if command == "up" else "planexe-ax-cli"


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The exporters the variables ask for (empty: no export)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not named:
        return ["otlp"] if any(env.get(name, "").strip() for name in ENDPOINTS) else []
    names = [name.strip().lower() for name in named.split(",") if name.strip()]
    return [] if names == ["none"] else [name for name in names if name != "none"]


def _otlp(env: Mapping[str, str]) -> SpanExporter:
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
    if protocol in ("", "http/protobuf"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp.install()  # its requests encoded by common/otlp.py: the same bytes, a quarter of the CPU
        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the opentelemetry-exporter-otlp-proto-grpc package; "
                "install it or use http/protobuf (port 4318)"
            ) from exc
        exporter: SpanExporter = GrpcExporter()
        return exporter
    raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use http/protobuf or grpc")


def exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    """One exporter per name in ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``).

    Raises:
        ConfigError: naming an exporter or protocol that is not available.
    """
    made: list[SpanExporter] = []
    for name in exporter_names(env):
        if name == "otlp":
            made.append(_otlp(env))
        elif name == "console":
            made.append(ConsoleSpanExporter())
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported; use otlp, console or none")
    return made


def resource(default_service: str) -> Resource:
    """The process's resource: ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) wins."""
    explicit = os.environ.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    return Resource.create() if explicit else Resource.create({SERVICE_NAME: default_service})


@dataclass
class Telemetry:
    """The installed tracer provider (None: no export); :meth:`shutdown` flushes what is buffered."""

    provider: TracerProvider | None = None

    def shutdown(self) -> None:
        """Send every span still buffered, then stop the exporters (a stopped service loses no span)."""
        if self.provider is None:
            return
        if not self.provider.force_flush(FLUSH_TIMEOUT_MS):
            log.warning("spans not all exported before shutdown", extra={"timeout_ms": FLUSH_TIMEOUT_MS})
        self.provider.shutdown()
        self.provider = None


def setup_tracing(default_service: str, env: Mapping[str, str] | None = None) -> Telemetry:
    """Install the tracer provider the ``OTEL_*`` variables ask for, if any.

    Raises:
        ConfigError: when they name an exporter or protocol that is not available.
    """
    env = os.environ if env is None else env
    made = exporters(env)
    if not made:
        return Telemetry()
    provider = TracerProvider(resource=resource(default_service), id_generator=tracing.ExecutionIds())
    for exporter in made:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing.enable()
    return Telemetry(provider)
