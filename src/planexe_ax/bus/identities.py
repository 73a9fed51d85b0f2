"""The operator, account and user identities of a NATS in operator mode, kept in one folder (0700, files 0600).

Layout of the folder (``<data dir>/nats-auth`` for the embedded server, or what ``auth init --out``
names)::

    operator.jwt operator.nk     the operator (self-signed); trusts the accounts below
    account.jwt account.nk       the account every PlanExe-AX client lives in (JetStream enabled)
    system.jwt system.nk         the system account (server monitoring), no users
    audit.nk audit.pub           the coordinator's key that signs audit checkpoints, and its public key (0644)
    nats-server.conf             operator mode with a MEMORY resolver preloaded with both accounts
    users/[<namespace>/]<role>.creds   service identities, signed on demand with the account key

User JWTs are signed by the account key and checked by the server on connect, so new users (an
agent's ``.creds``) need no server restart; the account JWTs are preloaded, so changing an account's
limits does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from planexe_ax.bus import audit_chain, jwt
from planexe_ax.bus.jwt import Key, Permissions
from planexe_ax.bus.permissions import agent_permissions, role_permissions
from planexe_ax.bus.subjects import Subjects
from planexe_ax.errors import ConfigError

log = logging.getLogger(__name__)
ACCOUNT_NAME = "planexe-ax"


@dataclass(frozen=True)
class Identities:
    """A folder of NATS identities: load it with :meth:`load`, or make it with :meth:`create`."""

    folder: Path
    operator: Key
    account: Key
    system: Key

    @classmethod
    def exists(cls, folder: Path) -> bool:
        """True when ``folder`` holds an account key (this process can sign users)."""
        return (folder / "account.nk").is_file()

    @classmethod
    def load(cls, folder: Path) -> Identities:
        """Read the keys of ``folder``.

        Raises:
            ConfigError: when a key file is missing or unreadable.
        """
        try:
            keys = [Key((folder / f"{name}.nk").read_bytes().strip()) for name in ("operator", "account", "system")]
        except OSError as exc:
            raise ConfigError(f"cannot read the NATS identities in {folder}: {exc}") from exc
        return cls(folder, *keys)

    @classmethod
    def create(cls, folder: Path, *, jetstream_bytes: int = jwt.UNLIMITED) -> Identities:
        """Make a new operator, account and system account in ``folder`` (which must not hold one yet).

        Args:
            folder: Where to write the keys, JWTs and server configuration.
            jetstream_bytes: File storage the account's streams may use; -1 for no limit.

        Raises:
            ConfigError: when ``folder`` already holds identities (they would be orphaned).
        """
        if cls.exists(folder):
            raise ConfigError(f"{folder} already holds NATS identities; use them, or choose another folder")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.chmod(0o700)
        made = cls(folder, Key.new("operator"), Key.new("account"), Key.new("account"))
        for name, key in (("operator", made.operator), ("account", made.account), ("system", made.system)):
            jwt.write_secret(folder / f"{name}.nk", key.seed + b"\n")
        jwt.write_secret(folder / "operator.jwt", jwt.operator_jwt(made.operator, made.system.public))
        account = jwt.account_jwt(made.operator, made.account, ACCOUNT_NAME, jetstream_bytes=jetstream_bytes)
        jwt.write_secret(folder / "account.jwt", account)
        jwt.write_secret(
            folder / "system.jwt", jwt.account_jwt(made.operator, made.system, "SYS", jetstream_bytes=None)
        )
        jwt.write_secret(folder / "nats-server.conf", made.server_config())
        audit_chain.signing_key(folder / audit_chain.KEY_FILE)
        log.info("NATS identities created", extra={"folder": str(folder), "account": made.account.public})
        return made

    @classmethod
    def load_or_create(cls, folder: Path, *, jetstream_bytes: int = jwt.UNLIMITED) -> Identities:
        """The identities of ``folder``, made on first use."""
        return cls.load(folder) if cls.exists(folder) else cls.create(folder, jetstream_bytes=jetstream_bytes)

    def server_config(self) -> str:
        """A nats-server configuration: operator mode and a MEMORY resolver preloaded with both accounts.

        The operator JWT is inline, so the file works wherever it is mounted; run it with JetStream (``-js``).
        """
        operator = (self.folder / "operator.jwt").read_text().strip()
        account = (self.folder / "account.jwt").read_text().strip()
        system = (self.folder / "system.jwt").read_text().strip()
        return (
            f"# PlanExe-AX: operator mode; clients need a user JWT signed by account {self.account.public}\n"
            f"operator: {operator}\n"
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {self.account.public}: {account}\n"
            f"  {self.system.public}: {system}\n"
            "}\n"
        )

    def user_creds(self, name: str, permissions: Permissions) -> str:
        """A new user, signed by the account, with ``permissions``: the text of its ``.creds`` file."""
        user = Key.new("user")
        return jwt.creds(jwt.user_jwt(self.account, user, name, permissions), user.seed)

    def agent_creds(self, subjects: Subjects, agent_id: str, capabilities: list[str]) -> str:
        """The ``.creds`` text of one agent identity (see :func:`agent_permissions`)."""
        return self.user_creds(agent_id, agent_permissions(subjects, agent_id, capabilities))

    def role_creds(self, role: str, subjects: Subjects) -> Path:
        """The ``.creds`` file of a service role in ``subjects``' namespace, signed afresh (rights follow the code)."""
        folder = self.folder / "users" / subjects.namespace if subjects.namespace else self.folder / "users"
        return jwt.write_secret(folder / f"{role}.creds", self.user_creds(role, role_permissions(role, subjects)))


def creds_inbox_prefix(creds_text: str) -> str | None:
    """The inbox prefix a ``.creds`` file's user may subscribe to (``_INBOX.<name>``), if it is limited to one."""
    claims = jwt.decode(jwt.creds_jwt(creds_text)).get("nats", {})
    for subject in claims.get("sub", {}).get("allow", []):
        if subject.startswith("_INBOX.") and subject.endswith(".>"):
            return str(subject[:-2])
    return None
