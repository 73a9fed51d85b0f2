"""The FastAPI app of the gateway: REST API, WebSocket stream, dashboard, health and metrics.

``create_app`` builds it; the lifespan connects to NATS and the read model and starts the parts that need
them (the stream hub, the HTTP agent bridge). Each part is a module with a ``router`` and, when it holds
resources, ``startup(gw)`` / ``shutdown(gw)``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from planexe_ax import __version__
from planexe_ax.bus import connect
from planexe_ax.common.inbox_links import LinkStore
from planexe_ax.config import Settings
from planexe_ax.readmodel import BadCursor, make_engine, make_session_factory
from planexe_ax.ws_gateway import (
    dashboard,
    routes_agents,
    routes_executions,
    routes_ops,
    routes_plans,
    routes_webhooks,
    stream,
)
from planexe_ax.ws_gateway.context import Gateway
from planexe_ax.ws_gateway.middleware import BodyLimit, SecurityHeaders
from planexe_ax.ws_gateway.security import describe_roles
from planexe_ax.ws_gateway.tokens import token_store

log = logging.getLogger(__name__)

PARTS: tuple[ModuleType, ...] = (
    routes_plans,
    routes_executions,
    routes_agents,
    routes_webhooks,
    stream,
    routes_ops,
    dashboard,
)

DESCRIPTION = """Watch and steer PlanExe-AX executions; agents that cannot speak NATS get work and report here.

Every write is sent over the bus as a command; it answers once the read model shows its effect, so a read
right after it sees the change. Examples: docs/api.md.

Every call but /healthz and /readyz needs a token (`Authorization: Bearer <token>`, from
`planexe-ax auth token --role ROLE --name NAME`); each endpoint says the role it needs. Without a token: 401;
with a token whose role lacks the right: 403.
"""


def create_app(settings: Settings, nats_url: str) -> FastAPI:
    """The gateway app for ``settings``, talking to NATS at ``nats_url``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus = await connect(settings, nats_url, "planexe-ax-gateway", role="gateway")
        engine = make_engine(settings.effective_database_url)
        gw = Gateway(settings=settings, bus=bus, sessions=make_session_factory(engine))
        app.state.gateway = gw
        started: list[ModuleType] = []
        try:
            for part in PARTS:
                if hasattr(part, "startup"):
                    await part.startup(gw)
                started.append(part)
            log.info("gateway started", extra={"nats": nats_url})
            yield
        finally:
            for part in reversed(started):
                if hasattr(part, "shutdown"):
                    await part.shutdown(gw)
            await bus.close()
            await engine.dispose()
            log.info("gateway stopped")

    app = FastAPI(
        title="PlanExe-AX",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by the dashboard part from the package's own copy of Swagger UI (offline)
        redoc_url=None,  # ReDoc loads from a CDN: a blank page without the internet
        openapi_tags=[
            {"name": "plans", "description": "The plan catalog."},
            {"name": "executions", "description": "Run plans, follow and steer them."},
            {"name": "agents", "description": "Agents, their capabilities and liveness; the HTTP agent protocol."},
            {"name": "webhooks", "description": "Signed deliveries of events to other systems; their log."},
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
    )
    app.state.settings = settings
    app.state.tokens = token_store(settings)
    app.state.links = LinkStore(settings.links_path)
    if settings.http_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http_cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.http_max_body)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(BadCursor, _bad_cursor)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for part in PARTS:
        describe_roles(part.router)
        app.include_router(part.router)
    return app


async def _bad_cursor(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": str(exc)})


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable line first (``detail``) and the field errors after it (``errors``)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg", "invalid request"))
    safe = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    return JSONResponse(status_code=422, content={"detail": message, "errors": safe})
