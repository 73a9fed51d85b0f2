"""Pipelined publishing on a real nats-server: order, one outcome per message, de-duplication, the fence."""

from __future__ import annotations

import json

import pytest
from nats.js.errors import NoStreamResponseError

from planexe_ax.bus import Bus, Deposed, ExecutionState, ExecutionStatus, PubAck, Publication, connect
from planexe_ax.bus.leader import EXPECTED_LAST_SEQ, LeaderLease
from planexe_ax.bus.parser import Parser
from planexe_ax.bus.partitions import partition_of
from planexe_ax.bus.pipeline import FENCE_SUBJECT, Outgoing, Pipeline, hpub_command, parse_ack, publish_fast
from planexe_ax.bus.subjects import Subjects
from planexe_ax.config import Settings
from planexe_ax.errors import MessageTooLarge

pytestmark = pytest.mark.nats


def decision(n: int, execution_id: str = "e1", reason: str = "") -> ExecutionState:
    return ExecutionState(
        event_id=f"d-{execution_id}-{n}", execution_id=execution_id, status=ExecutionStatus.RUNNING, reason=reason
    )


async def test_many_messages_are_stored_in_order_each_with_its_own_outcome(bus: Bus) -> None:
    """More messages than the window; one too large and one already stored: each gets its own answer."""
    bus._pipeline = Pipeline(bus.nc, window=4, timeout_s=5.0, serial_fence=False)  # a small window, to fill it
    await bus.publish_event(decision(3))
    events = [decision(n) for n in range(40)]
    too_large = decision(99, reason="x" * (bus.max_message_bytes + 1))
    publications = [bus.event_publication(e) for e in events]
    publications.insert(10, bus.event_publication(too_large))

    outcomes = await bus.publish_many(publications)

    assert isinstance(outcomes[10], MessageTooLarge)
    acks = [o for i, o in enumerate(outcomes) if i != 10]
    assert all(isinstance(a, PubAck) for a in acks), acks
    stored = [a for a in acks if isinstance(a, PubAck) and not a.duplicate]
    assert [a.duplicate for a in acks if isinstance(a, PubAck)].count(True) == 1, "decision 3 was already stored"
    assert [a.seq for a in stored] == sorted(a.seq for a in stored), "stored in the order given"
    info = await bus.js.stream_info(bus.subjects.events_stream)
    assert info.state.messages == 40


async def test_a_message_no_stream_takes_fails_alone(bus: Bus) -> None:
    """A subject no stream listens on answers "no responders" for that message; the others are stored."""
    pipeline = Pipeline(bus.nc, window=8, timeout_s=5.0, serial_fence=False)
    subject = bus.subjects.event("e1", "execution_state")
    outgoing = [Outgoing(subject, b"{}", {"Nats-Msg-Id": "one"}), Outgoing("nowhere.at.all", b"{}", {})]
    outgoing.append(Outgoing(subject, b"{}", {"Nats-Msg-Id": "two"}))
    first, nowhere, last = await pipeline.send(outgoing)
    assert isinstance(first, PubAck)
    assert isinstance(last, PubAck)
    assert last.seq == first.seq + 1
    assert isinstance(nowhere, NoStreamResponseError)
    inbox = pipeline._acks._sub
    assert inbox is not None
    parser = bus.nc._ps
    assert isinstance(parser, Parser)
    assert inbox._id in parser.direct, "acks, statuses too, are handed over as they are read"


async def test_fenced_messages_after_one_that_failed_are_not_sent(bus: Bus) -> None:
    """One at a time per fence on a replicated stream: once a fenced message fails, the ones after it checking the
    same fence are not sent (sent again in order, none is stored before it); unfenced ones and those of another
    partition's fence still go."""
    pipeline = Pipeline(bus.nc, window=8, timeout_s=5.0, serial_fence=True)
    subject = bus.subjects.event("e1", "execution_state")
    # fences no marker was published on yet (expected last sequence 0): every message checking them passes
    one = {EXPECTED_LAST_SEQ: "0", FENCE_SUBJECT: bus.subjects.partition_fence(1)}
    other = {EXPECTED_LAST_SEQ: "0", FENCE_SUBJECT: bus.subjects.partition_fence(2)}
    outgoing = [
        Outgoing(subject, b"{}", {"Nats-Msg-Id": "before", **one}, fenced=True),
        Outgoing("nowhere.at.all", b"{}", one, fenced=True),  # no stream answers: the election's 503
        Outgoing(subject, b"{}", {"Nats-Msg-Id": "after", **one}, fenced=True),
        Outgoing(subject, b"{}", {"Nats-Msg-Id": "unfenced"}),
        Outgoing(subject, b"{}", {"Nats-Msg-Id": "other partition", **other}, fenced=True),
    ]
    before, failed, after, unfenced, another = await pipeline.send(outgoing)
    assert isinstance(before, PubAck)
    assert isinstance(failed, NoStreamResponseError)
    assert after is failed, "the fenced message after the failure fails with it"
    assert isinstance(unfenced, PubAck)
    assert unfenced.seq == before.seq + 1, "the fenced message after the failure was never stored"
    assert isinstance(another, PubAck), "another partition's fenced message is not held back by this failure"


