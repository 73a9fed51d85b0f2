"""A consumer's lost deliveries, found by the jump in its delivery sequence (bus.replay.DeliveryGaps)."""

from __future__ import annotations

from nats.aio.msg import Msg

from planexe_ax.bus.replay import DeliveryGaps


def delivered(consumer_seq: int, stream_seq: int) -> Msg:
    """A delivery as the server addresses its ack.

    ``$JS.ACK.<stream>.<consumer>.<count>.<stream seq>.<consumer seq>.<time>.<pending>``.
    """
    return Msg(None, subject="ax.evt.x.subtask_result.a", reply=f"$JS.ACK.S.C.1.{stream_seq}.{consumer_seq}.0.0")  # type: ignore[arg-type]


def test_consecutive_deliveries_are_counted_and_a_jump_names_the_first_lost() -> None:
    gaps = DeliveryGaps()
    assert gaps.first_lost([delivered(1, 10), delivered(2, 14)]) is None, "stream gaps are the filter's"
    assert gaps.last == 2
    assert gaps.first_lost([delivered(3, 15), delivered(5, 20)]) == 4
    assert gaps.last == 2, "a batch with a loss is not counted as handled"
    assert gaps.first_lost([delivered(3, 15)]) is None, "counted from the last batch handled"
    gaps.reset()
    assert gaps.first_lost([delivered(2, 30)]) == 1, "a consumer made again counts from 1"
