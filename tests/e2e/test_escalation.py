"""A failure goes to a person, from the command line: retry with new params, complete, skip and fail.

Real nats-server, PostgreSQL, built-in agents and projector; the coordinator is stopped and started again
between answers, and carries on from the stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from planexe_ax.bus import Bus, Event, ExecutionStatus, SubtaskState, TaskStatus, connect
from planexe_ax.bus.client import follow, start_execution
from planexe_ax.cli import example_plan_path
from planexe_ax.cli.services import Services, start_services
from planexe_ax.config import Settings
from planexe_ax.coordinator import Coordinator
from tests.helpers.acli import acli
from tests.helpers.escalation import ANSWERED, FIXED_PARAMS, escalating_plan, watching_inbox

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres]


@pytest.fixture
def configured(nats_url: str, settings: Settings, postgres_url: str) -> Settings:
    return settings.model_copy(update={"nats_url": nats_url, "database_url": postgres_url})


@pytest.fixture
async def services(configured: Settings, nats_url: str) -> AsyncIterator[Services]:
    """The projector and the built-in agents; the test runs the coordinator itself."""
    started = await start_services(configured, nats_url, ("projector", "agents"))
    stop = asyncio.Event()
    runner = asyncio.create_task(started.run(stop))
    yield started
    stop.set()
    await asyncio.wait_for(runner, 30)


class RestartableCoordinator:
    """One coordinator at a time, on its own connection; ``restart`` stops it and rebuilds a new one."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings, self.url = settings, url
        self.generation = 0
        self.running: tuple[Bus, Coordinator, asyncio.Event, asyncio.Task[None]] | None = None

    async def start(self) -> Coordinator:
        self.generation += 1
        bus = await connect(self.settings, self.url, f"coordinator-{self.generation}", role="coordinator")
        coordinator, stop = Coordinator(bus), asyncio.Event()
        await coordinator.start()
        self.running = (bus, coordinator, stop, asyncio.create_task(coordinator.run(stop)))
        return coordinator

    async def stop(self) -> None:
        if self.running is None:
            return
        bus, _, stop, task = self.running
        stop.set()
        await asyncio.wait_for(task, 30)
        await bus.close()
        self.running = None

    async def restart(self) -> Coordinator:
        await self.stop()
        return await self.start()


@pytest.fixture
async def coordinator(configured: Settings, nats_url: str) -> AsyncIterator[RestartableCoordinator]:
    runner = RestartableCoordinator(configured, nats_url)
    await runner.start()
    yield runner
    await runner.stop()


@pytest.fixture
def env(configured: Settings) -> dict[str, str]:
    assert configured.nats_url
    assert configured.database_url
    return {
        "PLANEXE_NATS_URL": configured.nats_url,
        "PLANEXE_NATS_AUTH_DIR": str(configured.nats_auth_dir),
        "PLANEXE_NAMESPACE": configured.namespace,
        "PLANEXE_DATABASE_URL": configured.database_url,
    }


async def status_of(env: dict[str, str], execution_id: str) -> dict[str, Any]:
    shown = await acli(["exec", "status", execution_id, "--json"], env)
    assert shown.returncode == 0, shown.stderr
    report: dict[str, Any] = json.loads(shown.stdout)
    return report


def statuses(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t["task_id"]: (t["status"], t["subtasks"][0]["status"]) for t in report["tasks"]}


