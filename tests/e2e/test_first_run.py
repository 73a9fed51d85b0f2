"""A first run from the page: a fresh `up` has the shipped examples in its catalog, `plan import --save` adds to
it, and the API docs are served."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest

from planexe_ax.cli.catalog import example_plan_paths
from tests.helpers.eventually import eventually
from tests.helpers.processes import Service, cli

pytestmark = [pytest.mark.slow, pytest.mark.nats]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def small_plan(tmp_path: Path) -> Path:
    sub = {"subtask_id": "s1", "action": "draft_document", "params": {"template": "Welcome note"}}
    task = {"task_id": "t1", "title": "Write", "subtasks": [sub]}
    plan = {"plan_id": "mine", "goal": "try it", "phases": [{"phase_id": "p", "name": "P", "tasks": [task]}]}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(plan))
    return path


async def test_a_fresh_up_has_the_examples_and_takes_saved_plans(tmp_path: Path) -> None:
    port = free_port()
    env = {"PLANEXE_DATA_DIR": str(tmp_path / "data"), "PLANEXE_HTTP_PORT": str(port)}
    examples = {json.loads(p.read_text())["plan_id"] for p in example_plan_paths()}
    assert len(examples) >= 2
    up = Service(["up"], env, tmp_path / "up.log")
    try:
        up.wait_for("Ctrl-C to stop", timeout=60)
        token = (tmp_path / "data" / "http-admin.token").read_text().strip()  # the data folder's own identity
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=headers) as client:

            async def catalog_has(expected: set[str]) -> bool:
                response = await client.get("/api/plans")
                return expected <= {item["plan_id"] for item in response.json()["items"]}

            await eventually(lambda: catalog_has(examples))

            mine = str(small_plan(tmp_path))
            saved, refused = await asyncio.gather(  # the second has no data folder, so no server: side by side
                asyncio.to_thread(cli, ["plan", "import", mine, "--save"], env),
                asyncio.to_thread(cli, ["plan", "import", mine, "--save"], {**env, "PLANEXE_DATA_DIR": "/nx"}),
            )
            assert saved.returncode == 0, saved.stderr
            assert "saved: mine is in the catalog of nats://" in saved.stderr
            await eventually(lambda: catalog_has({*examples, "mine"}))

            assert refused.returncode == 2
            assert "start `planexe-ax up`" in refused.stderr

            docs = await client.get("/docs")
            assert docs.status_code == 200
            assert "/static/vendor/swagger-ui-bundle.js" in docs.text
    finally:
        assert up.terminate() == 0, up.log.read_text()[-2000:]
