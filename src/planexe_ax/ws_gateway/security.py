"""Who is calling, and may they: bearer tokens (or the dashboard's session cookie) checked on every route.

Routes declare what they need with one of :data:`READ`, :data:`OPERATE`, :data:`APPROVE` or :data:`AGENT`
(FastAPI ``Security`` dependencies, so OpenAPI shows the schemes), or take the :class:`Caller` to record who
acted. No token, or one that is unknown or revoked: 401 with ``WWW-Authenticate: Bearer``. A token whose role
lacks the right: 403 naming the role needed. A browser that opens ``/?token=...`` (the link ``planexe-ax up``
prints) gets the token as an HttpOnly, SameSite=Strict cookie and is sent on without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Security, WebSocket, status
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from planexe_ax.common.inbox_links import PREFIX as LINK_PREFIX
from planexe_ax.common.inbox_links import LinkRefused, LinkStore
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.tokens import GRANTS, NEEDED, Right, Role, TokenError, TokenRecord, TokenStore

COOKIE = "planexe_session"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="planexe-ax"'}
HOW = "send Authorization: Bearer <token> (create one with `planexe-ax auth token --role viewer --name NAME`)"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token, or an unknown or revoked one."},
    403: {"description": "The token's role lacks the right; `detail` names the role needed."},
}
"""The answers every authenticated route may give, for OpenAPI."""

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `planexe-ax auth token --role ROLE --name NAME` "
    "(roles: viewer, operator, approver, agent, admin).",
)
cookie = APIKeyCookie(
    name=COOKIE, auto_error=False, description="Set by opening the dashboard link that `planexe-ax up` prints."
)


@dataclass(frozen=True)
class Caller:
    """The token a request came with: its name is who did something."""

    name: str
    role: Role
    agent_id: str | None = None
    by_cookie: bool = False
    link: str | None = None
    """A one-time inbox link token: it may read and answer its one inbox item, once."""

    def act_as(self, agent_id: str) -> None:
        """Allow acting as ``agent_id``: agent tokens only as their own agent, admins as any.

        Raises:
            HTTPException: 403 when the token is bound to another agent.
        """
        if self.role == Role.AGENT and agent_id != self.agent_id:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"the token {self.name} acts as agent {self.agent_id} only, not {agent_id}",
            )


def who_may(right: Right) -> str:
    """``the operator role (or admin)``: the least role that grants ``right``, and the others that do."""
    others = [role.value for role in Role if right in GRANTS[role] and role != NEEDED[right]]
    return f"the {NEEDED[right].value} role (or {', '.join(others)})"


def _store(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.tokens
    return store


def identify(store: TokenStore, token: str | None, by_cookie: bool = False) -> Caller:
    """The caller of ``token``.

    Raises:
        HTTPException: 401 (with ``WWW-Authenticate``) when there is no token or it is unknown or revoked; 503
            when the token file cannot be read.
    """
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"not authenticated: {HOW}", headers=CHALLENGE)
    try:
        record: TokenRecord | None = store.verify(token)
    except TokenError as exc:  # a token file that cannot be read answers 503 naming it, not 500
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": "5"}) from exc
    if record is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", headers=CHALLENGE)
    return Caller(record.name, record.role, record.agent_id, by_cookie)


def allowed_origin(settings: Settings, headers: Headers) -> bool:
    """Whether the request's ``Origin`` (if any) is the gateway's own address or in PLANEXE_HTTP_CORS_ORIGINS."""
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser: the token alone decides
    if origin.rstrip("/") in {o.rstrip("/") for o in settings.http_cors_origins}:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def _checker(right: Right) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets through callers whose role grants ``right``."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        session: Annotated[str | None, Security(cookie)],
    ) -> Caller:
        store = _store(request)
        caller = identify(store, credentials.credentials, False) if credentials else identify(store, session, True)
        cross_site = not allowed_origin(request.app.state.settings, request.headers)
        if caller.by_cookie and request.method not in SAFE_METHODS and cross_site:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused (Origin not allowed)")
        if right not in GRANTS[caller.role]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this call needs {who_may(right)}; the token {caller.name} has the {caller.role.value} role",
            )
        return caller

    check.__name__ = f"needs_{right.value}"
    return check


can_read = _checker(Right.READ)
can_operate = _checker(Right.OPERATE)
can_approve = _checker(Right.APPROVE)
can_agent = _checker(Right.AGENT)

CHECKS = {can_read: Right.READ, can_operate: Right.OPERATE, can_approve: Right.APPROVE, can_agent: Right.AGENT}

READ = Security(can_read)
"""Route dependency: viewer, operator, approver or admin."""
OPERATE = Security(can_operate)
"""Route dependency: operator or admin."""
APPROVE = Security(can_approve)
"""Route dependency: approver or admin."""
AGENT = Security(can_agent)
"""Route dependency: an agent token (then :meth:`Caller.act_as`) or admin."""


def _link_caller(request: Request, token: str, item_id: str) -> Caller:
    """The addressee of a one-time inbox link, if it may still answer ``item_id`` (401 naming why not)."""
    links: LinkStore = request.app.state.links
    try:
        record = links.check(token, item_id)
    except LinkRefused as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=CHALLENGE) from exc
    return Caller(record.to, Role.APPROVER, link=token)


def _inbox_checker(right: Right) -> Callable[..., Awaitable[Caller]]:
    """Like :func:`_checker`, and also letting through a one-time link token for the route's ``item_id``."""
    general = _checker(right)

    async def check(
        request: Request,
        item_id: str,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        session: Annotated[str | None, Security(cookie)],
    ) -> Caller:
        if credentials and credentials.credentials.startswith(LINK_PREFIX):
            return _link_caller(request, credentials.credentials, item_id)
        return await general(request, credentials, session)

    check.__name__ = f"needs_{right.value}_or_link"
    return check


