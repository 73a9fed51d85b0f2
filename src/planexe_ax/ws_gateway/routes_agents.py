"""Agents and the HTTP agent protocol: register, list and read agents; lease work and report on it over HTTP.

An agent that cannot speak NATS registers once (``POST /api/agents/register``), polls
``GET /api/agents/{id}/work`` for an offer and reports on it with ``POST /api/executions/{id}/events``.
:mod:`planexe_ax.ws_gateway.agent_bridge` turns this into what a bus agent does.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from pydantic import BaseModel, Field, field_validator, model_validator

from planexe_ax.agents.sdk import RejectOffer
from planexe_ax.bus import (
    AgentCard,
    CapabilityCard,
    Event,
    SubtaskRejected,
    SubtaskResult,
    SubtaskState,
    check_id,
    check_token,
    utcnow,
)
from planexe_ax.bus.client import first_event
from planexe_ax.bus.errors import BusError
from planexe_ax.bus.messages import EventBase, RejectReason
from planexe_ax.bus.replay import execution_events
from planexe_ax.readmodel import agents as read_agents
from planexe_ax.readmodel.schemas import AgentCapabilities, AgentList, AgentView
from planexe_ax.ws_gateway.agent_bridge import (
    AgentBridge,
    BusAgentId,
    HttpAgent,
    Lease,
    LeaseLost,
    UnknownAgent,
    taken_away,
)
from planexe_ax.ws_gateway.context import Gateway, NotProjected, gateway, unavailable
from planexe_ax.ws_gateway.schemas import LeaseView, ReportAnswer, WorkOffer
from planexe_ax.ws_gateway.security import AUTH_RESPONSES, READ, AgentCaller

router = APIRouter(tags=["agents"], responses=AUTH_RESPONSES)
GW = Annotated[Gateway, Depends(gateway)]
BRIDGE = "agent_bridge"
UNKNOWN_AGENT: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown agent."}}


def bridge(gw: GW) -> AgentBridge:
    """FastAPI dependency: the gateway's :class:`AgentBridge`."""
    found: AgentBridge = gw.extras[BRIDGE]
    return found


Bridge = Annotated[AgentBridge, Depends(bridge)]
TraceParent = Annotated[
    str | None,
    Header(description="W3C trace context of the agent's own span: the report continues it (else the attempt's)"),
]


async def startup(gw: Gateway) -> None:
    """Start the bridge (card and lease refreshes)."""
    agents = AgentBridge(gw.bus, gw.sessions, window_s=gw.settings.http_agent_ttl_s)
    await agents.start()
    gw.extras[BRIDGE] = agents
    gw.gauges["http_agents_live"] = lambda: float(len(agents.agents))
    gw.gauges["http_leases_held"] = lambda: float(len(agents.held))


async def shutdown(gw: Gateway) -> None:
    """Leave held offers to the other gateways; with none left, give them back so other agents get them at once."""
    await gw.extras[BRIDGE].stop()


# -- bodies ------------------------------------------------------------------------------------------------
class CapabilityIn(BaseModel):
    """One action the agent can do."""

    action: str = Field(examples=["http_only_work"], description="Lower-case token, as in the plan's subtasks.")
    description: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict, description="JSON Schema of the offer's params.")

    @field_validator("action")
    @classmethod
    def _token(cls, value: str) -> str:
        return check_token(value, "action")


