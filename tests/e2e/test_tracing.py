"""An execution is one trace across every service: four `serve` processes export to a real OTLP receiver.

The plan's one subtask fails and goes to a person, who answers "retry" with new params from the command
line; the retry completes. The execution is started over REST and followed by a browser's WebSocket.
"""

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from planexe_ax.bus.tracing import trace_id_of
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.tokens import Role, token_store
from tests.helpers.acli import acli
from tests.helpers.escalation import FIXED_PARAMS, broken
from tests.helpers.eventually import eventually
from tests.helpers.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.helpers.processes import Service, serving, terminate_all

pytestmark = [pytest.mark.slow, pytest.mark.nats]
SERVICES = ["coordinator", "projector", "agents", "gateway"]
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"
SPAN_NAME = re.compile(
    r"^(publish|process) ax\.(evt\.\{execution\}\.([a-z_]+(\.\{agent_id\})?|>)|cmd\.\{execution\}|task\.[a-z_]+)$"
    r"|^(start execution|attempt [a-z_]+|decide( on [a-z]+)?)$"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as received:
        yield received


@pytest.fixture
def env(nats_url: str, settings: Settings, postgres_url: str, receiver: Receiver) -> dict[str, str]:
    return {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": postgres_url,
        "PLANEXE_HTTP_PORT": str(free_port()),
        "PLANEXE_TRACE_URL": TRACE_URL,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


@pytest.fixture
def services(env: dict[str, str], tmp_path: Path) -> Iterator[list[Service]]:
    with serving(SERVICES, env, tmp_path) as started:
        yield started


def retry_plan() -> dict[str, Any]:
    task = {"task_id": "t_retry", "title": "Task to retry", "subtasks": [broken("retry")]}
    return {"plan_id": "traced", "goal": "one trace", "phases": [{"phase_id": "p", "name": "Work", "tasks": [task]}]}


async def run_with_a_retry(env: dict[str, str], client: httpx.AsyncClient, stream_url: str) -> str:
    """Start over REST, follow over a WebSocket, answer the escalation with `inbox retry`; the execution id."""
    assert (await client.post("/api/plans", json=retry_plan())).status_code in (200, 201)
    created = await client.post("/api/executions", json={"plan_id": "traced"})
    assert created.status_code == 201, created.text
    execution_id: str = created.json()["execution_id"]
    async with connect(stream_url.format(execution_id=execution_id)) as ws:

        async def escalated() -> str | None:
            listed = await acli(["inbox", "list", "--json", "--execution", execution_id], env)
            return next((item["item_id"] for item in json.loads(listed.stdout or "[]")), None)

        item_id = await eventually(escalated, timeout=60, every=0.5)
        answered = await acli(["inbox", "retry", item_id, "--params", json.dumps(FIXED_PARAMS), "--by", "ann"], env)
        assert answered.returncode == 0, answered.stderr
        while True:  # the browser sees the end: the gateway relayed every event
            frame = json.loads(await ws.recv())
            if frame.get("type") == "execution_state" and frame["data"]["status"] == "COMPLETED":
                break
    return execution_id


def tree(spans: list[ReceivedSpan]) -> str:
    """The spans as an indented tree (service, name), for failure messages and the record."""
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)

    def lines(parent: str, depth: int) -> list[str]:
        out: list[str] = []
        for span in children.get(parent, []):
            out.append(f"{'  ' * depth}{span.service}: {span.name}")
            out += lines(span.span_id, depth + 1)
        return out

    return "\n".join(lines("", 0))


async def test_an_execution_is_one_trace_across_the_services(
    env: dict[str, str], services: list[Service], receiver: Receiver, settings: Settings
) -> None:
    token = token_store(settings).issue("tester", Role.ADMIN)
    base = f"127.0.0.1:{env['PLANEXE_HTTP_PORT']}"
    headers = {"Authorization": f"Bearer {token}"}
    stream_url = f"ws://{base}/api/executions/{{execution_id}}/stream?token={token}"
    async with httpx.AsyncClient(base_url=f"http://{base}", headers=headers, timeout=30) as client:
        execution_id = await run_with_a_retry(env, client, stream_url)
        detail = (await client.get(f"/api/executions/{execution_id}")).json()
    trace_id = trace_id_of(execution_id)
    assert detail["trace_id"] == trace_id
    assert detail["trace_url"] == TRACE_URL.format(trace_id=trace_id)
    status = await acli(["exec", "status", execution_id, "--json"], env)
    assert json.loads(status.stdout)["trace_id"] == trace_id

    for service, code in terminate_all(services).items():  # SIGTERM: each flushes its spans before it exits
        assert code == 0, service.log.read_text()[-2000:]
    spans = receiver.spans
    ours = [s for s in spans if s.trace_id == trace_id]
    shown = tree(ours)
    (Path(services[0].log).parent / "trace.txt").write_text(shown)  # the record of one execution

    assert {f"planexe-ax-{name}" for name in SERVICES} | {"planexe-ax-cli"} <= {s.service for s in ours}, shown
    strays = [s for s in spans if s.attributes.get("planexe.execution_id") == execution_id and s.trace_id != trace_id]
    assert not strays, f"spans of the execution outside its trace: {strays[:3]}"
    ids = {s.span_id for s in ours}
    roots = [s for s in ours if not s.parent_id]
    assert [(r.service, r.name) for r in roots] == [("planexe-ax-gateway", "start execution")], shown
    orphans = [(s.service, s.name) for s in ours if s.parent_id and s.parent_id not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}\n{shown}"

    attempts = {s.attributes["planexe.attempt"]: s for s in ours if s.name == "attempt manage_csv"}
    assert sorted(attempts) == [1, 2], shown
    assert attempts[2].links == ((trace_id, attempts[1].span_id),), "the retry links to the attempt before it"
    assert attempts[1].status_code == 2, "the failed attempt is an error"  # STATUS_CODE_ERROR
    assert attempts[2].attributes["planexe.subtask_id"] == "s_retry"
    assert attempts[2].attributes["planexe.agent_id"].startswith("researcher")

    assert not [s.name for s in ours if not SPAN_NAME.match(s.name)], shown
    assert not [s.name for s in spans if execution_id in s.name], "an id in a span name"
    relay = [
        s
        for s in ours
        if s.service == "planexe-ax-gateway" and s.attributes.get("messaging.consumer.group.name") == "relay"
    ]
    assert relay, "the gateway's relay to the browser is traced"
    answer = [s for s in ours if s.service == "planexe-ax-cli" and s.name == "publish ax.cmd.{execution}"]
    assert answer, "the person's answer is in the trace"
    projected = [s for s in ours if s.service == "planexe-ax-projector"]
    assert projected, shown
    for process in projected:  # an event written alone, or several of the execution's written in one batch
        assert process.attributes["messaging.system"] == "nats"
        assert process.attributes["messaging.operation.type"] == "process"
        if process.name == "process ax.evt.{execution}.>":
            assert process.attributes["messaging.batch.message_count"] >= 2
        else:
            assert process.attributes["messaging.nats.stream.sequence"] > 0
    logged = (services[2].log).read_text()
    assert f'"trace_id": "{trace_id}"' in logged, "the agents' log lines name the trace"
