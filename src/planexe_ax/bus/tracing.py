"""One trace per execution: W3C trace context through NATS headers, spans named by the messaging conventions.

Every execution has one trace, derived from its id: the trace id and the id of its root span (opened by
whoever starts the execution, see :func:`start_span`) are hashes of the execution id, so any service can
place a span in the execution's trace without looking anything up (a decision taken on a timer, a command
sent days later). A message carries its producer's context in ``traceparent``; a consumer continues it.

Spans are made only when an SDK tracer provider is installed (:func:`enable`, by
:mod:`planexe_ax.common.telemetry` when the ``OTEL_*`` variables ask for export). Without one nothing is
recorded and a message only carries the execution's root context (a cached string).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

TRACEPARENT = "traceparent"
MAX_LINKS = 32
"""Most links a decision span keeps to the messages it was decided on (beyond its parent)."""
_tracer = trace.get_tracer("planexe_ax.bus")
_enabled = False
_sampler: Any = None
"""The SDK sampler of the installed provider: the same for every service, so they agree on an execution."""
_forced: ContextVar[tuple[int, int] | None] = ContextVar("planexe_forced_ids", default=None)
"""(trace id, span id) the next span started in this context must have (0 for "any")."""


def enable(provider: trace.TracerProvider | None = None) -> None:
    """Spans from now on, from ``provider`` (by default the global one; its ids come from :class:`ExecutionIds`)."""
    global _enabled, _tracer, _sampler
    provider = provider or trace.get_tracer_provider()
    _enabled = True
    _tracer = provider.get_tracer("planexe_ax.bus")
    _sampler = getattr(provider, "sampler", None)
    execution_root.cache_clear()


def disable() -> None:
    """No spans from now on (the state of a process without export)."""
    global _enabled, _tracer, _sampler
    _enabled, _sampler = False, None
    _tracer = trace.get_tracer("planexe_ax.bus")
    execution_root.cache_clear()


def _sampled(trace_id: int) -> bool:
    """Whether this process's sampler keeps a trace that starts with ``trace_id`` (as the start decided)."""
    if _sampler is None:
        return True
    return bool(_sampler.should_sample(None, trace_id, "start execution").decision.is_sampled())


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _enabled


class ExecutionIds(RandomIdGenerator):
    """Random ids, except for the spans whose ids are derived from what they stand for (see :func:`_force`)."""

    def generate_span_id(self) -> int:
        """The forced span id, or a random one."""
        forced = _forced.get()
        return forced[1] if forced and forced[1] else super().generate_span_id()

    def generate_trace_id(self) -> int:
        """The forced trace id, or a random one."""
        forced = _forced.get()
        return forced[0] if forced and forced[0] else super().generate_trace_id()


def _hash(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()


@lru_cache(maxsize=4096)
def execution_root(execution_id: str) -> SpanContext:
    """The context of the execution's root span (the start), as a remote parent, sampled as the start was."""
    trace_id = int.from_bytes(_hash("trace", execution_id)[:16]) or 1
    span_id = int.from_bytes(_hash("root", execution_id)[:8]) or 1
    flags = TraceFlags(TraceFlags.SAMPLED if _sampled(trace_id) else TraceFlags.DEFAULT)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def trace_id_of(execution_id: str) -> str:
    """The execution's trace id, as 32 hex digits (what Jaeger's URL takes)."""
    return trace.format_trace_id(execution_root(execution_id).trace_id)


def attempt_span_id(execution_id: str, subtask_id: str, attempt: int) -> int:
    """The span id of one attempt's span (a retry links to the one before it)."""
    return int.from_bytes(_hash("attempt", execution_id, subtask_id, attempt)[:8]) or 1


@lru_cache(maxsize=4096)
def _root_header(execution_id: str) -> str:
    root = execution_root(execution_id)
    return f"00-{trace.format_trace_id(root.trace_id)}-{trace.format_span_id(root.span_id)}-01"


def _parent(execution_id: str | None) -> otel_context.Context | None:
    """The context to start a span in: the current one when it is in the execution's trace, else its root."""
    if execution_id is None:
        return None
    current = trace.get_current_span().get_span_context()
    root = execution_root(execution_id)
    if current.is_valid and current.trace_id == root.trace_id:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(root))


