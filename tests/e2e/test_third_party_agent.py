"""An agent written with plain nats-py (examples/third_party_agent.py) and a .creds from `auth agent` runs a plan."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from planexe_ax.bus import Bus, ExecutionStatus, Plan, SubtaskResult
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.cli.services import start_services
from planexe_ax.config import Settings
from tests.helpers.agents import card, events
from tests.helpers.eventually import eventually
from tests.helpers.processes import cli

pytestmark = [pytest.mark.slow, pytest.mark.nats]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_agent.py"
AGENT_ID = "shouter-1"


def shout_plan() -> Plan:
    subtask = {"subtask_id": "shout_1", "action": "shout", "params": {"text": "hello from outside"}}
    task = {"task_id": "shout", "title": "Shout", "subtasks": [subtask]}
    return Plan.model_validate(
        {"plan_id": "shout", "goal": "shout", "phases": [{"phase_id": "p", "name": "P", "tasks": [task]}]}
    )


@pytest.fixture
def agent_process(nats_url: str, settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {"PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir), "PLANEXE_NAMESPACE": settings.namespace}
    creds = tmp_path / "shouter.creds"
    signed = cli(["auth", "agent", AGENT_ID, "--capability", "shout", "--out", str(creds)], env)
    assert signed.returncode == 0, signed.stderr
    assert creds.stat().st_mode & 0o777 == 0o600
    # Only what a third party has: the URL, the .creds, the namespace and its id; not our code on its path.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLANEXE_") and k != "PYTHONPATH"}
    clean |= {"PLANEXE_NATS_URL": nats_url, "PLANEXE_NATS_CREDS": str(creds), "AGENT_ID": AGENT_ID}
    clean |= {"PLANEXE_NAMESPACE": settings.namespace}
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(EXAMPLE)], env=clean, stderr=log)
    yield proc
    proc.terminate()
    assert proc.wait(20) == 0, (tmp_path / "agent.log").read_text()
    log.close()


@pytest.fixture
async def coordinator(nats_url: str, settings: Settings) -> AsyncIterator[None]:
    services, stop = await start_services(settings, nats_url, ("coordinator",)), asyncio.Event()
    running = asyncio.create_task(services.run(stop))
    yield
    stop.set()
    await asyncio.wait_for(running, 30)


async def test_a_plain_nats_py_agent_with_a_creds_file_completes_a_plan(
    bus: Bus, coordinator: None, agent_process: subprocess.Popen[bytes]
) -> None:
    await eventually(lambda: card(bus, AGENT_ID), timeout=20)
    execution_id = await start_execution(bus, shout_plan())
    outcome = await follow(bus, execution_id, timeout_s=60)
    assert outcome.status == ExecutionStatus.COMPLETED
    results = [e for e in await events(bus) if isinstance(e, SubtaskResult)]
    assert [(r.agent_id, r.output) for r in results] == [(AGENT_ID, {"text": "HELLO FROM OUTSIDE"})]
