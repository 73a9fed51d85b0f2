"""Export configuration from the OTEL_* variables, span names without ids, trace ids in log lines."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from planexe_ax.bus import Subjects
from planexe_ax.bus.tracing import attempt_span_id, execution_root, trace_id_of
from planexe_ax.common.logs import JsonFormatter
from planexe_ax.common.telemetry import exporter_names, exporters, resource, service_name, setup_tracing
from planexe_ax.errors import ConfigError

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, []),
        (ENDPOINT, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, []),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_export_is_on_only_when_the_variables_ask_for_it(env: dict[str, str], names: list[str]) -> None:
    assert exporter_names(env) == names


def test_otlp_goes_over_http_and_other_choices_are_named_when_unavailable() -> None:
    [otlp] = exporters(ENDPOINT)
    assert isinstance(otlp, OTLPSpanExporter)
    assert isinstance(exporters({"OTEL_TRACES_EXPORTER": "console"})[0], ConsoleSpanExporter)
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        exporters({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported"):
        exporters({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_nothing_is_installed_without_the_variables() -> None:
    assert setup_tracing("planexe-ax-cli", {}).provider is None


def test_each_service_names_itself_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service_name("serve", "coordinator") == "planexe-ax-coordinator"
    assert service_name("exec") == service_name("inbox") == "planexe-ax-cli"
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource("planexe-ax-agents").attributes["service.name"] == "planexe-ax-agents"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agents-eu-1")
    assert resource("planexe-ax-agents").attributes["service.name"] == "agents-eu-1"


def test_span_names_keep_the_subject_template_without_ids() -> None:
    for subjects in (Subjects(), Subjects("t1")):
        assert subjects.template(subjects.event("0f3a", "task_state")) == "ax.evt.{execution}.task_state"
        assert subjects.template(subjects.report("0f3a", "subtask_result", "w-1")) == (
            "ax.evt.{execution}.subtask_result.{agent_id}"
        )
        assert subjects.template(subjects.command("0f3a")) == "ax.cmd.{execution}"
        assert subjects.template(subjects.direct("writer-7")) == "ax.direct.{agent_id}"
        assert subjects.template(subjects.task("draft_document")) == "ax.task.draft_document"
        assert subjects.template(subjects.dlq("coordinator")) == "ax.dlq.coordinator"


def test_an_execution_has_one_trace_and_each_attempt_its_own_span() -> None:
    assert trace_id_of("e1") == trace_id_of("e1") != trace_id_of("e2")
    assert len(trace_id_of("e1")) == 32
    assert execution_root("e1").span_id != attempt_span_id("e1", "s1", 1) != attempt_span_id("e1", "s1", 2)


def test_log_lines_carry_the_current_trace() -> None:
    from opentelemetry import trace

    root = execution_root("e1")
    record = logging.LogRecord("planexe_ax.x", logging.INFO, "f", 1, "hello", None, None)
    with trace.use_span(trace.NonRecordingSpan(root)):
        line = json.loads(JsonFormatter().format(record))
    assert (line["trace_id"], line["span_id"]) == (trace_id_of("e1"), f"{root.span_id:016x}")
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


def test_a_ratio_sampler_keeps_or_drops_whole_executions() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from planexe_ax.bus import tracing

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)), id_generator=tracing.ExecutionIds())
    tracing.enable(provider)
    try:
        kept = {f"e{i}": execution_root(f"e{i}").trace_flags.sampled for i in range(200)}
        for execution_id, sampled in list(kept.items())[:20]:
            with tracing.start_span(execution_id, "cli") as root:
                assert root.is_recording() == sampled, "the start and every later span agree"
    finally:
        tracing.disable()
    assert 60 < sum(kept.values()) < 140
    assert all(execution_root(e).trace_flags.sampled for e in kept), "without export the context says sampled"


def test_a_message_continues_the_context_it_carries_and_a_malformed_one_joins_its_execution(
    spans: InMemorySpanExporter,
) -> None:
    from types import SimpleNamespace

    from planexe_ax.bus import tracing

    carried = "00-0000000000000000000000000000abcd-00000000000000ef-01"
    for header, trace_id, parent_id in (
        (carried, 0xABCD, 0xEF),
        ("00-not-a-context", execution_root("e1").trace_id, execution_root("e1").span_id),
    ):
        msg = SimpleNamespace(subject="ax.evt.e1.task_state", headers={"traceparent": header}, reply=None)
        with tracing.process_span("ax.evt.{execution}.task_state", msg, "projector", "e1"):
            pass
        [span] = spans.get_finished_spans()
        spans.clear()
        assert span.context is not None
        assert span.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == (trace_id, parent_id), header


def test_a_decision_span_is_a_child_of_the_last_context_and_links_each_other_one_once(
    spans: InMemorySpanExporter,
) -> None:
    from planexe_ax.bus import tracing

    trace_id = execution_root("e1").trace_id
    a, b, c = (f"00-{trace_id:032x}-{n:016x}-01" for n in (0xA, 0xB, 0xC))
    stranger = "00-0000000000000000000000000000abcd-00000000000000ef-01"  # another trace: neither parent nor link
    with tracing.decision_span("decide on events", "e1", [a, b, a, stranger, b, c, "malformed"]):
        pass
    [span] = spans.get_finished_spans()
    assert span.parent is not None
    assert span.parent.span_id == 0xC
    assert [link.context.span_id for link in span.links] == [0xA, 0xB]
    assert span.attributes is not None
    assert span.attributes["messaging.batch.message_count"] == 7
