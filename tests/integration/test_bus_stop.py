"""A pull loop ends as soon as its stop is set, and gives back what it received and did not handle."""

import asyncio
import dataclasses

import pytest

from planexe_ax.bus import Bus, ExecutionState, ExecutionStatus, Msg, PullLoop
from planexe_ax.bus.pull import stream_seq
from planexe_ax.bus.topology import ensure_consumer, events_consumer
from tests.helpers.eventually import eventually

pytestmark = pytest.mark.nats

IDLE_S = 5.0
"""How long each wait of the loops lasts: a loop that ended only when a wait is up would miss every bound below."""
PROMPT_S = 1.0
ACK_WAIT_S = 60.0
"""The consumers' ack wait: a message that comes back within the test was given back, not redelivered after it."""
FLAVOURS = pytest.mark.parametrize("standing", [0, 10], ids=["fetching", "standing"])


async def _consumer(bus: Bus, durable: str) -> None:
    config = events_consumer(bus.subjects, durable, bus.settings)
    await ensure_consumer(bus.js, bus.subjects.events_stream, dataclasses.replace(config, ack_wait=ACK_WAIT_S))


async def _ignore(msgs: list[Msg]) -> None:
    raise AssertionError(f"no message was published, yet {len(msgs)} came")


@FLAVOURS
async def test_a_pull_loop_waiting_for_messages_ends_as_soon_as_stop_is_set(bus: Bus, standing: int) -> None:
    await _consumer(bus, "stop-idle")
    loop = PullLoop(bus, bus.subjects.events_stream, "stop-idle", _ignore, idle_timeout_s=IDLE_S, standing=standing)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))

    async def waiting() -> bool:
        info = await bus.js.consumer_info(bus.subjects.events_stream, "stop-idle")
        return (info.num_waiting or 0) >= 1

    await eventually(waiting)  # its pull request is at the server: the loop is in its wait of IDLE_S
    clock = asyncio.get_running_loop()
    stopped_at = clock.time()
    stop.set()
    await asyncio.wait_for(running, PROMPT_S)
    assert clock.time() - stopped_at < PROMPT_S < IDLE_S


@FLAVOURS
async def test_a_stopped_loop_finishes_the_message_in_hand_and_gives_back_those_it_received(
    bus: Bus, standing: int
) -> None:
    """The standing loop has all four delivered when it stops: the three it did not handle come back at once."""
    stream, durable = bus.subjects.events_stream, "stop-give-back"
    await _consumer(bus, durable)
    for i in range(4):
        await bus.publish_event(ExecutionState(execution_id="e1", status=ExecutionStatus.RUNNING, reason=str(i)))
    handling, release = asyncio.Event(), asyncio.Event()
    first: list[int] = []

    async def hold(msgs: list[Msg]) -> None:
        handling.set()
        await release.wait()
        for msg in msgs:
            first.append(stream_seq(msg))
            await msg.ack_sync()

    loop = PullLoop(bus, stream, durable, hold, idle_timeout_s=IDLE_S, standing=standing)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(handling.wait(), 10)
    delivered = 4 if standing else 1  # credits for all four, or one fetch of one

    async def all_delivered() -> bool:
        info = await bus.js.consumer_info(stream, durable)
        return (info.num_ack_pending or 0) == delivered

    await eventually(all_delivered)
    await bus.nc.flush()  # read by the loop's connection (this one): received, and waiting behind the first
    stop.set()
    release.set()
    await asyncio.wait_for(running, PROMPT_S)
    assert len(first) == 1, "the message in hand is finished, and no other is handled after the stop"

    again: list[int] = []
    rest = asyncio.Event()

    async def handle(msgs: list[Msg]) -> None:
        for msg in msgs:
            again.append(stream_seq(msg))
            await msg.ack_sync()
        if len(again) >= 3:
            rest.set()

    stop_again = asyncio.Event()
    next_loop = PullLoop(bus, stream, durable, handle, idle_timeout_s=IDLE_S, standing=standing)
    running = asyncio.create_task(next_loop.run(stop_again))
    await asyncio.wait_for(rest.wait(), 10)  # well within the ack wait: given back, not redelivered after it
    stop_again.set()
    await asyncio.wait_for(running, PROMPT_S)

    assert sorted(first + again) == [1, 2, 3, 4], "each message handled once"
    info = await bus.js.consumer_info(stream, durable)
    assert (info.num_ack_pending, info.num_pending) == (0, 0)


async def test_a_bucket_watch_waiting_for_changes_ends_as_soon_as_stop_is_set(bus: Bus) -> None:
    """The projector's plan watch and the gateway's lease watch wait on the bucket so (``Bus.kv_updates``)."""
    stop, ticked = asyncio.Event(), asyncio.Event()

    async def watch() -> None:
        async for entry in bus.plan_updates(stop, poll_s=IDLE_S):
            assert entry is None, "nothing was put in the bucket"
            ticked.set()  # the initial values are done: the next wait lasts IDLE_S unless stopped

    running = asyncio.create_task(watch())
    await asyncio.wait_for(ticked.wait(), 10)
    clock = asyncio.get_running_loop()
    stopped_at = clock.time()
    stop.set()
    await asyncio.wait_for(running, PROMPT_S)
    assert clock.time() - stopped_at < PROMPT_S < IDLE_S
