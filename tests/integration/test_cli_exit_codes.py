"""Exit codes as the README says: bad input is exit 2 with one line, at once, whatever the command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planexe_ax.cli import example_plan_path, main
from planexe_ax.config import Settings

pytestmark = [pytest.mark.nats]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def cli(args: list[str], env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "planexe_ax", *args], capture_output=True, text=True, timeout=timeout_s, env=merged
    )


@pytest.mark.parametrize("command", [["up"], ["serve", "gateway"]])
def test_a_taken_port_is_exit_2_with_one_line(command: list[str], taken_port: int, tmp_path: Path) -> None:
    proc = cli([*command, "--port", str(taken_port)], {"PLANEXE_DATA_DIR": str(tmp_path / "data")})

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"127.0.0.1:{taken_port} is taken" in proc.stderr
    assert "--port" in proc.stderr


def test_exec_wait_on_an_unknown_id_is_exit_2_at_once(
    nats_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLANEXE_NATS_URL", nats_url)
    monkeypatch.setenv("PLANEXE_NATS_AUTH_DIR", str(settings.nats_auth_dir))
    monkeypatch.setenv("PLANEXE_NAMESPACE", settings.namespace)
    monkeypatch.setenv("PLANEXE_DATA_DIR", str(settings.data_dir))
    started = time.monotonic()

    code = main(["exec", "wait", "nosuchexecution", "--timeout", "60"])

    assert code == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err == "planexe-ax: no execution nosuchexecution on the bus (check the id, or PLANEXE_NAMESPACE)\n"


def test_exec_start_refuses_params_that_do_not_fit_naming_each(
    nats_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PLANEXE_NATS_URL", nats_url)
    monkeypatch.setenv("PLANEXE_NATS_AUTH_DIR", str(settings.nats_auth_dir))
    monkeypatch.setenv("PLANEXE_NAMESPACE", settings.namespace)
    plan = json.loads(example_plan_path().read_text())
    plan["phases"][0]["tasks"][0]["subtasks"][1]["params"]["operation"] = "juggle"
    plan["phases"][2]["tasks"][0]["subtasks"][1]["params"]["rate_structure"] = {"hourly_rate": -1}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))

    code = main(["exec", "start", str(path)])

    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no execution id: nothing was started
    lines = captured.err.splitlines()
    assert len(lines) == 2
    assert "subtask task_1_1_2: action manage_csv: params.operation:" in lines[0]
    assert "action build_quote: params.rate_structure.hourly_rate:" in lines[1]


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_exec_status_and_list_without_a_read_model_are_exit_2_with_one_line(folder: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    if folder == "empty":
        data.mkdir()
        (data / "readmodel.sqlite3").write_bytes(b"")  # a database file no projector ever wrote
    for command in (["exec", "status", "abc"], ["exec", "list"]):
        proc = cli(command, {"PLANEXE_DATA_DIR": str(data)})

        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"planexe-ax: no read model to read at {data / 'readmodel.sqlite3'}")
        assert "start `planexe-ax up` in this folder" in proc.stderr


def test_exec_list_refuses_a_status_that_is_none(tmp_path: Path) -> None:
    proc = cli(["exec", "list", "--status", "done"], {"PLANEXE_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.startswith("planexe-ax: --status DONE is not a status; use one of CREATED, ")
