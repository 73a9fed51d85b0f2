"""One-time links to answer one inbox item: what the notifier mails and the gateway accepts.

A link token is ``pxl_`` and 43 URL-safe characters (256 random bits). The file (``inbox-links.json`` beside
the API token file, mode 0600) keeps its SHA-256 only, with the inbox item it answers, the address it was
sent to, when it expires and when it was used. The gateway accepts it for that item only, once: using it
(answering the item) marks it used under the file's lock, so a second use is refused. The notifier also
notes there which addresses were told of which item, so a redelivered event mails nobody twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from planexe_ax.bus import utcnow
from planexe_ax.common.secretfile import locked, write_private

PREFIX = "pxl_"


class LinkRefused(ValueError):
    """The link token is unknown, for another item, expired or used; the message says which."""


@dataclass(frozen=True)
class LinkRecord:
    """One link as stored."""

    sha256: str
    item_id: str
    to: str
    expires_at: str
    sent: bool = False
    used_at: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LinkStore:
    """The link file at ``path``: issue links, note them sent, check and use them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def issue(self, item_id: str, to: str, ttl_s: float) -> str:
        """A new link token for ``to`` to answer ``item_id`` within ``ttl_s`` seconds (shown only now).

        An earlier link to the same address for the same item that was never sent is dropped, and so is
        every expired link.
        """
        token = PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        record = LinkRecord(_digest(token), item_id, to, (now + timedelta(seconds=ttl_s)).isoformat())
        with locked(self.path):
            kept = [
                r
                for r in self._read()
                if datetime.fromisoformat(r.expires_at) > now and (r.sent or (r.item_id, r.to) != (item_id, to))
            ]
            self._write([*kept, record])
        return token

    def mark_sent(self, token: str) -> None:
        """Note that the mail holding ``token`` was accepted by the mail server."""
        wanted = _digest(token)
        with locked(self.path):
            records = self._read()
            self._write([replace(r, sent=True) if r.sha256 == wanted else r for r in records])

    def was_sent(self, item_id: str, to: str) -> bool:
        """Whether ``to`` was already told of ``item_id`` (a redelivered event)."""
        return any(r.sent and (r.item_id, r.to) == (item_id, to) for r in self._read())

    def check(self, token: str, item_id: str) -> LinkRecord:
        """The record of a link that may still answer ``item_id``.

        Raises:
            LinkRefused: naming why it may not.
        """
        return _usable(self._find(self._read(), token), item_id)

    def use(self, token: str, item_id: str) -> LinkRecord:
        """Check the link (as :meth:`check`) and mark it used, atomically: a second use is refused.

        Raises:
            LinkRefused: naming why it may not answer.
        """
        with locked(self.path):
            records = self._read()
            found = _usable(self._find(records, token), item_id)
            used = replace(found, used_at=utcnow().isoformat())
            self._write([used if r.sha256 == found.sha256 else r for r in records])
        return used

    @staticmethod
    def _find(records: list[LinkRecord], token: str) -> LinkRecord | None:
        wanted = _digest(token)
        found = None
        for record in records:
            if hmac.compare_digest(record.sha256, wanted):
                found = record
        return found

    def _read(self) -> list[LinkRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [LinkRecord(**item) for item in data.get("links", ())]

    def _write(self, records: list[LinkRecord]) -> None:
        write_private(self.path, json.dumps({"version": 1, "links": [asdict(r) for r in records]}, indent=2) + "\n")


def _usable(record: LinkRecord | None, item_id: str) -> LinkRecord:
    if record is None:
        raise LinkRefused("unknown link token")
    if record.item_id != item_id:
        raise LinkRefused(f"this link answers inbox item {record.item_id} only, not {item_id}")
    if record.used_at is not None:
        raise LinkRefused(f"this link was used already, at {record.used_at}")
    if datetime.fromisoformat(record.expires_at) <= utcnow():
        raise LinkRefused(f"this link expired at {record.expires_at}")
    return record
