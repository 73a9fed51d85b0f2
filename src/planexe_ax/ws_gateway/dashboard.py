"""The dashboard: one page at ``/`` and its static files under ``/static`` (no build step).

The page and its files are public (they hold no data); what the page reads needs a token, which the browser
holds in a session cookie after opening the link ``planexe-ax up`` prints (``/?token=...``).

The page is plain HTML, CSS and JavaScript modules shipped in the package (``ws_gateway/static``), with the
third-party libraries it uses copied into ``static/vendor`` so that it works without the internet. It reads
the REST API and follows each execution over its WebSocket stream.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from planexe_ax.ws_gateway.security import login

STATIC_DIR = Path(__file__).with_name("static")
"""The page, its scripts and styles, and ``vendor/`` (third-party files with their licences)."""

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""Fixed types for what the page loads: module scripts must be served as JavaScript, and the platform's
MIME table (``mimetypes``, the Windows registry) does not always say so."""

REVALIDATE = "no-cache"
"""Browsers keep the files but ask (ETag) before using them, so an upgraded gateway is seen at once."""

router = APIRouter(include_in_schema=False)


class DashboardFiles(StaticFiles):
    """Static files with fixed content types and revalidation."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file (or 304 Not Modified), typed by its suffix (see :data:`CONTENT_TYPES`)."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        kind = CONTENT_TYPES.get(Path(full_path).suffix.lower())
        if kind and response.status_code != status.HTTP_304_NOT_MODIFIED:
            response.headers["content-type"] = kind
        response.headers["cache-control"] = REVALIDATE
        return response


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request, token: str | None = None) -> Response:
    """The dashboard page; it routes by URL hash (``#/executions/<id>``). With ``?token=``: log in and reload."""
    if token is not None:
        return login(request, token)
    return FileResponse(
        STATIC_DIR / "index.html", media_type=CONTENT_TYPES[".html"], headers={"cache-control": REVALIDATE}
    )


@router.api_route("/answer", methods=["GET", "HEAD"])
async def answer_page() -> FileResponse:
    """The page a mailed one-time link opens (``/answer#item=...&token=...``): one inbox item and its answers."""
    return FileResponse(
        STATIC_DIR / "answer.html", media_type=CONTENT_TYPES[".html"], headers={"cache-control": REVALIDATE}
    )


@router.api_route("/docs", methods=["GET", "HEAD"])
async def api_docs() -> FileResponse:
    """The interactive API docs: Swagger UI from ``static/vendor`` (no internet needed) on ``/openapi.json``."""
    return FileResponse(
        STATIC_DIR / "docs.html", media_type=CONTENT_TYPES[".html"], headers={"cache-control": REVALIDATE}
    )


router.mount("/static", DashboardFiles(directory=STATIC_DIR, follow_symlink=False), name="static")