def _carried(msg: Any, execution_id: str | None) -> otel_context.Context | None:
    """The context a bus message's ``traceparent`` carries; without a valid one, the execution's (:func:`_parent`).

    A bus message has no other trace header (:func:`carry`): no propagator is asked for it.
    """
    carried = parse_traceparent((msg.headers or {}).get(TRACEPARENT))
    if carried is None:
        return _parent(execution_id)
    return trace.set_span_in_context(trace.NonRecordingSpan(carried))


def planexe_attributes(message: object) -> dict[str, Any]:
    """``planexe.*`` attributes of a message: execution, task, subtask, attempt, agent, capability."""
    out: dict[str, Any] = {}
    for name in ("execution_id", "task_id", "subtask_id", "attempt", "agent_id"):
        value = getattr(message, name, None)
        if value is not None:
            out[f"planexe.{name}"] = value
    capability = getattr(message, "action", None) or getattr(message, "capability", None)
    if isinstance(capability, str):
        out["planexe.capability"] = capability
    return out


def annotate(message: object) -> None:
    """Add the ``planexe.*`` attributes of ``message`` to the current span (once it is decoded)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(planexe_attributes(message))


@contextmanager
def _span(
    name: str,
    kind: SpanKind,
    attributes: dict[str, Any],
    parent: otel_context.Context | None = None,
    links: list[Link] | None = None,
    ids: tuple[int, int] | None = None,
) -> Iterator[Span]:
    """A current span (with ``ids`` when given); an exception escaping it sets the error status and is recorded."""
    token = _forced.set(ids) if ids else None
    try:
        span = _tracer.start_span(name, context=parent, kind=kind, attributes=attributes, links=links)
    finally:
        if token is not None:
            _forced.reset(token)
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
            raise


def failed(span: Span, reason: str) -> None:
    """Mark ``span`` failed with ``reason`` (for failures that are answers, not exceptions)."""
    span.set_status(Status(StatusCode.ERROR, reason[:300]))


def carry(headers: dict[str, str], message: object) -> None:
    """Without spans: put the context of the message's execution (its root) into ``headers``."""
    execution_id = getattr(message, "execution_id", None)
    if execution_id is not None:
        headers[TRACEPARENT] = _root_header(execution_id)


