"""NATS decentralized-auth JWTs and ``.creds`` files, signed with nkeys (the format nats-server and ``nsc`` use).

A JWT is ``base64url(header).base64url(claims).base64url(ed25519 signature)`` with the header
``{"typ": "JWT", "alg": "ed25519-nkey"}``; the issuer's nkey signs the first two parts. The claims'
``nats`` object carries the type (operator, account, user) and, for users, the subject permissions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nkeys

KeyKind = Literal["operator", "account", "user"]
_PREFIX = {"operator": nkeys.PREFIX_BYTE_OPERATOR, "account": nkeys.PREFIX_BYTE_ACCOUNT, "user": nkeys.PREFIX_BYTE_USER}
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
UNLIMITED = -1


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to (NATS wildcards allowed); nothing else."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False

    def claims(self) -> dict[str, Any]:
        """The permission part of a user JWT's ``nats`` claims."""
        found: dict[str, Any] = {"pub": {"allow": list(self.publish)}, "sub": {"allow": list(self.subscribe)}}
        if self.allow_responses:
            found["resp"] = {"max": 1, "ttl": 0}
        return found


@dataclass(frozen=True)
class Key:
    """An nkey pair kept as its seed."""

    seed: bytes = field(repr=False)

    @classmethod
    def new(cls, kind: KeyKind) -> Key:
        """A fresh random key of ``kind``."""
        return cls(nkeys.encode_seed(os.urandom(32), _PREFIX[kind]))

    @property
    def public(self) -> str:
        """The public key (``O…``, ``A…`` or ``U…``)."""
        pair = nkeys.from_seed(bytearray(self.seed))
        return str(pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        """The ed25519 signature of ``data``."""
        return bytes(nkeys.from_seed(bytearray(self.seed)).sign(data))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(issuer: Key, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A JWT about ``subject`` (a public key) signed by ``issuer``.

    Args:
        issuer: The signing key: the operator for accounts (and itself), the account for users.
        subject: The public key the JWT is about.
        name: A readable name shown by the server and tools.
        nats: The ``nats`` claims (``type``, ``version`` and the type's fields).
    """
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public, "name": name, "sub": subject, "nats": nats}
    body = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    claims["jti"] = base64.b32encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


def decode(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for display and tests; the server verifies)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def operator_jwt(operator: Key, system_account: str, name: str = "planexe-ax") -> str:
    """The self-signed operator JWT naming the system account."""
    nats = {"type": "operator", "version": 2, "system_account": system_account}
    return encode(operator, operator.public, name, nats)


def account_jwt(operator: Key, account: Key, name: str, *, jetstream_bytes: int | None) -> str:
    """An account JWT signed by the operator; ``jetstream_bytes`` None: JetStream off, -1: no limit."""
    limits: dict[str, Any] = {"subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED, "conn": UNLIMITED}
    limits |= {"imports": UNLIMITED, "exports": UNLIMITED, "wildcards": True, "leaf": UNLIMITED}
    if jetstream_bytes is not None:
        limits |= {"disk_storage": jetstream_bytes, "mem_storage": UNLIMITED, "streams": UNLIMITED}
        limits |= {"consumer": UNLIMITED, "max_ack_pending": UNLIMITED}
    nats = {"type": "account", "version": 2, "limits": limits, "default_permissions": {"pub": {}, "sub": {}}}
    return encode(operator, account.public, name, nats)


def user_jwt(account: Key, user: Key, name: str, permissions: Permissions) -> str:
    """A user JWT signed by the account, with ``permissions`` as its only rights."""
    nats = {"type": "user", "version": 2, "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED}
    return encode(account, user.public, name, nats | permissions.claims())


def creds(jwt: str, seed: bytes) -> str:
    """A ``.creds`` file's text: the user JWT and its nkey seed, as ``nsc`` writes them."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def creds_jwt(text: str) -> str:
    """The user JWT inside a ``.creds`` file's text."""
    lines = text.splitlines()
    return lines[lines.index("-----BEGIN NATS USER JWT-----") + 1].strip()


def write_secret(path: Path, text: str | bytes) -> Path:
    """Write ``path`` readable by its owner only (0600), atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as sink:
        sink.write(text.encode() if isinstance(text, str) else text)
    os.replace(temp, path)
    return path
