"""Run the gateway app with uvicorn inside an asyncio program (``planexe-ax up``, ``serve gateway``, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn

from planexe_ax.config import Settings
from planexe_ax.ws_gateway.app import create_app
from planexe_ax.ws_gateway.frames import tap

log = logging.getLogger(__name__)


WS_MAX_MESSAGE = 64 * 1024
"""Largest WebSocket message a client may send (clients send only pings); a larger one closes the socket (1009)."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the program that embeds it owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), as a server binds it (SO_REUSEADDR).

    Raises:
        OSError: when the address cannot be bound.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now."""
    try:
        listening_socket(host, port).close()
    except OSError:
        return False
    return True


class GatewayServer:
    """The gateway listening on ``host:port`` (port 0: a free one); :meth:`start`, then :meth:`run` until stop.

    Args:
        settings: Settings (``http_host``/``http_port`` unless given here).
        nats_url: The NATS to talk to.
        host: Listen address; default ``settings.http_host``.
        port: Listen port; default ``settings.http_port``.
    """

    def __init__(self, settings: Settings, nats_url: str, host: str | None = None, port: int | None = None) -> None:
        self.app = create_app(settings, nats_url)
        self.host = host if host is not None else settings.http_host
        config = uvicorn.Config(
            tap(self.app),  # lets the stream write its event frames straight to the sockets (frames.py)
            host=self.host,
            port=port if port is not None else settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            # No loop= here: serve() runs on the caller's loop, uvloop for planexe-ax (common/eventloop.py).
            ws_per_message_deflate=False,  # measured: deflate costs ~60 % gateway CPU and 1.6x latency
            ws_max_size=WS_MAX_MESSAGE,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket (after :meth:`start`)."""
        sockets = [sock for server in self.server.servers for sock in (server.sockets or ())]
        port = sockets[0].getsockname()[1] if sockets else self.server.config.port
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{port}"

    async def start(self) -> str:
        """Start serving in the background; return the URL once it accepts connections.

        Raises:
            OSError: when the address cannot be bound (the port is taken).
            RuntimeError: when it could not start (NATS or the database unreachable).
        """
        # Bound here rather than by uvicorn, which ends the whole process (SystemExit) when the port is taken.
        sock = listening_socket(self.host, self.server.config.port)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():
                exc = self._task.exception()
                raise RuntimeError(
                    f"the gateway did not start on {self.host}:{self.server.config.port}: {exc or 'see the log'}"
                )
            await asyncio.sleep(0.01)
        log.info("gateway listening", extra={"url": self.url})
        return self.url

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down (closing WebSockets)."""
        if self._task is None:
            await self.start()
        assert self._task is not None
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({self._task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        await self.stop()

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        self.server.should_exit = True
        if self._task is not None:
            await self._task