class Registration(BaseModel):
    """An agent and what it offers."""

    agent_id: str = Field(examples=["agent_larry_001"])
    name: str = Field(min_length=1, max_length=200, examples=["Larry"])
    role: str = Field(default="", max_length=200)
    capabilities: list[CapabilityIn] = Field(default_factory=list)

    @field_validator("agent_id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_id(value, "agent_id")

    @field_validator("capabilities")
    @classmethod
    def _distinct(cls, value: list[CapabilityIn]) -> list[CapabilityIn]:
        actions = [cap.action for cap in value]
        twice = sorted({a for a in actions if actions.count(a) > 1})
        if twice:
            raise ValueError(f"action(s) listed more than once: {', '.join(twice)}")
        return value


EventType = Literal["started", "progress", "task_complete", "task_error", "blocked", "rejected", "heartbeat"]


class AgentReport(BaseModel):
    """A report of an HTTP agent on the attempt it leased; fields it does not know are ignored."""

    agent_id: str = Field(examples=["agent_larry_001"])
    event_type: EventType
    task_id: str | None = Field(default=None, description="Checked against the offer when given.")
    subtask_id: str | None = Field(default=None, description="Required, except for a heartbeat of the agent.")
    attempt: int | None = Field(default=None, ge=1, description="The offer's attempt (its lease.attempt).")
    percent: float | None = Field(default=None, ge=0, le=100, description="progress: required.")
    message: str = ""
    output: dict[str, Any] | None = Field(default=None, description="task_complete: the result.")
    error: str | None = Field(default=None, description="task_error: what went wrong.")
    retryable: bool = Field(default=True, description="task_error: whether another attempt may succeed.")
    confidence: float | None = Field(default=None, ge=0, le=1, description="task_complete: below the review "
                                     "threshold a person reviews the result.")  # fmt: skip
    reason: str = Field(default="", description="blocked: required; rejected: why.")
    reason_code: RejectReason = "other"
    max_wait_s: float | None = Field(default=None, gt=0, description="blocked: ask a person after this long.")

    @model_validator(mode="after")
    def _complete(self) -> AgentReport:
        whole = self.event_type != "heartbeat" or self.subtask_id is not None or self.attempt is not None
        missing = [name for name in ("subtask_id", "attempt") if getattr(self, name) is None]
        if whole and missing:
            raise ValueError(f"{' and '.join(missing)} required for event_type {self.event_type}")
        if self.event_type == "progress" and self.percent is None:
            raise ValueError("percent required for event_type progress")
        if self.event_type == "blocked" and not self.reason:
            raise ValueError("reason required for event_type blocked")
        return self


# -- agents ------------------------------------------------------------------------------------------------
@router.post(
    "/api/agents/register",
    status_code=status.HTTP_201_CREATED,
    summary="Register an HTTP agent (again: update its card)",
    responses={
        200: {"model": AgentView, "description": "The agent was known; its card was replaced."},
        409: {"description": "The id belongs to an agent running on the bus."},
    },
)
async def register(gw: GW, who: AgentCaller, agents: Bridge, body: Registration, response: Response) -> AgentView:
    who.act_as(body.agent_id)
    known = await read_agents.agent(gw.sessions, body.agent_id) is not None
    caps = [CapabilityCard(**cap.model_dump()) for cap in body.capabilities]
    try:
        card = await agents.register(body.agent_id, body.name, body.role, caps)
    except BusAgentId as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except BusError as exc:
        raise unavailable(exc) from exc
    if not await _mirrored(gw, card):
        raise unavailable(NotProjected(f"the read model does not show agent {card.agent_id} yet"))
    if known:
        response.status_code = status.HTTP_200_OK
    return await _agent(gw, body.agent_id)


@router.get("/api/agents", summary="Every agent, online ones first, with liveness", dependencies=[READ])
async def list_agents(gw: GW) -> AgentList:
    ttl = gw.settings.agent_ttl_s
    return AgentList(items=[_liveness(item, ttl) for item in await read_agents.list_agents(gw.sessions)])


@router.get("/api/agents/{agent_id}", summary="One agent: capabilities, work in progress, liveness",
            responses=UNKNOWN_AGENT, dependencies=[READ])  # fmt: skip
async def get_agent(gw: GW, agent_id: str) -> AgentView:
    return await _agent(gw, agent_id)


@router.get(
    "/api/agents/{agent_id}/capabilities", summary="What one agent offers", responses=UNKNOWN_AGENT, dependencies=[READ]
)
async def get_capabilities(gw: GW, agent_id: str) -> AgentCapabilities:
    agent = await _agent(gw, agent_id)
    return AgentCapabilities(agent_id=agent_id, online=agent.online, capabilities=agent.capabilities)


async def _agent(gw: Gateway, agent_id: str) -> AgentView:
    item = await read_agents.agent(gw.sessions, agent_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"unknown agent {agent_id}")
    return _liveness(item, gw.settings.agent_ttl_s)


def _liveness(item: AgentView, ttl_s: float) -> AgentView:
    """Offline as soon as the last heartbeat is older than the TTL, even before the projector's sweep says so."""
    if not item.online or item.last_heartbeat >= utcnow() - timedelta(seconds=ttl_s):
        return item
    return item.model_copy(update={"status": "offline", "online": False})


# -- the HTTP agent protocol -------------------------------------------------------------------------------
@router.get(
    "/api/agents/{agent_id}/work",
    summary="Lease the next offer for the agent's capabilities (or work pinned to it)",
    response_model=WorkOffer,
    responses={
        200: {"description": "An offer and its lease; report on it before lease.expires_at to keep it."},
        204: {"description": "No work now; poll again after Retry-After seconds."},
        **UNKNOWN_AGENT,
        409: {"description": "The id belongs to an agent running on the bus."},
    },
)
async def get_work(gw: GW, who: AgentCaller, agents: Bridge, agent_id: str, response: Response) -> WorkOffer | Response:
    who.act_as(agent_id)
    agent = await _http_agent(agents, agent_id)
    try:
        lease = await agents.next_offer(agent)
    except BusError as exc:
        raise unavailable(exc) from exc
    if lease is None:
        retry_after = max(1, math.ceil(gw.settings.heartbeat_s))
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Retry-After": str(retry_after)})
    if lease.traceparent:
        response.headers["traceparent"] = lease.traceparent
    offer = WorkOffer.model_validate({**dict(lease.offer), "lease": _lease_view(agents, agent, lease)})
    return offer.model_copy(update={"traceparent": lease.traceparent})


@router.post(
    "/api/executions/{execution_id}/events",
    summary="Report on a leased offer: started, progress, blocked, rejected, task_complete, task_error, heartbeat",
    responses={
        **UNKNOWN_AGENT,
        409: {"description": "The agent does not hold that attempt (never leased, expired, taken away, another's)."},
        422: {"description": "Not a valid report; `detail` names the field."},
    },
)
async def post_event(
    gw: GW, who: AgentCaller, agents: Bridge, execution_id: str, body: AgentReport, traceparent: TraceParent = None
) -> ReportAnswer:
    who.act_as(body.agent_id)
    agent = await _http_agent(agents, body.agent_id)
    if body.subtask_id is None or body.attempt is None:  # a heartbeat of the agent, about no attempt
        return await _answer(gw, execution_id, None, None)
    key = (execution_id, body.subtask_id, body.attempt)
    try:
        ended = await agents.ended(key)
    except BusError as exc:
        raise unavailable(exc) from exc
    if ended and ended.agent_id == body.agent_id and ended.event_type == body.event_type:
        return await _answer(gw, execution_id, body.subtask_id, None, ended.event_id, ended.seq, duplicate=True)
    try:
        lease = await agents.lease(key, body.agent_id)
        if body.task_id is not None and body.task_id != lease.offer.task_id:
            raise HTTPException(status_code=422, detail=f"task_id: subtask {body.subtask_id} belongs to task "
                                f"{lease.offer.task_id}, not {body.task_id}")  # fmt: skip
        await agents.check_current(lease)
    except LeaseLost as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    if body.event_type == "heartbeat":
        return await _answer(gw, execution_id, body.subtask_id, _lease_view(agents, agent, lease))
    event = _event(lease, body)
    try:
        ack = await agents.report(lease, event, body.event_type, traceparent)
        seq, duplicate = int(ack.seq), bool(ack.duplicate)
        if isinstance(event, SubtaskResult | SubtaskRejected):
            verdict = await _verdict(gw, lease, seq)
            seq = verdict[1] if verdict else seq
        await gw.wait_projected(seq)
    except (BusError, NotProjected) as exc:
        raise unavailable(exc) from exc
    answer = await _answer(gw, execution_id, body.subtask_id, _lease_view(agents, agent, lease) if lease.held else None,
                           event.event_id, int(ack.seq), duplicate=duplicate)  # fmt: skip
    return answer.model_copy(update={"traceparent": lease.traceparent})


async def _http_agent(agents: AgentBridge, agent_id: str) -> HttpAgent:
    try:
        return await agents.agent(agent_id)
    except UnknownAgent as exc:
        raise HTTPException(
            status_code=404, detail=f"unknown agent {agent_id}; register it with POST /api/agents/register"
        ) from exc
    except BusAgentId as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except BusError as exc:
        raise unavailable(exc) from exc


def _lease_view(agents: AgentBridge, agent: HttpAgent, lease: Lease) -> LeaseView:
    return LeaseView(
        lease_id=lease.offer.msg_id,
        expires_at=agents.expires_at(agent),
        attempt=lease.offer.attempt,
        delivered=lease.record.delivered,
    )


async def _answer(
    gw: Gateway,
    execution_id: str,
    subtask_id: str | None,
    lease: LeaseView | None,
    event_id: str | None = None,
    seq: int | None = None,
    duplicate: bool = False,
) -> ReportAnswer:
    """What happened, with the statuses the read model shows now (an agent stops when the execution ends)."""
    now = await read_agents.statuses(gw.sessions, execution_id, subtask_id)
    return ReportAnswer(
        accepted=True,
        duplicate=duplicate,
        event_id=event_id,
        seq=seq,
        subtask_status=now.subtask_status,
        execution_status=now.execution_status,
        lease=lease,
    )


def _event(lease: Lease, body: AgentReport) -> EventBase:
    """The bus event of a report, built by the agent SDK's reporter (the same event ids as a bus agent's)."""
    reporter, kind = lease.reporter, body.event_type
    if kind == "started":
        return reporter.started_event()
    if kind == "progress":
        return reporter.progress_event(body.percent or 0.0, body.message)
    if kind == "blocked":
        return reporter.blocked_event(body.reason, body.max_wait_s)
    if kind == "rejected":
        return reporter.rejected(RejectOffer(body.reason_code, body.reason))
    ok = kind == "task_complete"
    error = None if ok else body.error or body.message or "task_error reported without a message"
    return reporter.result(ok=ok, output=body.output, error=error, retryable=body.retryable, confidence=body.confidence)


# -- read-your-writes --------------------------------------------------------------------------------------
async def _mirrored(gw: Gateway, card: AgentCard) -> bool:
    """Wait until the read model's agents table shows ``card`` (or a later heartbeat of it)."""

    async def shown() -> bool:
        row = await read_agents.agent(gw.sessions, card.agent_id)
        return row is not None and row.online and row.last_heartbeat >= card.heartbeat_at

    return await gw.read_until(shown)


async def _verdict(gw: Gateway, lease: Lease, after_seq: int) -> tuple[Event, int] | None:
    """The coordinator's decision on an attempt's outcome (published after ``after_seq``), or None in time."""
    o = lease.offer

    def decided(event: Event) -> bool:
        return (
            isinstance(event, SubtaskState)
            and event.subtask_id == o.subtask_id
            and taken_away(event.status.value, event.attempt or 0, o.attempt) is not None
        )

    async with execution_events(gw.bus, o.execution_id, after_seq) as events:
        return await first_event(events, decided, gw.write_timeout_s)
