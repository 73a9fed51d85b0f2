"""The HTTP edge: REST API, WebSocket stream per execution, dashboard, health and metrics (FastAPI + uvicorn).

The names below are imported on first use: a command that needs only the token store (``planexe-ax auth``, and
so every command of the CLI, which imports it) does not load the whole application.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planexe_ax.ws_gateway.app import create_app
    from planexe_ax.ws_gateway.context import Gateway
    from planexe_ax.ws_gateway.server import GatewayServer

__all__ = ["Gateway", "GatewayServer", "create_app"]
_HOMES = {"create_app": "app", "Gateway": "context", "GatewayServer": "server"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
