"""The HTTP edge: REST API, WebSocket stream per execution, dashboard, health and metrics (FastAPI + uvicorn)."""

from planexe_ax.ws_gateway.app import create_app
from planexe_ax.ws_gateway.context import Gateway
from planexe_ax.ws_gateway.server import GatewayServer

__all__ = ["Gateway", "GatewayServer", "create_app"]
