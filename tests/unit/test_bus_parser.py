"""The protocol parser the bus installs reads the same bytes into the same calls as nats-py's own, however cut."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import random
from typing import Any

import pytest
from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

from planexe_ax.bus import Bus
from planexe_ax.bus.parser import Parser, deliver_directly, install, stop_delivering, subscribe, unsubscribe
from planexe_ax.bus.replay import listen

STATUS = b"NATS/1.0 404 No Messages\r\n\r\n"
HEADERS = b"NATS/1.0\r\nAx-Type: subtask_state\r\nNats-Msg-Id: abc\r\n\r\n"
STREAM = b"".join(
    [
        b"INFO " + json.dumps({"server_id": "x", "max_payload": 1048576}).encode() + b"\r\n",
        b"+OK\r\n",
        b"MSG ax.events.x.task_state 1 5\r\nhello\r\n",
        b"MSG ax.events.x.task_state 12 $JS.ACK.AX_EVENTS.c.1.7.7.1700000000000000000.0 3\r\nabc\r\n",
        b'HMSG ax.events.x.subtask_state 3 _INBOX.r.1 %d %d\r\n%s{"a": 1}\r\n'
        % (len(HEADERS), len(HEADERS) + 8, HEADERS),
        b"HMSG _INBOX.x.y 4 %d %d\r\n%s\r\n" % (len(STATUS), len(STATUS), STATUS),
        b"PING\r\n",
        b"MSG empty 2 0\r\n\r\n",
        b"MSG\tspaced\t\t7  2\r\nok\r\n",
        b"MSG crlf.inside 7 13\r\nMSG x 1 2\r\nab\r\n",
        b"PONG\r\n",
        b"MSG big 9 70000\r\n" + bytes(range(256)) * 273 + b"\x00" * 112 + b"\r\n",
        b"HMSG bin 5 reply.to %d %d\r\n%s\xff\x00\r\n\r\n" % (len(HEADERS), len(HEADERS) + 4, HEADERS),
        b"+OK\r\n",
        b"-ERR 'Permissions Violation for Subscription to \"x\"'\r\n",
        b"MSG last 1 1\r\nz\r\n",
    ]
)


class Recorder:
    """Where a parser hands what it read: every call, in order (a client's methods, as the parser calls them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), bytes(data), headers, type(data)))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, message: str) -> None:
        self.calls.append(("err", message))


async def _read(parser_type: type[nats_parser.Parser], pieces: list[bytes]) -> tuple[list[Any], str]:
    """What a parser makes of ``pieces`` read one after another: its calls, and the error that stopped it."""
    recorder = Recorder()
    parser = parser_type(recorder)
    try:
        for piece in pieces:
            await parser.parse(piece)
    except ProtocolError as exc:
        return recorder.calls, str(exc)
    return recorder.calls, f"left {bytes(parser.buf)!r} state {parser.state}"


def _cut(data: bytes, at: list[int]) -> list[bytes]:
    bounds = [0, *sorted(at), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


async def test_the_same_calls_as_nats_py_read_at_once() -> None:
    ours, theirs = await _read(Parser, [STREAM]), await _read(nats_parser.Parser, [STREAM])
    assert ours == theirs
    assert sum(call[0] == "msg" for call in ours[0]) == 10
    assert ("ping",) in ours[0]
    assert ("pong",) in ours[0]


async def test_the_same_calls_as_nats_py_cut_anywhere() -> None:
    small = STREAM.replace(STREAM[STREAM.index(b"MSG big") : STREAM.index(b"HMSG bin")], b"")
    for at in range(len(small) + 1):
        assert await _read(Parser, _cut(small, [at])) == await _read(nats_parser.Parser, _cut(small, [at])), at
    rnd = random.Random(5)
    for _ in range(300):
        cuts = [rnd.randrange(len(STREAM)) for _ in range(rnd.randint(1, 40))]
        assert await _read(Parser, _cut(STREAM, cuts)) == await _read(nats_parser.Parser, _cut(STREAM, cuts)), cuts


@pytest.mark.parametrize(
    "line",
    [
        b"MSG subject 1\r\n",
        b"MSG subject x 5\r\nhello\r\n",
        b"MSG subject 1 reply more 5\r\nhello\r\n",
        b"MSG subject 1 5 \r\nhello\r\n",
        b"MSGX subject 1 5\r\nhello\r\n",
        b"HMSG subject 1 5\r\nhello\r\n",
        b"HMSG subject 1 9 5\r\nNATS/1.0\r\n",
        b"HMSG subject 1 r 2 x\r\nhello\r\n",
        b"MSG a\r\n1 5\r\nhello\r\n",
        b"NOPE\r\n",
    ],
)
async def test_a_line_it_does_not_take_is_read_as_nats_py_reads_it(line: bytes) -> None:
    """Malformed lines (the server sends none of them) end as nats-py's parser ends them, after what came before."""
    stream = b"MSG before 1 2\r\nok\r\n" + line + b"MSG after 1 2\r\nok\r\n"
    ours = await _read(Parser, [stream])
    assert ours == await _read(nats_parser.Parser, [stream])
    assert ours[0][0][2] == b"before"


def test_install_changes_the_parser_of_that_client_only() -> None:
    nc, other = Client(), Client()
    nc._ps.buf.extend(b"MSG partial")
    install(nc)
    assert type(nc._ps) is Parser
    assert bytes(nc._ps.buf) == b"MSG partial", "its buffer carried over"
    assert type(other._ps) is nats_parser.Parser


async def test_a_connection_reads_large_and_many_messages_with_it(bus: Bus) -> None:
    """On a real server: the bus's connection reads with it, payloads of every size arrive whole, in order."""
    assert type(bus.nc._ps) is Parser
    sizes = [0, 1, 100, 40_000, 300_000, 7, 65_536]
    got: list[tuple[bytes, dict[str, str] | None]] = []
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        got.append((msg.data, dict(msg.headers) if msg.headers else None))
        if len(got) == len(sizes) * 20:
            done.set()

    sub = await bus.nc.subscribe("parser.test", cb=on_msg)
    payloads = [bytes([n % 251]) * size for n in range(20) for size in sizes]
    for n, payload in enumerate(payloads):
        await bus.nc.publish("parser.test", payload, headers={"N": str(n)} if n % 2 else None)
    await asyncio.wait_for(done.wait(), timeout=10)
    await sub.unsubscribe()
    assert [data for data, _ in got] == payloads
    assert [headers for _, headers in got] == [{"N": str(n)} if n % 2 else None for n in range(len(payloads))]


async def test_a_subscription_delivered_directly_gets_every_message_in_order(bus: Bus) -> None:
    """Handed to a plain function as read, none to the callback; a failing handler does not stop the connection."""
    direct: list[Any] = []
    called: list[Any] = []
    everything = asyncio.Event()

    def take(msg: Any) -> None:
        if msg.data == b"fail":
            raise RuntimeError("a handler that fails")
        direct.append((msg.subject, msg.reply, msg.data, dict(msg.headers) if msg.headers else None))
        if msg.data == b"last":
            everything.set()

    async def callback(msg: Any) -> None:
        called.append(msg.data)
        everything.set()

    sub = await bus.nc.subscribe("parser.direct.*", cb=callback)
    assert deliver_directly(bus.nc, sub, take)
    sent = [(f"parser.direct.{n}", f"reply.{n}" if n % 3 else "", str(n).encode() * n, {"N": str(n)} if n % 2 else None)
            for n in range(50)]  # fmt: skip
    for subject, reply, data, headers in sent[:25]:
        await bus.nc.publish(subject, data, reply=reply, headers=headers)
    await bus.nc.publish("parser.direct.x", b"fail")
    for subject, reply, data, headers in sent[25:]:
        await bus.nc.publish(subject, data, reply=reply, headers=headers)
    await bus.nc.publish("parser.direct.x", b"last")
    await asyncio.wait_for(everything.wait(), timeout=10)
    assert direct == [*sent, ("parser.direct.x", "", b"last", None)]
    assert called == []

    stop_delivering(bus.nc, sub)
    everything.clear()
    await bus.nc.publish("parser.direct.y", b"to the callback")
    await asyncio.wait_for(everything.wait(), timeout=10)
    assert called == [b"to the callback"]
    await sub.unsubscribe()


class Sink(Client):
    """A client that is never connected: what its parser hands it, recorded (no server answers a PING here)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        self.calls.append(("queued", sid, data))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))


def _append_data(into: list[bytes], msg: Any) -> None:
    into.append(msg.data)


async def test_messages_handed_over_directly_keep_their_order_around_other_lines() -> None:
    """A PONG (a flush's answer) or a PING amid a subscription's messages: every message still handed over, in order.

    Were the messages after such a line left to nats-py's parser, they would be queued for the callback while the
    next read's were handed over at once: out of order.
    """
    stream = b"".join(
        b"MSG ax.x 7 $JS.ACK.S.C.1.%d.%d.0.0 %d\r\n%s\r\n" % (n, n, len(b"%d" % n), b"%d" % n)
        + (b"PONG\r\n" if n % 3 == 0 else b"")
        + (b"PING\r\n+OK\r\n" if n % 7 == 0 else b"")
        + (b"HMSG ax.y 8 %d %d\r\n%sother\r\n" % (len(HEADERS), len(HEADERS) + 5, HEADERS) if n % 5 == 0 else b"")
        for n in range(60)
    )
    rnd = random.Random(3)
    for _ in range(200):
        nc = Sink()
        nc._ps = Parser(nc)
        handed: list[bytes] = []
        nc._ps.direct[7] = functools.partial(_append_data, handed)
        for piece in _cut(stream, [rnd.randrange(len(stream)) for _ in range(rnd.randint(1, 30))]):
            await nc._ps.parse(piece)
        assert handed == [b"%d" % n for n in range(60)]
        assert [call for call in nc.calls if call[0] == "queued"] == [("queued", 8, b"other")] * 12
        assert nc.calls.count(("pong",)) == 20
        assert nc.calls.count(("ping",)) == 9
        assert not nc._ps.buf


async def test_many_other_lines_in_one_read_are_read_one_after_another() -> None:
    nc = Sink()
    nc._ps = Parser(nc)
    handed: list[bytes] = []
    nc._ps.direct[7] = functools.partial(_append_data, handed)
    read = b"PONG\r\n" * 5000 + b"MSG ax.x 7 2\r\nok\r\n" + b"PING\r\n" * 5000 + b"MSG ax.x 7 4\r\nlast\r\n"
    await nc._ps.parse(read)
    assert handed == [b"ok", b"last"]
    assert (nc.calls.count(("pong",)), nc.calls.count(("ping",))) == (5000, 5000)
    assert not nc._ps.buf


async def test_listen_hands_messages_to_a_plain_function_directly_until_closed(bus: Bus) -> None:
    """The execution watches' subscriptions: every message in order, none queued for a callback, none after close."""
    got: list[tuple[str, bytes]] = []
    last = asyncio.Event()

    def take(subject: str, data: bytes) -> None:
        got.append((subject, data))
        if data == b"last":
            last.set()

    listening = await listen(bus, ["listen.a", "listen.b"], take)
    parser = bus.nc._ps
    assert isinstance(parser, Parser)
    sids = set(parser.direct)
    assert len(sids) >= 2, "each subscription of listen() is delivered directly"
    sent = [("listen.a" if n % 2 else "listen.b", str(n).encode()) for n in range(40)]
    for subject, data in [*sent, ("listen.a", b"last")]:
        await bus.nc.publish(subject, data)
    await asyncio.wait_for(last.wait(), timeout=10)
    assert got == [*sent, ("listen.a", b"last")]

    assert await listening.close() == []
    assert len(parser.direct) == len(sids) - 2, "closing gives the parser's entries back"
    await bus.nc.publish("listen.a", b"after")
    await bus.nc.flush()
    marker = await bus.nc.subscribe("listen.marker")
    await bus.nc.publish("listen.marker", b"m")
    await marker.next_msg(timeout=10)  # the server answered everything published before it
    await marker.unsubscribe()
    assert got[-1] == ("listen.a", b"last")


async def test_subscribe_hands_messages_to_deliver_directly_or_by_its_callback(bus: Bus) -> None:
    """parser.subscribe: straight from the parser; when the parser does not take them, the callback hands them on."""
    got: list[bytes] = []
    arrived = asyncio.Event()

    def take(msg: Any) -> None:
        got.append(msg.data)
        arrived.set()

    sub = await subscribe(bus.nc, "subscribe.helper", take)
    parser = bus.nc._ps
    assert isinstance(parser, Parser)
    assert parser.direct[sub._id] is take
    await bus.nc.publish("subscribe.helper", b"direct")
    await asyncio.wait_for(arrived.wait(), timeout=10)

    stop_delivering(bus.nc, sub)  # as on a connection whose parser is not ours: the subscription's callback
    arrived.clear()
    await bus.nc.publish("subscribe.helper", b"by the callback")
    await asyncio.wait_for(arrived.wait(), timeout=10)
    assert got == [b"direct", b"by the callback"]

    deliver_directly(bus.nc, sub, take)
    await unsubscribe(bus.nc, sub)
    assert sub._id not in parser.direct
