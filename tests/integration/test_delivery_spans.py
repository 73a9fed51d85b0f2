"""Webhook deliveries and notification mails are CLIENT spans in the trace of the event's execution."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from planexe_ax.bus import Bus, InboxOpened
from planexe_ax.bus.tracing import execution_root
from planexe_ax.common.smtp import SmtpUnavailable
from planexe_ax.config import Settings
from planexe_ax.notifier.service import Notifier
from planexe_ax.readmodel.webhook_queue import Due
from planexe_ax.webhooks.send import Sender
from tests.helpers.webhook_receiver import Receiver
from tests.integration.test_notifier import Sink, _free_port


@pytest.fixture
def mail_server() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def in_the_executions_trace(span: ReadableSpan, execution_id: str) -> bool:
    root = execution_root(execution_id)
    assert span.context is not None
    assert span.parent is not None
    return (span.context.trace_id, span.parent.span_id) == (root.trace_id, root.span_id)


async def test_each_webhook_delivery_attempt_is_a_span_in_the_executions_trace(spans: InMemorySpanExporter) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = Receiver(secret=secret, fail_first=1).start()
    sender = Sender(["127.0.0.1"], timeout_s=5)
    due = Due("d1", "wh_1", f"{receiver.url}?token=hidden", secret, "ev-1", '{"type": "execution_state"}', 0,
              datetime.now(UTC), "exec-7")  # fmt: skip
    try:
        failed = await sender.send(due)
        delivered = await sender.send(Due(**{**due.__dict__, "attempts": 1}))
    finally:
        await sender.close()
        receiver.stop()
    assert (failed.delivered, delivered.delivered, receiver.bad) == (False, True, [])

    first, second = spans.get_finished_spans()
    for span, attempt, code in ((first, 1, 500), (second, 2, 204)):
        assert span.name == "webhook delivery"
        assert span.kind == SpanKind.CLIENT
        assert in_the_executions_trace(span, "exec-7")
        attributes = dict(span.attributes or {})
        assert attributes["planexe.execution_id"] == "exec-7"
        assert (attributes["planexe.webhook_id"], attributes["planexe.event_id"]) == ("wh_1", "ev-1")
        assert (attributes["planexe.delivery_attempt"], attributes["http.response.status_code"]) == (attempt, code)
        assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", receiver.port)
        assert not any("hidden" in str(value) for value in attributes.values()), "no URL path or query in spans"
    assert first.status.status_code == StatusCode.ERROR
    assert "HTTP 500" in (first.status.description or "")
    assert second.status.status_code == StatusCode.UNSET


@pytest.mark.nats
async def test_each_notification_mail_is_a_span_in_the_executions_trace(
    bus: Bus, settings: Settings, mail_server: tuple[Sink, int], spans: InMemorySpanExporter
) -> None:
    sink, port = mail_server
    configured = settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{port}", "notify_to": {"approval": ["ann@example.org"]}}
    )
    event = InboxOpened(execution_id="exec-8", item_id="item-1", kind="approval", title="Approve the note")
    assert await Notifier(bus, configured).notify(event) == ["ann@example.org"]
    assert len(sink.messages) == 1
    [mail] = spans.get_finished_spans()
    assert (mail.name, mail.kind) == ("mail inbox item", SpanKind.CLIENT)
    assert in_the_executions_trace(mail, "exec-8")
    attributes = dict(mail.attributes or {})
    assert (attributes["planexe.item_id"], attributes["planexe.inbox_kind"]) == ("item-1", "approval")
    assert attributes["server.address"] == "127.0.0.1"
    assert not any("ann@" in str(value) for value in attributes.values()), "no address in spans"

    spans.clear()
    down = configured.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{_free_port()}"})
    other = InboxOpened(execution_id="exec-8", item_id="item-2", kind="approval")
    with pytest.raises(SmtpUnavailable):
        await Notifier(bus, down).notify(other)
    [refused] = spans.get_finished_spans()
    assert refused.status.status_code == StatusCode.ERROR
    assert in_the_executions_trace(refused, "exec-8")
