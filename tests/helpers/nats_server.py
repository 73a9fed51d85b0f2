"""Start a real nats-server on a free port with a temporary JetStream store (the project's embedded runner)."""

from __future__ import annotations

from pathlib import Path

from planexe_ax.bus import EmbeddedNats


async def start_nats(store_dir: Path, port: int = 0) -> EmbeddedNats:
    """Start a server; ``port`` 0 picks a free one. Restart on the same port and store for fault tests."""
    server = EmbeddedNats(store_dir, port=port)
    await server.start()
    return server
