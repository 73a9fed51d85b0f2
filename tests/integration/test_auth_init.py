"""`planexe-ax auth init` makes what an external nats-server needs; `auth agent` signs agents for it."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from planexe_ax.bus import EmbeddedNats, Identities, connect
from planexe_ax.bus.client import start_execution
from planexe_ax.cli import main
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError
from tests.helpers.factories import make_plan

pytestmark = pytest.mark.nats


@pytest.fixture
async def external(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    """A folder from `auth init`, and a nats-server run with nothing but the configuration it wrote."""
    folder = tmp_path / "nats-auth"
    assert await asyncio.to_thread(main, ["auth", "init", "--out", str(folder)]) == 0
    server = EmbeddedNats(tmp_path / "store", auth_dir=folder)  # runs `nats-server -c <folder>/nats-server.conf`
    url = await server.start()
    yield folder, url
    await server.stop()


def test_auth_init_writes_secrets_readable_by_the_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "nats-auth"
    assert main(["auth", "init", "--out", str(folder)]) == 0
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"operator.jwt", "account.nk", "nats-server.conf", "coordinator.creds"}
    secrets = [p for p in files if p.suffix != ".pub"]  # audit.pub is the audit key's public half, for verifiers
    assert {p.name for p in files} - {p.name for p in secrets} == {"audit.pub"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secrets)
    assert (folder / "audit.pub").read_text().startswith("N")  # an nkey public key, never the seed ("S…")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "operator: eyJ" in (folder / "nats-server.conf").read_text()  # inline: the file works anywhere
    capsys.readouterr()
    assert main(["auth", "init", "--out", str(folder)]) == 2
    assert "already holds NATS identities" in capsys.readouterr().err


def test_auth_agent_names_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "a.creds")
    assert main(["auth", "agent", "a.b", "--capability", "echo", "--out", out]) == 2
    assert "agent id 'a.b'" in capsys.readouterr().err


async def test_services_and_agents_connect_to_an_external_server_with_their_files(
    external: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = external
    monkeypatch.delenv("PLANEXE_NATS_AUTH_DIR")
    nowhere = tmp_path / "no-data"
    with pytest.raises(ConfigError, match="refused"):
        await connect(Settings(data_dir=nowhere), url, "anonymous", role="operator")
    coordinator = Settings(data_dir=nowhere, nats_creds=folder / "users" / "coordinator.creds")
    bus = await connect(coordinator, url, "coordinator", role="coordinator")  # provisions the topology
    await bus.close()
    operator = Settings(data_dir=nowhere, nats_creds=folder / "users" / "operator.creds")
    bus = await connect(operator, url, "cli", role="operator")
    await start_execution(bus, make_plan(["a"]))
    await bus.close()
    creds = tmp_path / "agent.creds"
    signed = ["auth", "agent", "agent-1", "--capability", "echo", "--out", str(creds)]
    monkeypatch.setenv("PLANEXE_NATS_AUTH_DIR", str(folder))
    assert await asyncio.to_thread(main, signed) == 0
    assert Identities.load(folder).account.public in (folder / "nats-server.conf").read_text()
    agent = await connect(Settings(data_dir=nowhere, nats_creds=creds), url, "agent-1", provision=False, role=None)
    await agent.close()
