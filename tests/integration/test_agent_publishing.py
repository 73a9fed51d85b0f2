"""Reports put on the connection without waiting (SoonPublisher) and offer acks held for the next write (HeldAcks)."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.errors import NoStreamResponseError

from planexe_ax.bus import Bus, SubtaskStarted, connect
from planexe_ax.bus.subjects import Subjects
from planexe_ax.bus.work import HeldAcks, OfferSource, SoonPublisher
from planexe_ax.config import Settings
from tests.helpers.agents import events, offer, pending_offers
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats


def started(n: int) -> SubtaskStarted:
    return SubtaskStarted(
        event_id=f"e1:s{n}:1:started:tag",
        execution_id="e1",
        task_id="t1",
        subtask_id=f"s{n}",
        attempt=1,
        agent_id="tester-1",
    )


async def test_reports_are_stored_in_the_order_put_each_ack_to_its_future(bus: Bus) -> None:
    publisher = SoonPublisher(bus, 5.0)
    futures = [await publisher.soon(started(n)) for n in range(5)]
    again = await publisher.soon(started(2))  # the same report sent again: stored once
    acks = [await asyncio.wait_for(f, 5) for f in futures if f is not None]
    assert again is not None
    assert (await asyncio.wait_for(again, 5)).duplicate
    assert len(acks) == 5
    assert not any(a.duplicate for a in acks)
    assert [a.seq for a in acks] == sorted(a.seq for a in acks)
    assert [e.subtask_id for e in await events(bus)] == [f"s{n}" for n in range(5)]
    await publisher.close()


async def test_a_report_given_up_on_does_not_hold_up_the_others(bus: Bus) -> None:
    publisher = SoonPublisher(bus, 5.0)
    first = await publisher.soon(started(1))
    assert first is not None
    first.cancel()  # as Reporter.confirm does when it stops waiting
    second = await publisher.soon(started(2))
    assert second is not None
    assert not (await asyncio.wait_for(second, 5)).duplicate
    assert [e.subtask_id for e in await events(bus)] == ["s1", "s2"]
    await publisher.close()


async def test_a_report_no_stream_takes_fails_with_no_responders(nats_url: str, settings: Settings) -> None:
    bare = await connect(settings, nats_url, "test", provision=False, role="admin")  # no AX_EVENTS here
    try:
        publisher = SoonPublisher(bare, 5.0)
        future = await publisher.soon(started(1))
        assert future is not None
        with pytest.raises(NoStreamResponseError):
            await asyncio.wait_for(future, 5)
        await publisher.close()
    finally:
        await bare.close()


async def test_an_ack_that_does_not_come_ends_in_a_timeout(nats_url: str, settings: Settings) -> None:
    bare = await connect(settings, nats_url, "test", provision=False, role="admin")  # no AX_EVENTS here
    try:
        silent = await bare.nc.subscribe(bare.subjects.report("e1", "subtask_started", "tester-1"))  # never answers
        publisher = SoonPublisher(bare, 0.2)
        for n in (1, 2):  # the second after the first timed out: the timer is set again
            future = await publisher.soon(started(n))
            assert future is not None
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(future, 5)
        await publisher.close()
        await silent.unsubscribe()
    finally:
        await bare.close()


async def test_held_acks_are_sent_by_release_by_the_timer_and_by_close(bus: Bus) -> None:
    for n in range(3):
        await bus.publish_offer(offer("echo", n=n))
    source = OfferSource(bus)
    durable = Subjects.capability_consumer("echo")
    await source.ensure("tester-1", ["echo"])
    leased = [await source.fetch(durable, 5) for _ in range(3)]
    first, second, third = [work for work in leased if work is not None]
    held = HeldAcks(hold_s=600)
    await first.finish(confirmed=False, held=held)
    assert len(held) == 1
    assert await pending_offers(bus) == 3, "held, not sent"
    await held.release()
    await eventually(lambda: _pending_is(bus, 2))
    await second.finish(confirmed=False, held=HeldAcks(hold_s=0.01))
    await eventually(lambda: _pending_is(bus, 1))  # nothing else sent: the timer sends it
    await third.finish(confirmed=False, held=held)
    await held.close()
    await eventually(lambda: _pending_is(bus, 0))
    await source.close()


async def _pending_is(bus: Bus, n: int) -> bool:
    return await pending_offers(bus) == n