async def fence(bus: Bus, holder: str, *execution_ids: str) -> int:
    """Fence ``bus``'s decisions about these executions with a new term of each one's partition; the markers."""
    bus.fences = bus.fences or {}
    partitions = {partition_of(x, bus.settings.partitions) for x in execution_ids}
    for partition in partitions:
        lease = LeaderLease(bus, Subjects.partition_lease(partition), holder, bus.subjects.partition_fence(partition))
        await lease.fence()
        bus.fences[partition] = lease.headers
    return len(partitions)


async def test_pipelined_decisions_of_a_deposed_leader_are_all_refused(nats_url: str, settings: Settings) -> None:
    """Each pipelined decision carries the fence and the stream checks each: after a newer fence, none is stored."""
    old = await connect(settings, nats_url, "coordinator-a", role="coordinator")
    new = await connect(settings, nats_url, "coordinator-b", role="coordinator")
    try:
        await fence(old, "a", "e1", "e2")
        acks = await old.publish_many([old.event_publication(decision(n)) for n in range(20)])
        assert all(isinstance(a, PubAck) for a in acks), "the leader's pipelined decisions pass"
        before = (await new.js.stream_info(new.subjects.events_stream)).state.messages

        markers = await fence(new, "b", "e1", "e2")
        offer_like = Publication(new.subjects.dlq("probe"), decision(0, "e2"), "unfenced")  # not fenced: passes
        with pytest.raises(Deposed, match="newer leader"):
            await old.publish_many([old.event_publication(decision(n, "e2")) for n in range(20)] + [offer_like])

        info = await new.js.stream_info(new.subjects.events_stream)
        assert info.state.messages == before + markers, "only the new leader's fence markers were added"
        refused = await new.js.get_last_msg(new.subjects.events_stream, new.subjects.event("e1", "execution_state"))
        assert b"d-e1-19" in (refused.data or b""), "the last stored decision is the old term's last accepted one"
    finally:
        await old.close()
        await new.close()


async def test_a_fast_publish_arrives_as_nats_py_sends_it(bus: Bus) -> None:
    """``publish_fast`` writes the protocol command itself: a reader sees what ``nc.publish`` would have sent, also
    for headers nats-py must clean (blanks, line breaks), which go through nats-py."""
    subject = bus.subjects.event("e1", "fast_check")
    sub = await bus.nc.subscribe(subject)
    cases: list[dict[str, str]] = [
        {
            "Content-Type": "application/json",
            "Nats-Msg-Id": "a:b:1",
            "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        },
        {"Ax-Type": " padded "},
        {"Ax-Type": "two\r\nlines"},
        {},
    ]
    for headers in cases:
        await bus.nc.publish(subject, b'{"n":1}', reply="_INBOX.r.1", headers=dict(headers))
        await publish_fast(bus.nc, subject, "_INBOX.r.1", dict(headers), b'{"n":1}')
    for headers in cases:
        plain, fast = await sub.next_msg(timeout=5), await sub.next_msg(timeout=5)
        assert (fast.data, fast.reply, fast.headers) == (plain.data, plain.reply, plain.headers), headers
    await sub.unsubscribe()


def test_an_hpub_command_is_built_only_for_plainly_safe_messages() -> None:
    command = hpub_command("ax.evt.e1.x", "_INBOX.a.1", {"Ax-Type": "x"}, b"{}")
    head = b"NATS/1.0\r\nAx-Type: x\r\n\r\n"
    assert command == b"HPUB ax.evt.e1.x _INBOX.a.1 %d %d\r\n%b{}\r\n" % (len(head), len(head) + 2, head)
    assert hpub_command("ax.evt.e1.x", "r", {"Ax-Type": "x "}, b"") is None, "nats-py strips blanks"
    assert hpub_command("ax.evt.e1.x", "r", {"Ax-Type": "x\ny"}, b"") is None, "nats-py replaces line breaks"
    assert hpub_command("ax.evt.e1.x", "r", {"Bad Key": "x"}, b"") is None, "nats-py refuses such a name"
    assert hpub_command("ax evt", "r", {}, b"") is None, "nats-py refuses such a subject"
    assert hpub_command("", "r", {}, b"") is None


@pytest.mark.parametrize(
    "answer",
    [
        b'{"stream":"AX_EVENTS","seq":12}',
        b'{"stream":"AX_EVENTS", "seq":12,"duplicate": true}',
        b'{"stream":"AX_EVENTS", "domain":"hub", "seq":7}',
    ],
)
def test_a_usual_ack_is_read_as_json_reads_it(answer: bytes) -> None:
    assert parse_ack(answer) == PubAck.from_response(json.loads(answer))


async def test_the_servers_own_acks_take_the_quick_reading(bus: Bus) -> None:
    """A stored message and its duplicate: both answers have the usual form (else every ack would go through json)."""
    subject = bus.subjects.event("e1", "ack_check")
    answers = [await bus.nc.request(subject, b"{}", headers={"Nats-Msg-Id": "same"}, timeout=5) for _ in range(2)]
    acks = [parse_ack(answer.data) for answer in answers]
    assert acks == [PubAck.from_response(json.loads(answer.data)) for answer in answers], answers
    assert [ack.duplicate for ack in acks if ack is not None] == [None, True]


def test_an_unusual_ack_is_left_to_json() -> None:
    assert parse_ack(b'{"stream":"S","seq":1,"batch":"b","count":2}') is None
    assert parse_ack(b'{"error":{"code":503}}') is None
