import asyncio

import pytest
from nats.js.errors import APIError

from planexe_ax.bus import Bus, ExecutionState, ExecutionStatus, decode_event
from planexe_ax.bus.consumer import StandingPull
from planexe_ax.bus.pull import Puller, delivered_count, stream_seq
from planexe_ax.bus.topology import ensure_consumer, events_consumer
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats


async def test_a_pull_gathers_a_batch_in_stream_order_and_ends_on_the_servers_status(bus: Bus) -> None:
    stream = bus.subjects.events_stream
    await ensure_consumer(bus.js, stream, events_consumer(bus.subjects, "pull-test", bus.settings))
    sent = [ExecutionState(execution_id="e1", status=ExecutionStatus.RUNNING, reason=str(i)) for i in range(5)]
    for event in sent:
        await bus.publish_event(event)
    async with Puller(bus, stream, "pull-test") as puller:
        first = await puller.fetch(3, 5.0)
        rest = await puller.fetch(10, 0.2)  # two are left: the server's 408 ends the request after 0.2 s
        none = await puller.fetch(1, 0.1)
        for msg in first + rest:
            await msg.ack()
    assert [decode_event(msg.data) for msg in first + rest] == sent
    seqs = [stream_seq(msg) for msg in first + rest]
    assert seqs == [msg.metadata.sequence.stream for msg in first + rest]
    assert seqs == sorted(set(seqs))
    assert none == []


async def test_a_pull_on_a_consumer_that_is_not_there_raises(bus: Bus) -> None:
    async with Puller(bus, bus.subjects.events_stream, "no-such-consumer") as puller:
        with pytest.raises(APIError):
            await puller.fetch(1, 0.5)


async def test_a_standing_pull_asked_for_at_least_n_sleeps_until_it_has_them_or_its_time_is_up(bus: Bus) -> None:
    """The projector lingering on a batch: not woken at each event, woken by the one that fills it or by time."""
    stream = bus.subjects.events_stream
    await ensure_consumer(bus.js, stream, events_consumer(bus.subjects, "standing-test", bus.settings))
    sent = [ExecutionState(execution_id="e2", status=ExecutionStatus.RUNNING, reason=str(i)) for i in range(5)]
    pull = StandingPull(bus, stream, "standing-test")
    await pull.start()
    try:
        taking = asyncio.create_task(pull.take(lambda: 10, 30.0, at_least=3))
        for event in sent[:2]:
            await bus.publish_event(event)

        await eventually(lambda: _ready_at_least(pull, 2))
        assert not taking.done(), "two of the three asked for must not end the wait"
        await bus.publish_event(sent[2])
        first = await asyncio.wait_for(taking, timeout=10)
        assert [decode_event(msg.data) for msg in first] == sent[:3]

        await bus.publish_event(sent[3])
        await eventually(lambda: _ready_at_least(pull, 1))
        at_time = await pull.take(lambda: 10, 0.2, at_least=100)  # its time is up: what came is handed out
        assert [decode_event(msg.data) for msg in at_time] == [sent[3]]
        assert await pull.take(lambda: 10, 0.1, at_least=5) == []
        await bus.publish_event(sent[4])
        assert [decode_event(m.data) for m in await pull.take(lambda: 10, 10.0)] == [sent[4]]  # one is enough
        for msg in first + at_time:
            await msg.ack()
    finally:
        await pull.close()


async def _ready_at_least(pull: StandingPull, n: int) -> bool:
    return len(pull._ready) >= n


async def test_the_delivery_count_read_from_the_ack_subject_is_the_servers(bus: Bus) -> None:
    """An agent's offer: how many times it was delivered, without parsing the whole ack subject."""
    stream = bus.subjects.events_stream
    await ensure_consumer(bus.js, stream, events_consumer(bus.subjects, "count-test", bus.settings))
    await bus.publish_event(ExecutionState(execution_id="e3", status=ExecutionStatus.RUNNING))
    async with Puller(bus, stream, "count-test") as puller:
        (first,) = await puller.fetch(1, 5.0)
        await first.nak()
        (again,) = await puller.fetch(1, 5.0)
        await again.ack()
    assert [delivered_count(first), delivered_count(again)] == [1, 2]
    assert [delivered_count(m) for m in (first, again)] == [m.metadata.num_delivered for m in (first, again)]
