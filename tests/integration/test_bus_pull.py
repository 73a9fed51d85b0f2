import asyncio
from datetime import UTC, datetime

import pytest
from nats.js.errors import APIError

from planexe_ax.bus import Bus, ExecutionState, ExecutionStatus, decode_event, utcnow
from planexe_ax.bus.consumer import StandingPull
from planexe_ax.bus.pull import Puller, delivered_count, stream_seq
from planexe_ax.bus.replay import stored_since
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
    pull, sent = await _standing_pull(bus, "standing-test", "e2", 5)
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


async def test_a_standing_pull_asked_for_no_credits_lets_events_gather_until_one_drain_takes_them(bus: Bus) -> None:
    """The projector while events trickle: the first event wakes it, the rest wait at the server for one drain."""
    pull, sent = await _standing_pull(bus, "drain-test", "e3", 6)
    try:
        taking = asyncio.create_task(pull.take(lambda: 1, 30.0))
        await bus.publish_event(sent[0])
        first = await asyncio.wait_for(taking, timeout=10)
        assert [decode_event(msg.data) for msg in first] == sent[:1]
        assert pull.outstanding == 0, "the one credit asked for is spent"
        await first[0].ack_sync()  # not delivered again after the consumer's ack wait

        for event in sent[1:5]:
            await bus.publish_event(event)
        assert await pull.take(lambda: 0, 0.2, at_least=10) == [], "no credits: nothing is delivered"
        assert pull.outstanding == 0, "and nothing was asked for"

        drained = await asyncio.wait_for(pull.drain(100, 30.0), timeout=10)  # ends on the server's 404, not its time
        assert [decode_event(msg.data) for msg in drained] == sent[1:5]
        assert pull.outstanding == 0, "the drain's request ended with what the server had"
        for msg in drained:
            await msg.ack_sync()
        assert await asyncio.wait_for(pull.drain(100, 30.0), timeout=10) == []

        await bus.publish_event(sent[5])
        await bus.publish_event(sent[0])
        assert [decode_event(msg.data) for msg in await pull.drain(1, 30.0)] == sent[5:6], "at most as many as asked"
    finally:
        await pull.close()


async def test_the_events_stored_on_a_subject_since_a_time_are_read_back_in_order_up_to_the_last(bus: Bus) -> None:
    """What an agent reads back when it starts following an execution's subtask decisions."""
    subject = bus.subjects.event("e4", "execution_state")
    before = [ExecutionState(execution_id="e4", status=ExecutionStatus.RUNNING, reason=f"b{i}") for i in range(2)]
    after = [ExecutionState(execution_id="e4", status=ExecutionStatus.RUNNING, reason=f"a{i}") for i in range(4)]
    other = ExecutionState(execution_id="e5", status=ExecutionStatus.RUNNING, reason="another execution")
    assert [s async for s in stored_since(bus, subject, utcnow(), 10)] == [], "nothing stored there yet"
    for event in before:
        await bus.publish_event(event)
    since = datetime.now(UTC)
    for event in after[:2]:
        await bus.publish_event(event)
    await bus.publish_event(other)
    for event in after[2:]:
        await bus.publish_event(event)

    read = [s async for s in stored_since(bus, subject, since, 10)]
    assert [decode_event(s.data) for s in read] == after
    assert [s.subject for s in read] == [subject] * len(after)
    assert [s.seq for s in read] == sorted(s.seq for s in read)
    first_two = [decode_event(s.data) async for s in stored_since(bus, subject, since, 2)]
    assert first_two == after[:2], "at most as many as asked, the oldest first"


async def _standing_pull(
    bus: Bus, durable: str, execution_id: str, n: int
) -> tuple[StandingPull, list[ExecutionState]]:
    """A started standing pull on a new durable of every event, and ``n`` events to publish (not yet published)."""
    stream = bus.subjects.events_stream
    await ensure_consumer(bus.js, stream, events_consumer(bus.subjects, durable, bus.settings))
    sent = [ExecutionState(execution_id=execution_id, status=ExecutionStatus.RUNNING, reason=str(i)) for i in range(n)]
    pull = StandingPull(bus, stream, durable)
    await pull.start()
    return pull, sent


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
