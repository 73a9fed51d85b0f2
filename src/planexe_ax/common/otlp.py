"""OTLP trace requests encoded straight to protobuf bytes, for the OTLP/HTTP exporter.

The SDK's encoder (opentelemetry-exporter-otlp-proto-common) builds a protobuf message object for every span,
attribute, value, event and link, then serialises them: about 90 µs a span here, twice what making the span
costs. :func:`encode_spans` writes the same ``ExportTraceServiceRequest`` (opentelemetry-proto's
``trace_service.proto``) field by field, in field-number order as protobuf does, reusing the bytes of each
resource, scope and attribute key it has seen; tests/unit/test_otlp.py checks that a collector decodes the
same request from both. :func:`install` makes the OTLP/HTTP exporter use it.

What the SDK's encoder skips, this skips too: an attribute whose value cannot be encoded (logged).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

log = logging.getLogger(__name__)

_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_INT64 = (-(1 << 63), (1 << 63) - 1)
PAIRS_KEPT = 4096
"""Most encoded attributes, and attribute keys, :class:`Encoder` keeps for reuse."""
KEPT = 256
"""Most encoded resources, and scopes, :class:`Encoder` keeps for reuse (a process has one or two of each)."""
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


_SMALL = [bytes((n,)) for n in range(0x80)]
"""Each varint of one byte, made once: most lengths here are under 128."""


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


# Tags, by message (wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
_F1, _F2, _F3, _F4, _F5, _F6, _F7 = (_tag(n, 2) for n in range(1, 8))  # length-delimited fields 1-7
_SPAN_KIND, _SPAN_START, _SPAN_END = _tag(6, 0), _tag(7, 1), _tag(8, 1)
_SPAN_ATTRIBUTE, _SPAN_DROPPED_ATTRIBUTES, _SPAN_EVENT = _tag(9, 2), _tag(10, 0), _tag(11, 2)
_SPAN_DROPPED_EVENTS, _SPAN_LINK, _SPAN_DROPPED_LINKS = _tag(12, 0), _tag(13, 2), _tag(14, 0)
_SPAN_STATUS, _SPAN_FLAGS = _tag(15, 2), _tag(16, 5)
_EVENT_TIME, _EVENT_DROPPED = _tag(1, 1), _tag(4, 0)
_LINK_DROPPED, _LINK_FLAGS = _tag(5, 0), _tag(6, 5)
_STATUS_CODE = _tag(3, 0)
_VALUE_BOOL, _VALUE_INT, _VALUE_DOUBLE = _tag(2, 0), _tag(3, 0), _tag(4, 1)


class Encoder:
    """Encodes batches of spans; keeps the bytes of the resources, scopes and attribute keys it met."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._pairs: dict[tuple[bytes, str, Any, type], bytes] = {}
        """Encoded ``KeyValue`` fields (by tag) of the scalar attributes met last (``messaging.system=nats``)."""
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}

    def encode_spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialised ``ExportTraceServiceRequest`` of ``spans``, grouped by resource, then by scope."""
        out = bytearray()
        for resource, by_scope in _grouped(spans, self._span):
            body = bytearray(_delimited(_F1, self._resource(resource)))
            for scope, encoded in by_scope:
                scope_spans = bytearray(_delimited(_F1, self._scope(scope)))
                for span_bytes in encoded:
                    scope_spans += _delimited(_F2, span_bytes)
                if scope is not None and scope.schema_url:
                    scope_spans += _delimited(_F3, scope.schema_url.encode())
                body += _delimited(_F2, bytes(scope_spans))
            if resource.schema_url:
                body += _delimited(_F3, resource.schema_url.encode())
            out += _delimited(_F1, bytes(body))
        return bytes(out)

    # -- the parts ------------------------------------------------------------------------------------
    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        assert context is not None  # a span the SDK ended has its context
        out = bytearray(_F1 + b"\x10" + context.trace_id.to_bytes(16, "big"))
        out += _F2 + b"\x08" + context.span_id.to_bytes(8, "big")
        if context.trace_state:
            out += _delimited(_F3, ",".join(f"{k}={v}" for k, v in context.trace_state.items()).encode())
        if span.parent is not None:
            out += _F4 + b"\x08" + span.parent.span_id.to_bytes(8, "big")
        if span.name:
            out += _delimited(_F5, span.name.encode())
        kind = _KIND[span.kind]
        out += _SPAN_KIND + _varint(kind)
        if span.start_time:
            out += _SPAN_START + _pack_fixed64(span.start_time)
        if span.end_time:
            out += _SPAN_END + _pack_fixed64(span.end_time)
        attributes = getattr(span, "_attributes", None) or span.attributes  # its own mapping: not the proxy
        if attributes:
            out += self._attributes(_SPAN_ATTRIBUTE, attributes)
        if span.dropped_attributes:
            out += _SPAN_DROPPED_ATTRIBUTES + _varint(span.dropped_attributes)
        for event in span.events:
            body = bytearray()
            if event.timestamp:
                body += _EVENT_TIME + _pack_fixed64(event.timestamp)
            if event.name:
                body += _delimited(_F2, event.name.encode())
            if event.attributes:
                body += self._attributes(_F3, event.attributes)
            if event.dropped_attributes:
                body += _EVENT_DROPPED + _varint(event.dropped_attributes)
            out += _delimited(_SPAN_EVENT, bytes(body))
        if span.dropped_events:
            out += _SPAN_DROPPED_EVENTS + _varint(span.dropped_events)
        for link in span.links:
            body = bytearray(_F1 + b"\x10" + link.context.trace_id.to_bytes(16, "big"))
            body += _F2 + b"\x08" + link.context.span_id.to_bytes(8, "big")
            if link.attributes:
                body += self._attributes(_F4, link.attributes)
            if link.dropped_attributes:
                body += _LINK_DROPPED + _varint(link.dropped_attributes)
            body += _LINK_FLAGS + _pack_fixed32(_flags(link.context))
            out += _delimited(_SPAN_LINK, bytes(body))
        if span.dropped_links:
            out += _SPAN_DROPPED_LINKS + _varint(span.dropped_links)
        if span.status is not None:
            status = bytearray()
            if span.status.description:
                status += _delimited(_F2, span.status.description.encode())
            if span.status.status_code.value:
                status += _STATUS_CODE + _varint(span.status.status_code.value)
            out += _delimited(_SPAN_STATUS, bytes(status))
        out += _SPAN_FLAGS + _pack_fixed32(_flags(span.parent))
        return bytes(out)

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any]) -> bytes:
        """Each attribute as a ``KeyValue`` field with ``tag``; one that cannot be encoded is left out."""
        out = bytearray()
        pairs = self._pairs
        for key, value in _items(attributes):
            known = (tag, key, value, type(value)) if isinstance(value, str | int | float) else None
            field = pairs.get(known) if known is not None else None
            if field is None:
                try:
                    field = _delimited(tag, self._key(key) + _delimited(_F2, _value(value)))
                except Exception as exc:  # as the SDK's encoder does: the attribute is dropped, the span is sent
                    log.exception("cannot encode span attribute", extra={"key": key, "error": repr(exc)})
                    continue
                if known is not None:
                    if len(pairs) >= PAIRS_KEPT:  # ids come and go: start again rather than grow
                        pairs.clear()
                    pairs[known] = field
            out += field
        return bytes(out)

    def _key(self, key: str) -> bytes:
        encoded = self._keys.get(key)
        if encoded is None:
            encoded = _key_field(key)
            if len(self._keys) < PAIRS_KEPT:  # keys are names in code; a key made of data is encoded every time
                self._keys[key] = encoded
        return encoded

    def _resource(self, resource: Resource) -> bytes:
        kept = self._resources.get(id(resource))
        if kept is None or kept[0] is not resource:
            if len(self._resources) >= KEPT:
                self._resources.clear()
            kept = self._resources[id(resource)] = (resource, self._attributes(_F1, resource.attributes))
        return kept[1]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        kept = self._scopes.get(id(scope))
        if kept is None or kept[0] is not scope:
            if len(self._scopes) >= KEPT:  # a tracer per call somewhere: start again rather than grow
                self._scopes.clear()
            body = b""
            if scope is not None:
                body = (_delimited(_F1, scope.name.encode()) if scope.name else b"") + (
                    _delimited(_F2, scope.version.encode()) if scope.version else b""
                )
                if scope.attributes:
                    body += self._attributes(_F3, scope.attributes)
            kept = self._scopes[id(scope)] = (scope, body)
        return kept[1]


Grouped = list[tuple[Resource, list[tuple[InstrumentationScope | None, list[bytes]]]]]


def _grouped(spans: Sequence[ReadableSpan], encode: Callable[[ReadableSpan], bytes]) -> Grouped:
    """The spans encoded, by resource and then by scope, each group in the order it first came (as the SDK's).

    Grouped by identity first (a provider gives all its spans one resource; hashing a resource dumps its
    attributes as JSON), then groups of equal resources or scopes are merged.
    """
    by_id: dict[tuple[int, int], tuple[Resource, InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        scope = span.instrumentation_scope or None
        group = by_id.get((id(span.resource), id(scope)))
        if group is None:
            group = by_id[(id(span.resource), id(scope))] = (span.resource, scope, [])
        group[2].append(encode(span))
    grouped: Grouped = []
    for resource, scope, encoded in by_id.values():
        scopes = next((s for r, s in grouped if r is resource or r == resource), None)
        if scopes is None:
            grouped.append((resource, scopes := []))
        kept = next((e for s, e in scopes if s is scope or s == scope), None)
        if kept is None:
            scopes.append((scope, encoded))
        else:
            kept += encoded
    return grouped


def _items(attributes: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The attributes' items; those of the SDK's bounded mapping straight from the dict it keeps them in."""
    inner = getattr(attributes, "_dict", None)
    return inner.items() if isinstance(inner, dict) else attributes.items()


def _key_field(key: str) -> bytes:
    """A ``KeyValue``'s key (an empty one is the default, not written)."""
    return _delimited(_F1, key.encode()) if key else b""


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


def _value(value: Any) -> bytes:
    """An ``AnyValue``'s fields (a oneof: its one field is written even when it holds the default)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _VALUE_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _delimited(_F1, value.encode())
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{value} does not fit an int64")
        return _VALUE_INT + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return _VALUE_DOUBLE + _pack_double(value)
    if isinstance(value, bytes):
        return _delimited(_F7, value)
    if isinstance(value, Sequence):
        return _delimited(_F5, b"".join(_delimited(_F1, _value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = (_delimited(_F1, _key_field(str(k)) + _delimited(_F2, _value(v))) for k, v in value.items())
        return _delimited(_F6, b"".join(pairs))
    raise TypeError(f"invalid type {type(value).__name__} of value {value!r}")


class _Encoded:
    """What the OTLP/HTTP exporter asks of an encoded request: its bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def SerializePartialToString(self) -> bytes:  # the protobuf message's method the exporter calls
        return self._data

    def SerializeToString(self) -> bytes:  # the same, under its other name
        return self._data


def install() -> bool:
    """Make the OTLP/HTTP span exporter encode its requests with :class:`Encoder`; False where it cannot.

    The exporter's module calls its ``encode_spans`` by name and serialises the result: that name is
    replaced, in this process, by one returning the request already encoded. An exporter whose module does
    not have that name is left as it is (and encodes as it did).
    """
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter
    except ImportError:
        return False
    current = getattr(trace_exporter, "encode_spans", None)
    if getattr(current, "planexe_ax", False):
        return True  # installed already
    if not callable(current):
        return False
    encoder = Encoder()

    def encode_spans(spans: Sequence[ReadableSpan]) -> _Encoded:
        return _Encoded(encoder.encode_spans(spans))

    encode_spans.planexe_ax = True  # type: ignore[attr-defined]
    setattr(trace_exporter, "encode_spans", encode_spans)  # noqa: B010 - a name the module does not export
    return True