async def test_each_answer_to_an_escalation_from_the_command_line_survives_restarts(
    bus: Bus, services: Services, coordinator: RestartableCoordinator, env: dict[str, str], configured: Settings
) -> None:
    assert services.projector is not None
    execution_id = await start_execution(bus, escalating_plan())
    after_done = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, SubtaskState) and event.subtask_id == "s_after" and event.status == TaskStatus.COMPLETED:
            after_done.set()

    outcome = asyncio.create_task(follow(bus, execution_id, on_event, timeout_s=120))
    async with watching_inbox(bus, execution_id) as inbox:
        items = await inbox.wait_for(4)
        assert sorted(items) == sorted(ANSWERED)
        await services.projector.wait_for_seq(max(inbox.seqs.values()), timeout=30)
        assert "missing_retry.json is not in the output folder" in items["t_retry"].reason
        assert items["t_retry"].actions == ["retry", "complete", "skip", "fail"]
        report, listed = await asyncio.gather(
            status_of(env, execution_id), acli(["inbox", "list", "--json", "--execution", execution_id], env)
        )
        assert report["status"] == "BLOCKED"
        assert {statuses(report)[t][1] for t in ANSWERED} == {"AWAITING_HUMAN"}
        assert sorted(i["kind"] for i in json.loads(listed.stdout)) == ["escalation"] * 4

        restarted = await coordinator.restart()
        assert execution_id in restarted.engine.runs
        assert len(restarted.engine.runs[execution_id].inbox) == 4, "the escalations survive a restart"

        # three answers the command refuses before it sends anything: side by side
        refused, bad, misfit = await asyncio.gather(
            acli(["inbox", "skip", items["t_retry"].item_id, "--params", "{}"], env),
            acli(["inbox", "retry", items["t_retry"].item_id, "--params", "[1]"], env),
            acli(["inbox", "retry", items["t_retry"].item_id, "--params", '{"operation": "explode"}'], env),
        )
        assert refused.returncode == 2
        assert "unrecognized arguments: --params" in refused.stderr
        assert (bad.returncode, bad.stderr.strip()) == (2, "planexe-ax: --params must be a JSON object")
        assert misfit.returncode == 2
        assert "params do not fit: subtask s_retry: action manage_csv: params.operation:" in misfit.stderr

        retried = await acli(["inbox", "retry", items["t_retry"].item_id, "--params", json.dumps(FIXED_PARAMS),
                              "--by", "ann", "--comment", "write it instead"], env)  # fmt: skip
        assert retried.returncode == 0, retried.stderr
        await coordinator.restart()
        done, skipped = await asyncio.gather(  # answers to two items: in either order
            acli(["inbox", "complete", items["t_complete"].item_id, "--output", '{"rows": 12}', "--by", "bob"], env),
            acli(["inbox", "skip", items["t_skip"].item_id, "--by", "ann"], env),
        )
        assert done.returncode == 0, done.stderr
        assert skipped.returncode == 0, skipped.stderr
        await asyncio.wait_for(after_done.wait(), 30)  # what waited for the skipped task goes on
        await coordinator.restart()
        failed = await acli(["inbox", "fail", items["t_fail"].item_id, "--by", "ann", "--comment", "no data"], env)
        assert failed.returncode == 0, failed.stderr

    end = await outcome
    assert end.status == ExecutionStatus.FAILED
    assert "s_fail failed by ann: no data" in end.reason
    await services.projector.wait_for_seq(end.stream_seq, timeout=30)
    report, history = await asyncio.gather(
        status_of(env, execution_id), acli(["inbox", "list", "--all", "--json", "--execution", execution_id], env)
    )
    assert statuses(report) == {
        "t_retry": ("COMPLETED", "COMPLETED"),
        "t_complete": ("COMPLETED", "COMPLETED"),
        "t_skip": ("SKIPPED", "SKIPPED"),
        "t_fail": ("FAILED", "FAILED"),
        "t_after": ("COMPLETED", "COMPLETED"),
    }
    subs = {t["task_id"]: t["subtasks"][0] for t in report["tasks"]}
    assert subs["t_complete"]["output"] == {"rows": 12}
    assert subs["t_complete"]["agent_id"] == "person-bob"
    assert (configured.outputs_dir / execution_id / "RETRIED.csv").read_text().startswith("name")
    closed = {i["task_id"]: i for i in json.loads(history.stdout)}
    assert {t: (i["resolution"], i["resolved_by"]) for t, i in closed.items()} == {
        "t_retry": ("retried", "ann"),
        "t_complete": ("completed", "bob"),
        "t_skip": ("skipped", "ann"),
        "t_fail": ("failed", "ann"),
    }
    assert closed["t_retry"]["resolution_params"] == FIXED_PARAMS
    assert closed["t_skip"]["resolution_params"] is None


async def test_a_run_that_waits_for_a_person_says_how_to_answer_and_goes_on_when_answered(tmp_path: Path) -> None:
    plan = json.loads(example_plan_path().read_text())
    broken = plan["phases"][0]["tasks"][0]["subtasks"][1]
    broken["params"] = {"operation": "import_json", "source": "missing.json", "file_path": "PROSPECTS.csv"}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    env = {"PLANEXE_DATA_DIR": str(tmp_path / "data"), "PLANEXE_LAG_SCALE_S": "0.01"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLANEXE_")} | env
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "planexe_ax", "run", str(path), "--json", "--timeout", "120",
        env=clean, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert run.stderr is not None
    try:
        line = ""
        async with asyncio.timeout(60):
            while "waiting for a person" not in line:
                line = (await run.stderr.readline()).decode()
                assert line, "the run ended without saying it waits for a person"
        assert "escalation" in line
        assert "missing.json is not in the output folder" in line
        found = re.search(r"`planexe-ax inbox retry\|complete\|skip\|fail (\S+)`", line)
        assert found, line
        fixed = json.dumps({"operation": "import_json", "file_path": "PROSPECTS.csv"})
        # The run's own embedded server trusts the identities in its data folder, not the session server's.
        own = clean | {"PLANEXE_NATS_AUTH_DIR": str(tmp_path / "data" / "nats-auth")}
        answered = await acli(["inbox", "retry", found.group(1), "--params", fixed, "--by", "ann"], own)
        assert answered.returncode == 0, answered.stderr
        out, _ = await asyncio.wait_for(run.communicate(), 120)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    assert run.returncode == 0
    report = json.loads(out)
    assert report["status"] == "COMPLETED"
    assert report["tasks"][0]["subtasks"][1]["status"] == "COMPLETED"
