"""What the gateway answers beyond the read model's views: health, metrics and the HTTP agent protocol."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from planexe_ax.bus import TaskOffer
from planexe_ax.readmodel.schemas import ReadFigures, Timestamp, View


class Health(View):
    """The process is up."""

    status: str


class Readiness(View):
    """Whether NATS and the read model are reachable, and what is wrong with each that is not."""

    ready: bool
    checks: dict[str, str]


class Metrics(ReadFigures):
    """The figures of /metrics: the read model's counts, the projector's lag and the gateway's gauges."""

    model_config = ConfigDict(frozen=True, extra="allow")

    events_last_seq: int
    projector_lag_events: int
    websockets_open: int = 0
    websocket_feeds: int = 0
    websocket_resyncs: int = 0
    websocket_undecodable: int = 0
    websocket_frames_direct: int = 0
    websocket_frames_queued: int = 0
    http_agents_live: int = 0
    http_leases_held: int = 0
    uptime_s: float


class LeaseView(View):
    """An offer held for an HTTP agent: report on it before ``expires_at`` to keep it."""

    lease_id: str
    expires_at: Timestamp
    attempt: int
    delivered: int


class WorkOffer(TaskOffer):
    """An offer leased to an HTTP agent, with its lease."""

    lease: LeaseView
    traceparent: str | None = Field(
        default=None,
        description="W3C trace context of the attempt (also the traceparent header): the agent's spans continue it, "
        "and its reports send it back",
    )


class ReportAnswer(View):
    """What became of an HTTP agent's report, with the statuses the read model shows now."""

    accepted: bool
    duplicate: bool
    event_id: str | None
    seq: int | None
    subtask_status: str | None
    execution_status: str | None
    lease: LeaseView | None
    traceparent: str | None = Field(
        default=None, description="The attempt's trace context, to send with the next report"
    )
