"""API tokens: who may call the gateway, with which role; stored hashed in one file that only its owner reads.

A token is ``pxa_`` and 43 URL-safe characters (256 random bits); the file keeps its SHA-256 only, so reading
the file does not give a token away. ``planexe-ax auth token`` adds one, ``planexe-ax auth revoke`` removes
it; gateways reread the file when it changes, so both take effect at the next request. Several gateways
share one file (``PLANEXE_HTTP_TOKENS_FILE``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from planexe_ax.bus import check_id, utcnow
from planexe_ax.common.secretfile import locked, write_private
from planexe_ax.config import Settings

PREFIX = "pxa_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class Role(StrEnum):
    """What a token may do."""

    VIEWER = "viewer"
    """Read executions, plans, agents, the inbox, metrics; follow the WebSocket stream."""
    OPERATOR = "operator"
    """Read; start, pause, resume and cancel executions; upload, import and delete plans."""
    APPROVER = "approver"
    """Read; answer the inbox (approvals, human tasks, reviews, escalations)."""
    AGENT = "agent"
    """The HTTP agent protocol, as one agent id only (register, lease work, report)."""
    ADMIN = "admin"
    """Everything, as any agent."""


class Right(StrEnum):
    """What a route needs; each role grants some."""

    READ = "read"
    OPERATE = "operate"
    APPROVE = "approve"
    AGENT = "agent"


GRANTS: dict[Role, frozenset[Right]] = {
    Role.VIEWER: frozenset({Right.READ}),
    Role.OPERATOR: frozenset({Right.READ, Right.OPERATE}),
    Role.APPROVER: frozenset({Right.READ, Right.APPROVE}),
    Role.AGENT: frozenset({Right.AGENT}),
    Role.ADMIN: frozenset(Right),
}

NEEDED: dict[Right, Role] = {
    Right.READ: Role.VIEWER,
    Right.OPERATE: Role.OPERATOR,
    Right.APPROVE: Role.APPROVER,
    Right.AGENT: Role.AGENT,
}
"""The least role that grants a right (admin grants every one): what a 403 names."""


class TokenError(ValueError):
    """A token cannot be issued or revoked as asked; the message says why."""


@dataclass(frozen=True)
class TokenRecord:
    """One token as stored: its name (who did something), role, bound agent id and the SHA-256 of the secret."""

    name: str
    role: Role
    sha256: str
    created_at: str
    agent_id: str | None = None

    def grants(self, right: Right) -> bool:
        """Whether the token's role grants ``right``."""
        return right in GRANTS[self.role]


def digest(token: str) -> str:
    """The SHA-256 (hex) a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file at ``path`` (JSON, mode 0600): issue, revoke, list and verify tokens.

    Reads are cached and redone when the file's size, mtime or inode change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._records: tuple[TokenRecord, ...] = ()

    def records(self) -> tuple[TokenRecord, ...]:
        """Every token as stored now (none when the file does not exist)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._records = None, ()
            return ()
        seen = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if seen != self._seen:
            self._records = self._read()
            self._seen = seen
        return self._records

    def verify(self, token: str) -> TokenRecord | None:
        """The record of ``token``, or None; compares every stored hash in constant time."""
        if not token.startswith(PREFIX):
            return None
        wanted = digest(token)
        found = None
        for record in self.records():
            if hmac.compare_digest(record.sha256, wanted):
                found = record
        return found

    def issue(self, name: str, role: Role, agent_id: str | None = None, *, replace: bool = False) -> str:
        """Add a token and return it (the only time it is shown).

        Raises:
            TokenError: A bad name, a name in use (unless ``replace``), or an agent id missing or not wanted.
        """
        if not _NAME.match(name):
            raise TokenError(f"token name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        if role == Role.AGENT:
            if not agent_id:
                raise TokenError("an agent token needs --agent-id: the one agent id it may act as")
            check_id(agent_id, "agent id")
        elif agent_id:
            raise TokenError(f"--agent-id is for agent tokens only, not {role.value}")
        token = PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(name, role, digest(token), utcnow().isoformat(), agent_id)
        with self._locked():
            existing = self._read()
            records = [r for r in existing if r.name != name]
            if len(records) != len(existing) and not replace:
                raise TokenError(f"a token named {name} exists; revoke it first (planexe-ax auth revoke {name})")
            self._write([*records, record])
        return token

    def revoke(self, name: str) -> bool:
        """Remove the token called ``name``; False when there is none."""
        with self._locked():
            records = self._read()
            kept = [r for r in records if r.name != name]
            if len(kept) == len(records):
                return False
            self._write(kept)
        return True

    def _read(self) -> tuple[TokenRecord, ...]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:
            raise TokenError(f"the token file {self.path} cannot be read: {exc}") from exc
        return tuple(
            TokenRecord(
                name=str(item["name"]),
                role=Role(item["role"]),
                sha256=str(item["sha256"]),
                created_at=str(item.get("created_at", "")),
                agent_id=item.get("agent_id"),
            )
            for item in data.get("tokens", ())
        )

    def _write(self, records: list[TokenRecord]) -> None:
        write_private(self.path, json.dumps({"version": 1, "tokens": [asdict(r) for r in records]}, indent=2) + "\n")

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.path)


def token_store(settings: Settings) -> TokenStore:
    """The token file of ``settings`` (``PLANEXE_HTTP_TOKENS_FILE`` or the data folder's)."""
    return TokenStore(settings.tokens_path)
