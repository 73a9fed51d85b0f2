"""Decoding bus messages: microseconds per event, the codec against the path it replaced, in one run.

    python bench/codec.py [--events 20000] [--rounds 7]

Pure: no bus. The events are the golden fixtures (tests/contracts) as the bus carries them
(``model_dump_json``), in the mix one subtask of a wide plan puts on the stream: three ``subtask_state``,
two ``task_state``, a ``subtask_started``, a ``subtask_result`` and an ``audit_checkpoint`` (one per
execution every few events). Three ways are timed on the same bytes, round by round in turn:

- old: ``json.loads``, the upcasters, ``EVENT_ADAPTER.validate_python`` (the codec before);
- codec: ``planexe_ax.bus.decode_event`` (``validate_json``, the long way only when an upcaster applies);
- peek: a look at the bytes for a type an upcaster starts from before ``validate_json`` (the alternative).

Also the mix through ``decode_event_on`` (decode, then the check that the event belongs on its subject)
against the old decode with the old check (both subjects built for every event).

Prints the median of ``--rounds`` per way, per type and for the mix, and the ratios to old. Also a
``start`` v2 command with the fixture's plan (the one large message) through ``decode_command``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from planexe_ax.bus import Subjects, decode_command, decode_event, decode_event_on, event_subject
from planexe_ax.bus.codec import UPCASTERS, upcast
from planexe_ax.bus.messages import COMMAND_ADAPTER, EVENT_ADAPTER

ROOT = Path(__file__).resolve().parents[1]
MIX = {"subtask_state": 3, "task_state": 2, "subtask_started": 1, "subtask_result": 1, "audit_checkpoint": 1}
SUBJECTS = Subjects()
UPCAST_TYPES = tuple(f'"{kind}"'.encode() for kind, _ in UPCASTERS)


def wire(kind: str, version: int = 1) -> bytes:
    """The fixture of ``kind`` as a publisher puts it on the bus."""
    data = (ROOT / "tests" / "contracts" / kind / f"v{version}.json").read_bytes()
    adapter = COMMAND_ADAPTER if kind == "start" else EVENT_ADAPTER
    return adapter.validate_json(data).model_dump_json().encode()


def old(data: bytes) -> Any:
    return EVENT_ADAPTER.validate_python(upcast(json.loads(data)))


def old_command(data: bytes) -> Any:
    return COMMAND_ADAPTER.validate_python(upcast(json.loads(data)))


def old_on(subject: str, data: bytes) -> Any:
    """``decode_event_on`` before: the old decode, then both subjects it may be on built every time."""
    event = old(data)
    if subject not in (event_subject(SUBJECTS, event), SUBJECTS.event(event.execution_id, event.type)):
        raise ValueError(subject)
    return event


def peek(data: bytes) -> Any:
    if b"\\u" in data or any(kind in data for kind in UPCAST_TYPES):
        return old(data)
    return EVENT_ADAPTER.validate_json(data)


def per_message_us(decode: Callable[..., Any], messages: list[tuple[Any, ...]]) -> float:
    began = time.perf_counter()
    for args in messages:
        decode(*args)
    return (time.perf_counter() - began) / len(messages) * 1e6


def timed(ways: Mapping[str, Callable[..., Any]], messages: list[tuple[Any, ...]], rounds: int) -> dict[str, float]:
    """Median µs per message (``decode(*args)``) of each way; the ways take turns within every round."""
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, decode in ways.items():
            samples[name].append(per_message_us(decode, messages))
    return {name: statistics.median(values) for name, values in samples.items()}


def line(label: str, figures: dict[str, float]) -> str:
    base = figures["old"]
    cells = "  ".join(f"{name} {us:6.2f} µs ({us / base:4.2f}x)" for name, us in figures.items())
    return f"{label:18} {cells}"


def main(events: int, rounds: int) -> None:
    ways = {"old": old, "codec": decode_event, "peek": peek}
    by_kind = {kind: wire(kind) for kind in MIX}
    for data in by_kind.values():  # the same model each way
        assert old(data) == decode_event(data) == peek(data)
    mix = [(by_kind[kind],) for kind, weight in MIX.items() for _ in range(weight)]
    mix = (mix * (events // len(mix) + 1))[:events]
    print(f"events: {events} in the mix, {rounds} rounds, medians; bytes per type:", end=" ")
    print(", ".join(f"{kind} {len(data)}" for kind, data in by_kind.items()))
    for kind, data in by_kind.items():
        print(line(kind, timed(ways, [(data,)] * (events // 4), rounds)))
    mixed = timed(ways, mix, rounds)
    print(line("mix", mixed))
    on_subjects = [(event_subject(SUBJECTS, decode_event(data)), data) for (data,) in mix]
    print(
        line(
            "mix, on subject", timed({"old": old_on, "codec": partial(decode_event_on, SUBJECTS)}, on_subjects, rounds)
        )
    )
    start = wire("start", 2)
    commands = timed({"old": old_command, "codec": decode_command}, [(start,)] * max(1, events // 100), rounds)
    print(line(f"start ({len(start)} B)", commands))
    print(f"decode_event on the mix: {mixed['codec']:.2f} µs against {mixed['old']:.2f} µs before, "
          f"{mixed['codec'] / mixed['old']:.2f}x (peek first: {mixed['peek'] / mixed['old']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    main(args.events, args.rounds)
