"""What every route of the gateway shares: the bus, the read model, and waiting for one's own writes.

Routes read the read model and write by sending commands over the bus. A write answers only when its effect
is visible to a read (read-your-writes): the gateway waits for the coordinator's verdict on the bus, then for
the projector to have committed it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request, WebSocket

from planexe_ax.bus import Bus, Event, Subjects, utcnow
from planexe_ax.bus.client import command_verdict
from planexe_ax.bus.messages import CommandBase
from planexe_ax.config import Settings
from planexe_ax.readmodel import Sessions
from planexe_ax.readmodel.ops import checkpoint

log = logging.getLogger(__name__)

POLL_S = (0.002, 0.005, 0.01, 0.02, 0.05)


class NotProjected(Exception):
    """The read model did not reach a sequence in time (is the projector running?)."""


class NoVerdict(Exception):
    """The coordinator did not answer a command in time (is it running?)."""


@dataclass
class Gateway:
    """The gateway's shared state, one per app (``app.state.gateway``)."""

    settings: Settings
    bus: Bus
    sessions: Sessions
    started_at: datetime = field(default_factory=utcnow)
    write_timeout_s: float = 10.0
    extras: dict[str, Any] = field(default_factory=dict)
    """Parts of the gateway that routes share (the stream hub, the agent bridge), by name."""
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    """Live figures for /metrics (``name -> read it now``), e.g. open WebSockets."""

    async def wait_projected(
        self, seq: int, consumer: str = Subjects.PROJECTOR_EVENTS, timeout_s: float | None = None
    ) -> None:
        """Wait until the projector has committed stream sequence (or bucket revision) ``seq`` of ``consumer``.

        Raises:
            NotProjected: when it has not within ``timeout_s`` (default: :attr:`write_timeout_s`).
        """

        async def reached() -> bool:
            return await checkpoint(self.sessions, consumer) >= seq

        if not await self.read_until(reached, timeout_s):
            raise NotProjected(f"the read model has not caught up with sequence {seq} of {consumer}")

    async def read_until(self, check: Callable[[], Awaitable[bool]], timeout_s: float | None = None) -> bool:
        """Ask the read model ``check`` until it says yes, backing off from 2 to 50 ms.

        Returns:
            False when it has not said yes within ``timeout_s`` (default: :attr:`write_timeout_s`).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.write_timeout_s)
        attempt = 0
        while not await check():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S[min(attempt, len(POLL_S) - 1)])
            attempt += 1
        return True

    async def command(self, command: CommandBase) -> tuple[Event, int]:
        """Send ``command``, wait for the coordinator's verdict and for the read model to show it.

        Returns:
            The first event the command caused (its effect, or ``command_rejected``) and its stream sequence.

        Raises:
            NoVerdict: when the coordinator gave no verdict within :attr:`write_timeout_s`.
            NotProjected: when the read model did not show the verdict in time.
        """
        try:
            event, seq = await command_verdict(self.bus, command, self.write_timeout_s)
        except TimeoutError as exc:
            raise NoVerdict(
                f"no answer from the coordinator within {self.write_timeout_s:g} s; the command is stored "
                "and will be carried out when the coordinator runs"
            ) from exc
        await self.wait_projected(seq)
        return event, seq


def gateway(request: Request) -> Gateway:
    """FastAPI dependency: the app's :class:`Gateway`."""
    gw: Gateway = request.app.state.gateway
    return gw


def ws_gateway(websocket: WebSocket) -> Gateway:
    """The app's :class:`Gateway`, for WebSocket routes."""
    gw: Gateway = websocket.app.state.gateway
    return gw


def unavailable(exc: Exception) -> HTTPException:
    """503 for a write whose effect could not be confirmed in time."""
    return HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "1"})
