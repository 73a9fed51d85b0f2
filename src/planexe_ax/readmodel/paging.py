"""Keyset pagination: an opaque cursor names the last row of a page, so pages never skip or repeat rows."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor that this API did not hand out."""


def encode_cursor(*parts: Any) -> str:
    """An opaque cursor naming the last row of a page."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, *other_arities: int) -> list[Any]:
    """The parts of a cursor made by :func:`encode_cursor`: ``arity`` of them (or one of ``other_arities``).

    Raises:
        BadCursor: when the text is not such a cursor.
    """
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise BadCursor(f"cursor {cursor!r} is not one this API handed out") from exc
    if not isinstance(parts, list) or len(parts) not in (arity, *other_arities):
        raise BadCursor(f"cursor {cursor!r} is not one this API handed out")
    return parts


def parse_time(text: Any) -> datetime:
    """The datetime a cursor part names.

    Raises:
        BadCursor: when the part is not ISO 8601 text.
    """
    if not isinstance(text, str):
        raise BadCursor("cursor time is not text")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadCursor(f"cursor time {text!r} is not ISO 8601") from exc


def split_page(rows: list[T], limit: int) -> tuple[list[T], bool]:
    """The first ``limit`` of ``rows`` (read with ``limit + 1``) and whether more rows follow."""
    return rows[:limit], len(rows) > limit