def use_link(request: Request, caller: Caller, item_id: str) -> None:
    """Spend the caller's one-time link on ``item_id`` (nothing for a token); a second use is refused.

    Raises:
        HTTPException: 401 when the link was used meanwhile (or expired).
    """
    if caller.link is None:
        return
    links: LinkStore = request.app.state.links
    try:
        links.use(caller.link, item_id)
    except LinkRefused as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=CHALLENGE) from exc


can_read_item = _inbox_checker(Right.READ)
can_answer_item = _inbox_checker(Right.APPROVE)
CHECKS[can_read_item] = Right.READ
CHECKS[can_answer_item] = Right.APPROVE

Reader = Annotated[Caller, READ]
ItemReader = Annotated[Caller, Security(can_read_item)]
"""A reader of one inbox item: a viewer token, or that item's one-time link."""
ItemAnswerer = Annotated[Caller, Security(can_answer_item)]
"""Who may answer one inbox item: an approver token, or that item's one-time link (spend it with use_link)."""
Operator = Annotated[Caller, OPERATE]
Approver = Annotated[Caller, APPROVE]
AgentCaller = Annotated[Caller, AGENT]


def websocket_caller(websocket: WebSocket) -> Caller:
    """The caller of a WebSocket handshake: a read token as ``Authorization: Bearer``, ``?token=`` or the cookie.

    Raises:
        HTTPException: 401 without a valid token; 403 from a foreign ``Origin`` or without the read right.
    """
    settings: Settings = websocket.app.state.settings
    if not allowed_origin(settings, websocket.headers):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Origin {websocket.headers.get('origin')} is not allowed; add it to PLANEXE_HTTP_CORS_ORIGINS",
        )
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else None
    token = token or websocket.query_params.get("token") or websocket.cookies.get(COOKIE)
    caller = identify(websocket.app.state.tokens, token)
    if Right.READ not in GRANTS[caller.role]:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the stream needs the viewer role; {caller.name} has "
                            f"the {caller.role.value} role")  # fmt: skip
    return caller


async def admitted(websocket: WebSocket) -> bool:
    """Check a WebSocket handshake (:func:`websocket_caller`); refuse it with 401/403 and a JSON ``detail``."""
    try:
        websocket_caller(websocket)
    except HTTPException as exc:
        refusal = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        await websocket.send_denial_response(refusal)
        return False
    return True


def login(request: Request, token: str) -> Response:
    """The dashboard link: keep a valid ``token`` in an HttpOnly, SameSite=Strict cookie and reload without it."""
    if _store(request).verify(token) is None:
        return PlainTextResponse(
            "This link's token is unknown or revoked. Open the link `planexe-ax up` prints, or ask for a token "
            "(planexe-ax auth token).",
            status_code=status.HTTP_401_UNAUTHORIZED,
            headers=CHALLENGE,
        )
    response = RedirectResponse("./", status_code=status.HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def describe_roles(router: APIRouter) -> None:
    """Say in the OpenAPI description of each of ``router``'s routes which role it needs (once)."""
    for route in router.routes:
        if not isinstance(route, APIRoute) or "role" in route.description.rpartition("\n")[2]:
            continue
        needs = [CHECKS[d.call] for d in _dependencies(route.dependant) if d.call in CHECKS]
        if needs:
            agent = ", as its own agent id" if needs[0] == Right.AGENT else ""
            route.description = f"{route.description}\n\nNeeds {who_may(needs[0])}{agent}.".strip()


def _dependencies(dependant: Dependant) -> list[Dependant]:
    return [d for sub in dependant.dependencies for d in (sub, *_dependencies(sub))]
