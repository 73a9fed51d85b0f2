"""API tokens: the token file, `planexe-ax auth token|revoke`, and the data folder's own admin token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi import HTTPException
from starlette.datastructures import Headers

from planexe_ax.cli.auth_http import local_admin_token, login_link
from planexe_ax.cli.main import main
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.security import allowed_origin, identify
from planexe_ax.ws_gateway.tokens import PREFIX, Role, TokenError, TokenStore, digest


def test_the_file_keeps_hashes_only_readable_by_its_owner(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.issue("alice", Role.VIEWER)
    assert token.startswith(PREFIX)
    assert len(token) > 40
    text = store.path.read_text()
    assert token not in text
    assert digest(token) in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    record = store.verify(token)
    assert record is not None
    assert (record.name, record.role, record.agent_id) == ("alice", Role.VIEWER, None)
    assert store.verify(token + "x") is None
    assert store.verify("not-a-token") is None


def test_names_are_unique_and_agent_tokens_name_their_agent(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.issue("alice", Role.VIEWER)
    with pytest.raises(TokenError, match="revoke it first"):
        store.issue("alice", Role.ADMIN)
    with pytest.raises(TokenError, match="--agent-id"):
        store.issue("larry", Role.AGENT)
    with pytest.raises(TokenError, match="agent tokens only"):
        store.issue("bob", Role.OPERATOR, agent_id="larry-1")
    with pytest.raises(ValueError, match="agent id"):
        store.issue("larry", Role.AGENT, agent_id="a.b")
    with pytest.raises(TokenError, match="token name"):
        store.issue("two words", Role.VIEWER)
    larry = store.issue("larry", Role.AGENT, agent_id="larry-1")
    record = store.verify(larry)
    assert record is not None
    assert record.agent_id == "larry-1"


def test_a_second_store_on_the_same_file_sees_revocations(tmp_path: Path) -> None:
    writer, gateway = TokenStore(tmp_path / "tokens.json"), TokenStore(tmp_path / "tokens.json")
    token = writer.issue("alice", Role.VIEWER)
    assert gateway.verify(token) is not None
    assert writer.revoke("alice")
    assert gateway.verify(token) is None
    assert not writer.revoke("alice")


def test_auth_token_prints_the_token_alone_on_its_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLANEXE_DATA_DIR", str(tmp_path / "data"))
    assert main(["auth", "token", "--role", "agent", "--name", "larry", "--agent-id", "larry-1"]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    record = TokenStore(tmp_path / "data" / "http-tokens.json").verify(token)
    assert record is not None
    assert (record.name, record.role, record.agent_id) == ("larry", Role.AGENT, "larry-1")
    assert main(["auth", "token", "--role", "viewer", "--name", "larry"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["auth", "tokens"]) == 0
    listed = capsys.readouterr().out
    assert "larry\tagent agent=larry-1\tcreated " in listed
    assert token not in listed
    assert main(["auth", "revoke", "larry"]) == 0
    assert main(["auth", "revoke", "larry"]) == 2
    assert "no token named larry" in capsys.readouterr().err


def test_the_data_folder_admin_token_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    token = local_admin_token(settings)
    assert local_admin_token(settings) == token
    path = tmp_path / "data" / "http-admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = TokenStore(settings.tokens_path).verify(token)
    assert record is not None
    assert record.role == Role.ADMIN
    assert record.name.endswith("@local")
    assert login_link(settings, "http://127.0.0.1:8000", "#/x") == f"http://127.0.0.1:8000/?token={token}#/x"
    TokenStore(settings.tokens_path).revoke(record.name)
    assert local_admin_token(settings) != token, "a revoked one is replaced"


def test_origins_allowed_are_the_gateways_own_and_the_cors_list() -> None:
    settings = Settings(http_cors_origins=["https://ops.example"])
    host = {"host": "127.0.0.1:8000"}
    assert allowed_origin(settings, Headers(host))
    assert allowed_origin(settings, Headers({**host, "origin": "http://127.0.0.1:8000"}))
    assert allowed_origin(settings, Headers({**host, "origin": "https://ops.example/"}))
    assert not allowed_origin(settings, Headers({**host, "origin": "http://evil.example"}))
    assert not allowed_origin(settings, Headers({**host, "origin": "http://127.0.0.1:8001"}))


def test_an_unreadable_token_file_answers_503_not_500(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    with pytest.raises(HTTPException) as refused:
        identify(TokenStore(path), PREFIX + "x")
    assert refused.value.status_code == 503
    assert str(path) in refused.value.detail
    with pytest.raises(HTTPException) as anonymous:
        identify(TokenStore(path), None)
    assert anonymous.value.status_code == 401
