"""Health, readiness and metrics (Prometheus text at /metrics, the same as JSON at /api/admin/metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from planexe_ax.bus import utcnow
from planexe_ax.bus.replay import events_last_seq
from planexe_ax.readmodel.ops import ping, read_figures
from planexe_ax.ws_gateway.context import Gateway, gateway
from planexe_ax.ws_gateway.schemas import Health, Metrics, Readiness
from planexe_ax.ws_gateway.security import AUTH_RESPONSES, READ

router = APIRouter(tags=["operations"])
GW = Annotated[Gateway, Depends(gateway)]


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="NATS and the read model are reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready."}},
)
async def readyz(gw: GW) -> JSONResponse:
    checks: dict[str, str] = {}
    checks["nats"] = "ok" if gw.bus.connected else "not connected"
    try:
        await ping(gw.sessions)
        checks["database"] = "ok"
    except Exception as exc:  # any failure is the answer: the message says which
        checks["database"] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    ready = all(value == "ok" for value in checks.values())
    answer = Readiness(ready=ready, checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=answer.model_dump(mode="json"))


async def collect(gw: Gateway) -> dict[str, Any]:
    """Every figure of /metrics, read now."""
    figures = (await read_figures(gw.sessions)).model_dump()
    try:
        last_seq = await events_last_seq(gw.bus)
    except Exception:  # NATS away: the lag is unknown rather than the endpoint down
        last_seq = -1
    figures["events_last_seq"] = last_seq
    figures["projector_lag_events"] = max(last_seq - figures["projector_checkpoint"], 0) if last_seq >= 0 else -1
    figures["websockets_open"] = 0
    for name, read in gw.gauges.items():
        figures[name] = read()
    figures["uptime_s"] = round((utcnow() - gw.started_at).total_seconds(), 3)
    return figures


@router.get(
    "/api/admin/metrics", summary="The figures of /metrics as JSON", dependencies=[READ], responses=AUTH_RESPONSES
)
async def admin_metrics(gw: GW) -> Metrics:
    return Metrics.model_validate(await collect(gw))


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, dependencies=[READ], responses=AUTH_RESPONSES
)
async def prometheus(gw: GW) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(await collect(gw)))
    return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _Figures:
    """A collector of figures read just before the scrape (the read model is async; collectors are not)."""

    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        for name, what in (("executions", "Executions"), ("tasks", "Tasks"), ("subtasks", "Subtasks")):
            family = GaugeMetricFamily(f"planexe_{name}", f"{what} by status.", labels=["status"])
            for status, count in sorted(f[name].items()):
                family.add_metric([status], count)
            yield family
        agents = GaugeMetricFamily("planexe_agents", "Agents by liveness.", labels=["status"])
        for status, count in sorted(f["agents"].items()):
            agents.add_metric([status], count)
        yield agents
        subtasks = f["subtasks"]
        singles = (
            ("planexe_subtasks_dispatched", "Subtask attempts dispatched to agents or people.",
             f["subtask_attempts_dispatched"]),
            ("planexe_subtasks_completed", "Subtasks completed.", subtasks.get("COMPLETED", 0)),
            ("planexe_subtasks_failed", "Subtasks failed for good.", subtasks.get("FAILED", 0)),
            ("planexe_projector_lag_events", "Events in AX_EVENTS not yet projected (-1: unknown).",
             f["projector_lag_events"]),
            ("planexe_projector_checkpoint", "Last AX_EVENTS sequence the read model committed.",
             f["projector_checkpoint"]),
            ("planexe_websockets_open", "WebSocket clients connected to this gateway.", f.get("websockets_open", 0)),
            ("planexe_websocket_feeds", "Executions with WebSocket clients (one bus subscription each).",
             f.get("websocket_feeds", 0)),
            ("planexe_websocket_resyncs", "Resyncs sent to WebSocket clients that fell behind.",
             f.get("websocket_resyncs", 0)),
            ("planexe_websocket_undecodable", "Messages on watched executions' subjects skipped: not events.",
             f.get("websocket_undecodable", 0)),
            ("planexe_websocket_frames_direct", "Event frames written straight to a WebSocket client's socket.",
             f.get("websocket_frames_direct", 0)),
            ("planexe_websocket_frames_queued", "Event frames queued for a busy WebSocket client's writer.",
             f.get("websocket_frames_queued", 0)),
            ("planexe_http_agents_live", "HTTP agents heard from within PLANEXE_HTTP_AGENT_TTL_S.",
             f.get("http_agents_live", 0)),
            ("planexe_http_leases_held", "Offers leased to HTTP agents and not yet answered.",
             f.get("http_leases_held", 0)),
            ("planexe_gateway_uptime_seconds", "Seconds since this gateway started.", f["uptime_s"]),
        )  # fmt: skip
        for name, doc, value in singles:
            yield GaugeMetricFamily(name, doc, value=value)
