"""A local web site for the toolkit's fetching actions: a threaded HTTP server on loopback that records requests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

GOOD_SITE = """<!DOCTYPE html><html><head><title>Marie's Yorkies</title>
<meta name="viewport" content="width=device-width"><meta name="description" content="Yorkshire Terriers in CT">
</head><body><h1 class="brand">Marie's Yorkies</h1>
<div class="puppy"><span class="name">Bella</span> <span class="price">$2,500</span></div>
<div class="puppy"><span class="name">Max</span> <span class="price">$2,300</span></div>
<p>Call 860-555-0142 or write to <a href="mailto:marie@yorkies.example">us</a>.</p>
<form><input type="email" name="from"><textarea name="msg"></textarea></form>
<script>var ignored = "not text";</script></body></html>"""
POOR_SITE = """<html><head><title>Farm</title><meta name="generator" content="Wix.com Website Builder"></head>
<body><p>Welcome</p></body></html>"""
PAGES = {"/good": GOOD_SITE, "/poor": POOR_SITE}


class SiteHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []
    """Every path asked for, by any test's server."""

    def do_GET(self) -> None:
        SiteHandler.requests.append(self.path)
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect?to="))
            self.end_headers()
            return
        if self.path == "/broken":
            self.send_response(503)
            self.end_headers()
            return
        body = PAGES.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write((body or "not found").encode())

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve_site() -> Iterator[str]:
    """Serve the site; yield its base URL (``http://127.0.0.1:<port>``).

    ``SiteHandler.requests`` lists the paths asked for.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
