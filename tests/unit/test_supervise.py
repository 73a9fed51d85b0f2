"""The one back-off and restart loop of the bus (bus/consumer.py): Backoff, supervise, ErrorsOnce."""

from __future__ import annotations

import asyncio
import logging

import pytest

from planexe_ax.bus.consumer import Backoff, ErrorsOnce, supervise
from planexe_ax.bus.errors import BusClosed


async def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_reset() -> None:
    backoff, stop = Backoff(first_s=0.1, most_s=0.5), asyncio.Event()
    stop.set()  # a set stop cuts every wait short; only the delays are looked at
    delays = []
    for _ in range(5):
        delays.append(backoff.delay_s)
        await backoff.wait(stop)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    backoff.reset()
    assert backoff.delay_s == 0.1


async def test_supervise_starts_failing_work_again_until_it_returns() -> None:
    calls: list[int] = []
    errors: list[Exception] = []

    async def work(stop: asyncio.Event) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"failure {len(calls)}")

    await supervise(asyncio.Event(), work, "test", on_error=errors.append, backoff=Backoff(first_s=0.001))
    assert len(calls) == 3
    assert [str(e) for e in errors] == ["failure 1", "failure 2"]


async def test_a_closed_connection_ends_supervision_quietly_only_on_stop() -> None:
    async def closed(stop: asyncio.Event) -> None:
        raise BusClosed()

    stop = asyncio.Event()
    with pytest.raises(BusClosed):
        await supervise(stop, closed, "test", backoff=Backoff(first_s=0.001))
    stop.set()
    await supervise(stop, closed, "test")  # nothing runs once stop is set

    async def closing(stop: asyncio.Event) -> None:
        stop.set()
        raise BusClosed()

    await supervise(asyncio.Event(), closing, "test")


def test_each_distinct_error_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    report = ErrorsOnce(logging.getLogger("test.once"), logging.WARNING, agent_id="a1")
    with caplog.at_level(logging.WARNING, logger="test.once"):
        for _ in range(3):
            report("fetch failed", TimeoutError("slow"))
        report("fetch failed", ValueError("bad"))
        report.about("put failed")(TimeoutError("slow"))
    assert [(r.getMessage(), r.__dict__["error"]) for r in caplog.records] == [
        ("fetch failed", "TimeoutError('slow')"),
        ("fetch failed", "ValueError('bad')"),
        ("put failed", "TimeoutError('slow')"),
    ]
    assert all(r.__dict__["agent_id"] == "a1" and r.exc_info is None for r in caplog.records)
