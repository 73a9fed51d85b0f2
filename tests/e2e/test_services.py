"""One process per service, as docker-compose runs them, driven by the `exec` commands."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from planexe_ax.cli import example_plan_path
from planexe_ax.config import Settings
from tests.helpers.checks import assert_completed
from tests.helpers.processes import Service, cli, serving, terminate_all

pytestmark = [pytest.mark.slow, pytest.mark.nats]


@pytest.fixture
def env(nats_url: str, settings: Settings, postgres_url: str) -> dict[str, str]:
    return {
        "PLANEXE_NATS_URL": nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "PLANEXE_NAMESPACE": settings.namespace,
        "PLANEXE_DATA_DIR": str(settings.data_dir),
        "PLANEXE_DATABASE_URL": postgres_url,
        "PLANEXE_ACK_WAIT_S": "5",
    }


@pytest.fixture
def services(env: dict[str, str], tmp_path: Path) -> Iterator[list[Service]]:
    with serving(["projector", "coordinator", "agents", "agents"], env, tmp_path) as started:
        yield started


def test_exec_start_wait_status_against_separate_processes(env: dict[str, str], services: list[Service]) -> None:
    """The whole round trip; and, against the same processes, `exec status` of an unknown execution is exit 2."""
    started = cli(["exec", "start", str(example_plan_path())], env)
    assert started.returncode == 0, started.stderr
    execution_id = started.stdout.strip()
    assert len(execution_id) == 32

    waited = cli(["exec", "wait", execution_id, "--timeout", "90"], env)
    assert waited.returncode == 0, waited.stderr

    status = cli(["exec", "status", execution_id, "--json"], env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["execution_id"] == execution_id
    assert_completed(report)
    agents = {s["agent_id"] for t in report["tasks"] for s in t["subtasks"]}
    assert {agent.split("-")[0] for agent in agents} == {"researcher", "outreach", "writer"}

    unknown = cli(["exec", "status", "nope"], env)
    assert unknown.returncode == 2
    assert "no execution nope" in unknown.stderr

    for service, code in terminate_all(services).items():
        assert code == 0, service.log.read_text()[-2000:]


def test_exec_wait_times_out_with_exit_3(env: dict[str, str]) -> None:
    # No coordinator runs: the start command waits on the bus, and the execution never ends.
    started = cli(["exec", "start", str(example_plan_path())], env)
    assert started.returncode == 0, started.stderr
    waited = cli(["exec", "wait", started.stdout.strip(), "--timeout", "0.5"], env)
    assert waited.returncode == 3


def test_exec_wait_on_an_unknown_execution_exits_2(env: dict[str, str]) -> None:
    waited = cli(["exec", "wait", "no_such_execution", "--timeout", "60"], env)
    assert waited.returncode == 2
    assert (
        waited.stderr == "planexe-ax: no execution no_such_execution on the bus (check the id, or PLANEXE_NAMESPACE)\n"
    )


def test_exec_without_nats_says_how_to_get_one(tmp_path: Path) -> None:
    result = cli(["exec", "start", str(example_plan_path())], {"PLANEXE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "set PLANEXE_NATS_URL or start `planexe-ax up`" in result.stderr
