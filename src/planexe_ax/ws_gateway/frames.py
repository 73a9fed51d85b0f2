"""Event frames written straight to a WebSocket's socket: the stream's fast path to many clients.

Sending one text message through Starlette and uvicorn costs, per client, a task switch to the client's writer,
two layers of ASGI send, and a frame built by ``websockets``; the socket write itself is the smaller part. An
event goes to every client of its execution as the same frame (the gateway negotiates no compression, and a
server's frames are not masked), so the stream builds that frame once and writes it to each client's transport
itself, where nothing is waiting to go before it: the client's writer is idle, its queue empty, the socket open
and not pushing back. Anything else (a queue with frames in it, a handshake still going on, a server other than
uvicorn's ``websockets-sansio``, a negotiated extension) takes the usual path, in order.

:func:`tap` wraps the ASGI app given to uvicorn so that the route can find the connection's protocol: uvicorn
hands each WebSocket's scope a ``send`` that is a method of that protocol.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

SCOPE_KEY = "planexe_ax.ws_protocol"
"""Where :func:`tap` leaves a WebSocket's uvicorn protocol in its scope."""


def tap(app: ASGIApp) -> ASGIApp:
    """``app`` with each WebSocket's uvicorn protocol noted in its scope, for :func:`direct_writer`."""

    async def tapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            owner = getattr(send, "__self__", None)
            if isinstance(owner, WebSocketsSansIOProtocol):
                scope[SCOPE_KEY] = owner
        await app(scope, receive, send)

    return tapped


def text_frame(text: str) -> bytes:
    """``text`` as one whole, unmasked, uncompressed WebSocket text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


class DirectWriter:
    """Writes whole frames to one connection's transport while the connection is open and keeping up.

    Args:
        protocol: The connection's uvicorn protocol (its handshake done, no extension negotiated).
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def __call__(self, frame: bytes) -> bool:
        """Write ``frame`` now; False, writing nothing, when the socket is closing, pushing back or failing."""
        p = self._protocol
        if p.disconnected or p.close_sent or not p.writable.is_set() or p.conn.state is not State.OPEN:
            return False
        transport = p.transport
        if transport.is_closing():
            return False
        try:
            transport.write(frame)
        except Exception:  # the socket failed under us: the queued path meets it too and ends this client alone
            return False
        return True


def direct_writer(websocket: WebSocket) -> DirectWriter | None:
    """A writer for ``websocket``'s socket, or None when its frames must go through the ASGI send."""
    protocol = websocket.scope.get(SCOPE_KEY)
    if (
        not isinstance(protocol, WebSocketsSansIOProtocol)
        or not protocol.handshake_complete
        or protocol.conn.extensions
    ):
        return None
    return DirectWriter(protocol)
