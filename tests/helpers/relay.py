"""A TCP relay in front of one nats-server's route port, so a test can cut a node off the cluster.

Every route to a node passes through its relay (the node advertises the relay's port as its route URL,
and the others list the relays as their routes). A route connection is opened by one server and accepted
by the other; the dialer names itself (its server id) in the route ``CONNECT`` it sends first. Cutting
a server id off closes every connection it dialed through any relay and every connection into it, and
refuses new ones until healed: the node runs on and keeps its clients, but hears no other node.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field

CONNECT = b"CONNECT "
FIRST_LINE_MAX = 64 * 1024


@dataclass
class _Pair:
    """One relayed connection: the dialer's socket, the upstream socket, who dialed (server id)."""

    down: socket.socket
    up: socket.socket
    dialer: str = ""

    def close(self) -> None:
        for sock in (self.down, self.up):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class RouteRelay:
    """Listens on ``port`` and relays each connection to ``target_port`` (both on loopback), in threads.

    Args:
        port: Where the relay listens (the node's advertised route port).
        target_port: The node's real route port.
    """

    port: int
    target_port: int
    target_id: str = ""
    """The server id of the node behind the relay (set once the node runs)."""
    cut_off: set[str] = field(default_factory=set)
    _pairs: list[_Pair] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None
    _stopped: bool = False

    def start(self) -> None:
        """Listen and accept in a daemon thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every connection."""
        self._stopped = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        self.cut(set(), everything=True)

    def cut(self, server_ids: set[str], everything: bool = False) -> None:
        """Refuse ``server_ids`` from now on and close their connections (``everything``: close all)."""
        with self._lock:
            self.cut_off = set(server_ids)
            closing = [p for p in self._pairs if everything or self._refused(p.dialer)]
        for pair in closing:
            pair.close()

    def _refused(self, dialer: str) -> bool:
        return bool(self.cut_off) and (self.target_id in self.cut_off or dialer in self.cut_off)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            if self._refused(""):
                down.close()  # the node behind the relay is cut off: nobody reaches it
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            pair = _Pair(down, up)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump_down, args=(pair,), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, up, down), daemon=True).start()

    def _pump_down(self, pair: _Pair) -> None:
        """Dialer -> node: read the route CONNECT first to learn who dialed, then relay."""
        first = b""
        try:
            while b"\n" not in first and len(first) < FIRST_LINE_MAX:
                chunk = pair.down.recv(65536)
                if not chunk:
                    break
                first += chunk
        except OSError:
            first = b""
        line = first.split(b"\r\n", 1)[0]
        if line.startswith(CONNECT):
            with contextlib.suppress(ValueError):
                pair.dialer = str(json.loads(line[len(CONNECT) :]).get("name", ""))
        if not first or self._refused(pair.dialer):
            self._drop(pair)
            return
        try:
            pair.up.sendall(first)
        except OSError:
            self._drop(pair)
            return
        self._pump(pair, pair.down, pair.up)

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        pair.close()
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
