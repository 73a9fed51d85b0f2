"""A webhook receiver on loopback that verifies Standard Webhooks signatures and can misbehave on purpose.

It answers 500 to its first ``fail_first`` requests, then closes its socket (the endpoint is down) until the
test calls :meth:`Receiver.recover`, which listens again on the same port. Every request is recorded; a
delivery counts once per ``webhook-id`` (the receiver's own de-duplication), and one whose signature does
not verify is recorded in ``bad``. A request whose body ends before its ``content-length`` (the sender died
between writing the headers and the body: httpx writes them separately) is no delivery: it is counted in
``cut`` and the connection is closed unanswered, as an HTTP framework would.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Receiver:
    """The receiver's state, shared by its handler threads."""

    secret: str = ""
    fail_first: int = 0
    go_down: bool = False
    requests: int = 0
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrival: list[str] = field(default_factory=list)
    duplicates: int = 0
    bad: list[str] = field(default_factory=list)
    cut: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`recover`."""
        server, self.server = self.server, None
        if server is not None:
            threading.Thread(target=_close, args=(server,), daemon=True).start()

    def recover(self) -> None:
        """Listen again on the same port and answer 2xx from now on."""
        with self.lock:
            self.fail_first, self.go_down = 0, False
        self.start()

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            self.requests += 1
            if self.requests <= self.fail_first:
                if self.requests == self.fail_first and self.go_down:
                    self.stop()
                return 500
            try:
                Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as exc:
                self.bad.append(f"{headers.get('webhook-id')}: {exc}")
                return 400
            webhook_id = headers["webhook-id"]
            if webhook_id in self.received:
                self.duplicates += 1
            else:
                self.received[webhook_id] = json.loads(body)
                self.arrival.append(webhook_id)
            return 204


def _close(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:
                with receiver.lock:
                    receiver.cut += 1
                self.close_connection = True
                return
            code = receiver.take(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler
