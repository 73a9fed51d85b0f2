"""The audit hash chain of an execution's events and the signed checkpoints of its head (part of the wire contract).

An execution's chain runs over its events in AX_EVENTS in stream order (those :func:`decode_event_on` accepts on
``ax.evt.<execution_id>.>``): ``head_0 = ""`` and ``head_i = sha256(bytes(head_{i-1}) + canonical(event_i))`` in
hex. Agents publish their reports concurrently and cannot know the head; the coordinator, which reads every event
in stream order, stamps each event it publishes with ``prev_hash`` (the head over what it had read of the
execution then) and publishes ``audit_checkpoint`` events signing the head with an Ed25519 nkey. Anyone holding
the public key recomputes the chain from the stream or from the read model and checks both.

The canonical form is the event as decoded (upcast, validated), dumped as JSON, its top-level fields that are
null left out (a field added later with a null default keeps old chains valid), keys sorted, no spaces; an
``execution_created`` whose plan went by reference (``plan_ref``, with the plan's SHA-256) leaves the plan out,
whether a reader has fetched it or not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

from planexe_ax.bus.jwt import Key, write_secret
from planexe_ax.bus.messages import AuditCheckpoint, EventBase
from planexe_ax.errors import ConfigError

KEY_FILE = "audit.nk"
PUBLIC_FILE = "audit.pub"
PAYLOAD_TAG = "planexe-ax audit checkpoint v1"
log = logging.getLogger(__name__)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""The canonical form's encoder, made once (``json.dumps`` with these arguments makes one per call)."""


def canonical(event: EventBase) -> bytes:
    """The bytes an event is hashed as (see the module docstring)."""
    dumped = {k: v for k, v in event.model_dump(mode="json", by_alias=True).items() if v is not None}
    if "plan_ref" in dumped:  # a plan sent by reference is hashed as its reference (which holds its SHA-256)
        dumped.pop("plan", None)
    return _CANONICAL.encode(dumped).encode()


def link(head: str, event: EventBase) -> str:
    """The chain's head after ``event``, from the head before it."""
    return hashlib.sha256(bytes.fromhex(head) + canonical(event)).hexdigest()


def checkpoint_payload(execution_id: str, up_to_seq: int, count: int, head_hash: str, prev_checkpoint: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return f"{PAYLOAD_TAG}\n{execution_id}\n{up_to_seq}\n{count}\n{head_hash}\n{prev_checkpoint}".encode()


class Signer:
    """Signs checkpoints with one Ed25519 nkey (the key pair derived once, not per signature)."""

    def __init__(self, key: Key) -> None:
        self.key_id = key.public
        self._key = nacl.signing.SigningKey(bytes(nkeys.decode_seed(bytearray(key.seed))[1]))

    def sign(self, payload: bytes) -> str:
        """The Ed25519 signature of ``payload``, base64url without padding."""
        return base64.urlsafe_b64encode(self._key.sign(payload).signature).rstrip(b"=").decode()


def signature_problem(checkpoint: AuditCheckpoint, trusted: frozenset[str]) -> str | None:
    """Why ``checkpoint``'s signature does not prove it (None: it does)."""
    if not checkpoint.signature or not checkpoint.key_id:
        return "the checkpoint is not signed"
    if checkpoint.key_id not in trusted:
        return f"the checkpoint is signed by {checkpoint.key_id}, which is not a trusted audit key"
    c = checkpoint
    payload = checkpoint_payload(c.execution_id, c.up_to_seq, c.count, c.head_hash, c.prev_checkpoint)
    try:
        raw = base64.urlsafe_b64decode(checkpoint.signature + "=" * (-len(checkpoint.signature) % 4))
        _verify_key(checkpoint.key_id).verify(payload, raw)
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return f"the checkpoint's signature does not verify with {checkpoint.key_id}: it was forged or altered"
    return None


def _verify_key(public: str) -> nacl.signing.VerifyKey:
    """The Ed25519 key of a public nkey (prefix byte, 32 key bytes, CRC16, base32)."""
    data = base64.b32decode(public + "=" * (-len(public) % 8))
    if len(data) != 35 or not nkeys.valid_public_prefix_byte(data[0]):
        raise ValueError(f"not a public nkey: {public!r}")
    return nacl.signing.VerifyKey(data[1:33])


def signing_key(key_file: Path) -> Key:
    """The coordinator's audit signing key in ``key_file``, made there (with its public key in ``.pub``) when missing.

    A key made here is new: checkpoints it signs are believed only where its ``.pub`` is trusted (a coordinator
    that should have been given the key shows up in ``audit verify`` as checkpoints signed by an unknown key).

    Raises:
        ConfigError: when the file does not hold an nkey seed, or cannot be written.
    """
    if not key_file.is_file():
        try:
            _make_key(key_file)
        except OSError as exc:
            raise ConfigError(f"cannot make the audit signing key {key_file}: {exc}") from exc
    try:
        key = Key(key_file.read_bytes().strip())
        _ = key.public
    except Exception as exc:  # nkeys raises its own errors on a bad seed
        raise ConfigError(f"{key_file} does not hold an nkey seed (PLANEXE_AUDIT_KEY_FILE): {exc}") from exc
    return key


def _make_key(key_file: Path) -> None:
    """Write a new key to ``key_file`` unless another process wrote one first (then that one is kept)."""
    key = Key(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_SERVER))
    temp = write_secret(key_file.with_name(f".{key_file.name}.{os.getpid()}.new"), key.seed + b"\n")
    try:
        os.link(temp, key_file)  # fails if it exists: two coordinators starting at once keep one key
    except FileExistsError:
        return
    finally:
        temp.unlink()
    write_secret(key_file.with_suffix(".pub"), key.public + "\n").chmod(0o644)
    log.warning("audit signing key made", extra={"key_file": str(key_file), "key_id": key.public})


def trusted_keys(configured: list[str], public_file: Path) -> frozenset[str]:
    """The public keys whose checkpoints are believed: ``configured`` and the one in ``public_file`` (if any)."""
    found = set(configured)
    if public_file.is_file():
        found.add(public_file.read_text().strip())
    return frozenset(k for k in found if k)
