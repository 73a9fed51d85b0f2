"""Who may call the gateway: tokens and roles, agent tokens bound to their id, the WebSocket handshake, the body
limit and the security headers, against a real stack."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from planexe_ax.config import Settings
from planexe_ax.ws_gateway.security import COOKIE
from planexe_ax.ws_gateway.tokens import Role, token_store
from tests.helpers.gateway import Stack, example_document, running_stack, waiting_plan

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

MIB = 1024 * 1024


async def test_anonymous_calls_get_401_except_health_and_the_page(stack: Stack) -> None:
    async with stack.client_as(None) as anonymous:
        calls = [("GET", "/api/executions"), ("POST", "/api/plans"), ("GET", "/api/inbox"), ("GET", "/metrics"),
                 ("GET", "/api/agents/a1/work"), ("DELETE", "/api/plans/x")]  # fmt: skip
        for method, path in calls:
            response = await anonymous.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "planexe-ax auth token" in response.json()["detail"]
        for path in ("/healthz", "/readyz", "/", "/static/app.js", "/openapi.json"):
            assert (await anonymous.get(path)).status_code == 200, path
        bad = await anonymous.get("/api/executions", headers={"Authorization": "Bearer pxa_forged"})
        assert (bad.status_code, bad.json()["detail"]) == (401, "unknown or revoked token")
    described = (await stack.client.get("/openapi.json")).json()
    assert described["paths"]["/api/plans"]["post"]["description"].endswith("Needs the operator role (or admin).")
    schemes = described["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }


async def test_every_route_but_health_refuses_anonymous_calls(stack: Stack) -> None:
    """Guards routes added later: each one in the OpenAPI description needs a token."""
    public = {"/healthz", "/readyz"}
    paths = (await stack.client.get("/openapi.json")).json()["paths"]
    assert len(paths) > 15
    async with stack.client_as(None) as anonymous:
        for path, operations in paths.items():
            for method, operation in operations.items():
                url = re.sub(r"\{[^}]+\}", "x1", path)
                response = await anonymous.request(method.upper(), url)
                expected = 200 if path in public else 401
                assert response.status_code == expected, (method, path, response.text)
                assert (path in public) == ("security" not in operation), (method, path)


async def test_each_role_gets_its_rights_and_403_names_the_role_needed(stack: Stack) -> None:
    async with (
        stack.client_as(stack.issue(Role.VIEWER, "vera")) as viewer,
        stack.client_as(stack.issue(Role.OPERATOR, "otto")) as operator,
        stack.client_as(stack.issue(Role.AGENT, "larry", agent_id="larry-1")) as agent,
    ):
        assert (await viewer.get("/api/executions")).status_code == 200
        refused = await viewer.post("/api/plans", json=example_document())
        assert refused.status_code == 403
        assert (
            refused.json()["detail"]
            == "this call needs the operator role (or admin); the token vera has the viewer role"
        )
        assert "approver" in (await operator.post("/api/inbox/i1", json={"action": "approve"})).json()["detail"]
        refused = await agent.get("/api/executions")
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("this call needs the viewer role (or operator, approver, admin)")
        assert (await viewer.get("/api/agents/larry-1/work")).status_code == 403

        uploaded = await operator.post("/api/plans", json=waiting_plan())  # open until a person answers
        assert uploaded.status_code in (200, 201), uploaded.text
        started = await operator.post("/api/executions", json={"plan_id": "waiting"})
        assert started.status_code == 201, started.text
        execution_id = started.json()["execution_id"]
        assert (await viewer.patch(f"/api/executions/{execution_id}", json={"status": "CANCELLED"})).status_code == 403
        body = {"status": "CANCELLED", "issued_by": "mallory"}
        cancelled = await operator.patch(f"/api/executions/{execution_id}", json=body)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["reason"] == "cancelled by otto", "who did it is the token's name"


async def test_an_agent_token_acts_only_as_its_own_agent(stack: Stack) -> None:
    own = {"agent_id": "larry-1", "name": "Larry", "capabilities": [{"action": "http_only_work"}]}
    other = {**own, "agent_id": "mallory-1"}
    async with stack.client_as(stack.issue(Role.AGENT, "larry", agent_id="larry-1")) as larry:
        assert (await larry.post("/api/agents/register", json=own)).status_code == 201
        refused = await larry.post("/api/agents/register", json=other)
        assert refused.status_code == 403
        assert refused.json()["detail"] == "the token larry acts as agent larry-1 only, not mallory-1"
        assert (await larry.get("/api/agents/larry-1/work")).status_code == 204
        assert (await larry.get("/api/agents/mallory-1/work")).status_code == 403
        report = {"agent_id": "mallory-1", "event_type": "started", "subtask_id": "s1", "attempt": 1}
        assert (await larry.post("/api/executions/e1/events", json=report)).status_code == 403
    assert (await stack.client.get("/api/agents/mallory-1")).status_code == 404, "nothing registered as mallory"


async def test_a_revoked_token_gets_401_at_the_next_request(stack: Stack) -> None:
    async with stack.client_as(stack.issue(Role.VIEWER, "temp")) as temp:
        assert (await temp.get("/api/plans")).status_code == 200
        assert token_store(stack.settings).revoke("temp")
        assert (await temp.get("/api/plans")).status_code == 401


async def test_the_dashboard_link_logs_a_browser_in_with_a_strict_cookie(stack: Stack) -> None:
    async with stack.client_as(None) as browser:
        landed = await browser.get("/", params={"token": stack.token})
        assert (landed.status_code, landed.headers["location"]) == (303, "./")
        assert landed.headers["cache-control"] == "no-store"
        cookie = landed.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={stack.token};")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert (await browser.get("/api/plans")).status_code == 200, "the cookie authenticates"
        foreign = {"Origin": "http://evil.example"}
        refused = await browser.post("/api/plans", json=example_document(), headers=foreign)
        assert (refused.status_code, refused.json()["detail"]) == (
            403,
            "cross-site request refused (Origin not allowed)",
        )
        assert (await browser.get("/", params={"token": "pxa_wrong"})).status_code == 401


async def test_the_stream_needs_a_token_and_a_known_origin(stack: Stack) -> None:
    url = f"{stack.ws_url}/api/executions/none/stream"
    with pytest.raises(InvalidStatus) as anonymous:
        async with connect(url):
            pass
    assert anonymous.value.response.status_code == 401
    assert json.loads(anonymous.value.response.body or b"{}")["detail"].startswith("not authenticated")
    with pytest.raises(InvalidStatus) as foreign:
        async with connect(f"{url}?token={stack.token}", origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert foreign.value.response.status_code == 403
    agent = stack.issue(Role.AGENT, "larry", agent_id="larry-1")
    with pytest.raises(InvalidStatus) as wrong_role:
        async with connect(url, additional_headers={"Authorization": f"Bearer {agent}"}):
            pass
    assert wrong_role.value.response.status_code == 403
    own_origin = stack.url  # the gateway's own address always counts
    async with connect(url, additional_headers={"Authorization": f"Bearer {stack.token}"}, origin=own_origin) as ws:  # type: ignore[arg-type]
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert (frame["kind"], frame["status"]) == ("error", 404), "admitted, then told the execution is unknown"


async def drain(ws: ClientConnection) -> None:
    """Read frames until the connection closes."""
    while True:
        await ws.recv()


async def test_a_websocket_message_over_64_kib_closes_the_socket(stack: Stack) -> None:
    assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
    started = await stack.client.post("/api/executions", json={"plan_id": example_document()["plan_id"]})
    url = f"{stack.ws_url}/api/executions/{started.json()['execution_id']}/stream?token={stack.token}"
    async with connect(url) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["kind"] == "snapshot"
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(drain(ws), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_a_50_mib_body_is_answered_413_before_it_is_sent(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST /api/plans HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {stack.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {50 * MIB}\r\n\r\n{{")  # fmt: skip
    try:
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        rest = await asyncio.wait_for(reader.read(), 10)
        assert b"PLANEXE_HTTP_MAX_BODY" in rest
    finally:
        writer.close()


async def test_a_chunked_body_over_the_limit_is_cut_off_with_413(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST /api/plans HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {stack.token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    writer.write(head.encode())
    chunk = b"%x\r\n%s\r\n" % (MIB, b" " * MIB)
    answered = asyncio.create_task(reader.readline())
    try:
        for _ in range(stack.settings.http_max_body // MIB + 2):
            if answered.done():
                break
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # the server stopped reading once it had answered
    try:
        status_line = await asyncio.wait_for(answered, 10)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
    finally:
        writer.close()


async def test_answers_carry_security_headers(stack: Stack) -> None:
    for path in ("/", "/api/plans", "/static/app.js"):
        headers = (await stack.client.get(path)).headers
        assert "script-src 'self';" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    page = (await stack.client.get("/")).text
    for inline in ("<script>", " style=", " onclick="):
        assert inline not in page, "no inline script or style"


async def test_listed_origins_may_call_the_api_and_open_the_stream(
    settings: Settings, nats_url: str, postgres_url: str
) -> None:
    ops = "https://ops.example"
    listed = settings.model_copy(update={"http_cors_origins": [ops]})
    async with running_stack(listed, nats_url, postgres_url) as stack:
        preflight = await stack.client.options(
            "/api/plans",
            headers={
                "Origin": ops,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ops
        answered = await stack.client.get("/api/plans", headers={"Origin": ops})
        assert answered.headers["access-control-allow-origin"] == ops
        other = await stack.client.get("/api/plans", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        url = f"{stack.ws_url}/api/executions/none/stream?token={stack.token}"
        async with connect(url, origin=ops) as ws:  # type: ignore[arg-type]
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["status"] == 404, "admitted"
