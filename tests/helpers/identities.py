"""Clients of the test nats-server with one identity each, as a third party would connect (plain nats-py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client

from planexe_ax.bus import Identities, Subjects
from planexe_ax.bus.identities import creds_inbox_prefix
from planexe_ax.bus.jwt import write_secret
from tests.helpers.eventually import eventually


@dataclass
class Identified:
    """A connection and the errors the server sent it (permission violations arrive this way)."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    async def refused(self, subject: str) -> str:
        """Wait until the server has reported a permissions violation on ``subject``; return its text."""

        async def seen() -> str | None:
            # nats-py lower-cases the server's error text
            wanted = f'permissions violation for publish to "{subject.lower()}"'
            return next((e for e in self.errors if wanted in e.lower()), None)

        return await eventually(seen, timeout=5)


def agent_creds(auth_dir: Path, subjects: Subjects, agent_id: str, capabilities: list[str], folder: Path) -> Path:
    """Sign an agent identity with the test server's account key and write its ``.creds`` file."""
    text = Identities.load(auth_dir).agent_creds(subjects, agent_id, capabilities)
    return write_secret(folder / f"{agent_id}.creds", text)


@asynccontextmanager
async def client(url: str, creds: Path) -> AsyncIterator[Identified]:
    """A plain nats-py connection with ``creds`` and the inbox prefix its identity may use."""
    made = Identified(nc=Client())

    async def on_error(exc: Exception) -> None:
        made.errors.append(str(exc))

    prefix = creds_inbox_prefix(await asyncio.to_thread(creds.read_text)) or "_INBOX"
    await made.nc.connect(url, user_credentials=str(creds), inbox_prefix=prefix, error_cb=on_error)
    try:
        yield made
    finally:
        await made.nc.close()


async def anonymous(url: str) -> None:
    """Connect without credentials and without retrying (raises what the server answers)."""
    nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
    await nc.close()