def _header(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote span context in a ``traceparent`` value (version 00); None when there is none or it is malformed."""
    if not value or len(value) != 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    try:
        trace_id, span_id, flags = int(value[3:35], 16), int(value[36:52], 16), int(value[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def noted_in_current(template: str, subject: str, msg_id: str | None, headers: dict[str, str], message: object) -> bool:
    """Inside a recording span of the message's execution, carry that span's context instead of making one.

    The publish becomes an event of the current span (an agent's reports are events of its attempt span):
    one span fewer to make and export per message, and the consumer continues the span the message came
    from. False (nothing done) outside such a span: the caller makes a publish span.
    """
    execution_id = getattr(message, "execution_id", None)
    if not _enabled or execution_id is None:
        return False
    span = trace.get_current_span()
    context = span.get_span_context()
    if not span.is_recording() or context.trace_id != execution_root(execution_id).trace_id:
        return False
    attributes: dict[str, Any] = {"messaging.operation.type": "send", "messaging.destination.name": subject}
    if msg_id:
        attributes["messaging.message.id"] = msg_id
    span.add_event(f"publish {template}", attributes)
    headers[TRACEPARENT] = _header(context)
    return True


def _joined(root: SpanContext, carried: Sequence[str | None]) -> tuple[SpanContext | None, list[Link]]:
    """Of the ``traceparent`` values ``carried``, those in ``root``'s trace: the last, and links to the others.

    Each context is linked once (the messages of one decision round all carry that round's), the last's not
    at all (it is the parent), and at most the latest :data:`MAX_LINKS`. The last is None when none is in the trace.
    """
    contexts: dict[int, SpanContext] = {}
    last: SpanContext | None = None
    for value in carried:
        context = parse_traceparent(value)
        if context is not None and context.trace_id == root.trace_id:
            contexts.pop(context.span_id, None)  # kept at its latest place
            contexts[context.span_id] = last = context
    if last is not None:
        del contexts[last.span_id]
    return last, [Link(context) for context in list(contexts.values())[-MAX_LINKS:]]


@contextmanager
def decision_span(name: str, execution_id: str, carried: Sequence[str | None] = ()) -> Iterator[str | None]:
    """A short span of the coordinator's decisions on one execution; yields the ``traceparent`` they carry.

    One span per decision round and execution, however many messages led to it and however many it
    publishes: its parent is the context the last of ``carried`` (the ``traceparent`` headers of the
    messages decided on) came in, in the execution's trace; the others are links (:func:`_joined`). Without any, it is a
    child of the current span when that is in the execution's trace, else of the execution's root. When
    the current span is already in the execution's trace and nothing is carried (a command's process
    span, a timer's span), no new span is made: the decisions carry the current one.
    """
    if not _enabled:
        yield None
        return
    root = execution_root(execution_id)
    last, links = _joined(root, carried)
    current = trace.get_current_span()
    if last is None and current.is_recording() and current.get_span_context().trace_id == root.trace_id:
        yield _header(current.get_span_context())
        return
    parent = trace.set_span_in_context(trace.NonRecordingSpan(last or root))
    attributes: dict[str, Any] = {"planexe.execution_id": execution_id}
    if carried:
        attributes["messaging.batch.message_count"] = len(carried)
    with _span(name, SpanKind.INTERNAL, attributes, parent, links or None) as span:
        yield _header(span.get_span_context())


@contextmanager
def publish_span(
    template: str, subject: str, msg_id: str | None, headers: dict[str, str], message: object = None
) -> Iterator[Span]:
    """A PRODUCER span around one publish, in the trace of the message's execution; injects its context.

    Args:
        template: The subject with its ids as placeholders (the span's name, bounded).
        subject: The subject published to.
        msg_id: The de-duplication id.
        headers: Filled with ``traceparent``.
        message: The message, for its ``planexe.*`` attributes and its execution.
    """
    execution_id = getattr(message, "execution_id", None)
    if not _enabled:
        carry(headers, message)
        yield INVALID_SPAN
        return
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.destination.name": subject,
        **planexe_attributes(message),
    }
    if msg_id:
        attributes["messaging.message.id"] = msg_id
    # Not made current: nothing runs inside a publish, and its context goes out in the headers only.
    span = _tracer.start_span(f"publish {template}", _parent(execution_id), SpanKind.PRODUCER, attributes)
    headers[TRACEPARENT] = _header(span.get_span_context())
    try:
        yield span
    except Exception as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
        raise
    finally:
        span.end()


def message_attributes(msg: Any, group: str) -> dict[str, Any]:
    """Messaging attributes of a received message (``msg`` is a NATS message)."""
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": msg.subject,
        "messaging.consumer.group.name": group,
    }
    msg_id = (msg.headers or {}).get("Nats-Msg-Id")
    if msg_id:
        attributes["messaging.message.id"] = msg_id
    if msg.reply:
        try:
            meta = msg.metadata
        except Exception:  # a reply subject that is not JetStream's: no stream position
            return attributes
        attributes["messaging.nats.stream.name"] = meta.stream
        attributes["messaging.nats.stream.sequence"] = int(meta.sequence.stream)
    return attributes


@contextmanager
def process_span(template: str, msg: Any, group: str, execution_id: str | None = None) -> Iterator[Span]:
    """A CONSUMER span for one message, continuing the context its headers carry.

    Args:
        template: The subject's template (the span's name).
        msg: The NATS message.
        group: The consumer (durable) name, or what consumes it.
        execution_id: The message's execution when known: a message without context joins its trace.
    """
    if not _enabled:
        yield INVALID_SPAN
        return
    parent = _carried(msg, execution_id)
    with _span(f"process {template}", SpanKind.CONSUMER, message_attributes(msg, group), parent) as span:
        yield span


@contextmanager
def batch_process_span(template: str, msgs: Sequence[Any], group: str, execution_id: str) -> Iterator[Span]:
    """One CONSUMER span for several messages of one execution processed together (a batch written at once).

    Named ``process <template>`` (the template of the subjects' wildcard); its parent is the context the last
    message carries (else the execution's root), the other contexts carried are links (each once, at most
    :data:`MAX_LINKS`), as a decision span's are. One message gets :func:`process_span` instead: its own
    subject and stream position.
    """
    if not _enabled:
        yield INVALID_SPAN
        return
    root = execution_root(execution_id)
    last, links = _joined(root, [(msg.headers or {}).get(TRACEPARENT) for msg in msgs])
    parent = trace.set_span_in_context(trace.NonRecordingSpan(last or root))
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": group,
        "messaging.batch.message_count": len(msgs),
        "planexe.execution_id": execution_id,
    }
    with _span(f"process {template}", SpanKind.CONSUMER, attributes, parent, links or None) as span:
        yield span


@contextmanager
def continued(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Make the context carried in ``headers`` current for the block (an HTTP request's ``traceparent``)."""
    if not _enabled or not headers or TRACEPARENT not in headers:
        yield
        return
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_traceparent() -> str | None:
    """The current span's context as a ``traceparent`` value (None without one)."""
    carrier: dict[str, str] = {}
    if _enabled:
        propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextmanager
def start_span(execution_id: str, how: str) -> Iterator[Span]:
    """The execution's root span, around sending its start: the trace every later span joins.

    Args:
        execution_id: The new execution.
        how: Who starts it (``cli``, ``rest``), an attribute.
    """
    if not _enabled:
        yield INVALID_SPAN
        return
    root = execution_root(execution_id)
    attributes = {"planexe.execution_id": execution_id, "planexe.started_by": how}
    with _span(
        "start execution", SpanKind.PRODUCER, attributes, otel_context.Context(), ids=(root.trace_id, root.span_id)
    ) as span:
        yield span


@contextmanager
def attempt_span(offer: Any, agent_id: str, msg: Any = None, group: str = "agents") -> Iterator[Span]:
    """The span of one attempt at one subtask, current while the capability runs (its own spans nest in it).

    With ``msg`` (the offer's NATS message) it is also the message's CONSUMER span: it continues the context
    the offer carries and has its messaging attributes. Its id is derived from the attempt, so a retry
    links to the attempt before it.
    """
    if not _enabled:
        yield INVALID_SPAN
        return
    execution_id, subtask_id, attempt = offer.execution_id, offer.subtask_id, offer.attempt
    links = []
    if attempt > 1:
        trace_id = execution_root(execution_id).trace_id
        before = SpanContext(trace_id, attempt_span_id(execution_id, subtask_id, attempt - 1), is_remote=True)
        links.append(Link(before, {"planexe.attempt": attempt - 1, "planexe.link": "previous attempt"}))
    attributes = {**planexe_attributes(offer), "planexe.agent_id": agent_id}
    parent, kind = _parent(execution_id), SpanKind.INTERNAL
    if msg is not None:
        attributes.update(message_attributes(msg, group))
        kind = SpanKind.CONSUMER
        parent = _carried(msg, execution_id)
    ids = (0, attempt_span_id(execution_id, subtask_id, attempt))
    with _span(f"attempt {offer.action}", kind, attributes, parent, links, ids) as span:
        yield span


def fail_current(reason: str) -> None:
    """Mark the current span failed with ``reason`` (an attempt whose result is a failure)."""
    span = trace.get_current_span()
    if span.is_recording():
        failed(span, reason)


@contextmanager
def internal_span(name: str, message: object = None) -> Iterator[Span]:
    """A short INTERNAL span (a projector write, a relay), in the message's execution trace."""
    if not _enabled:
        yield INVALID_SPAN
        return
    with _span(
        name, SpanKind.INTERNAL, planexe_attributes(message), _parent(getattr(message, "execution_id", None))
    ) as s:
        yield s


@contextmanager
def client_span(name: str, execution_id: str | None, attributes: dict[str, Any]) -> Iterator[Span]:
    """A CLIENT span of a call out of the system (a webhook POST, a mail) in the execution's trace.

    It nests in the current span when that is in the execution's trace (a message being processed), else
    under the execution's root: a call made long after the event still shows in the execution's trace.
    """
    if not _enabled:
        yield INVALID_SPAN
        return
    attributes = {"planexe.execution_id": execution_id, **attributes} if execution_id else attributes
    with _span(name, SpanKind.CLIENT, attributes, _parent(execution_id)) as span:
        yield span


def ids_of_current() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as hex, for log lines; None without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
