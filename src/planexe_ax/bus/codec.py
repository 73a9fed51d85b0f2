"""Decode bus messages: run the upcaster chain of the message's (type, version), then validate."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from planexe_ax.bus.messages import COMMAND_ADAPTER, EVENT_ADAPTER, Command, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (type, from_version) -> pure function returning the message at from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
CURRENT_VERSION: dict[str, int] = {}


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a raw message to the current version of its type."""
    kind = str(raw.get("type", ""))
    version = int(raw.get("version", 1))
    while (step := UPCASTERS.get((kind, version))) is not None:
        raw = step(raw)
        version += 1
        raw["version"] = version
    return raw


def decode_event(data: bytes) -> Event:
    """Bytes of an event to its model.

    Raises:
        ValueError: (pydantic's ValidationError or json's JSONDecodeError) on a malformed or unknown event.
    """
    return EVENT_ADAPTER.validate_python(upcast(json.loads(data)))


def decode_command(data: bytes) -> Command:
    """Bytes of a command to its model; raises ValueError on a malformed or unknown command."""
    return COMMAND_ADAPTER.validate_python(upcast(json.loads(data)))
