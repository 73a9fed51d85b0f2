import pytest
from nats.js.errors import APIError

from planexe_ax.bus import Bus, ExecutionState, ExecutionStatus, decode_event
from planexe_ax.bus.pull import Puller, stream_seq
from planexe_ax.bus.topology import ensure_consumer, events_consumer

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
