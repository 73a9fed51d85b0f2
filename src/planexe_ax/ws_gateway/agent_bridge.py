"""The HTTP agent protocol on the bus: what the SDK's runtime does for a bus agent, done for an HTTP agent.

* The agent's card in KV ``ax-agents`` is refreshed every heartbeat period for as long as the agent was heard
  from (registered, polled, posted) within ``window_s``; then the card expires, the agent is offline, and the
  coordinator re-routes its work.
* Offers come from the SDK's durable consumers (the direct ``agent-<id>``, then one per capability); each
  offer's message stays un-acked while the agent works on it, its lease extended while the agent is live.
* Reports get the event ids of :class:`planexe_ax.agents.reporting.Reporter` (a retried one is stored once);
  the message is acked once the attempt's outcome is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from planexe_ax.agents.reporting import Reporter
from planexe_ax.bus import (
    AgentCard,
    Bus,
    CapabilityCard,
    PubAck,
    SubtaskBlocked,
    SubtaskProgress,
    SubtaskRejected,
    SubtaskResult,
    TaskOffer,
    TaskStatus,
    check_id,
    utcnow,
)
from planexe_ax.bus.consumer import ErrorsOnce
from planexe_ax.bus.messages import EventBase
from planexe_ax.bus.tracing import TRACEPARENT, continued, current_traceparent
from planexe_ax.bus.work import LeasedOffer, OfferSource, every, put_card, stored_card
from planexe_ax.readmodel import Sessions
from planexe_ax.readmodel import agents as read_agents

log = logging.getLogger(__name__)

HTTP_AGENT_TTL_S = 300.0
"""An HTTP agent not heard from for this long goes offline (the default of ``PLANEXE_HTTP_AGENT_TTL_S``)."""
HTTP_HOST = "http"
"""``AgentCard.host`` of the agents registered over HTTP, which tells them from bus agents."""
FETCH_TIMEOUT_S = 0.1
"""How long one fetch waits on one consumer: a poll answers at once, with work or without."""
ENDED_KEPT = 10_000
"""Finished leases remembered, so that a retried result is answered as a duplicate instead of 409."""
HELD = frozenset({TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value, TaskStatus.BLOCKED.value})
"""Subtask states in which the agent that took an attempt still holds it."""

Key = tuple[str, str, int]
"""(execution_id, subtask_id, attempt): one lease."""


class UnknownAgent(LookupError):
    """No agent with this id was ever registered."""


class BusAgentId(ValueError):
    """The id belongs to an agent that runs on the bus, not over HTTP."""


class LeaseLost(Exception):
    """The agent does not hold the lease it reports on (never leased, taken away, or another agent's)."""


@dataclass
class HttpAgent:
    """An agent registered over HTTP and when it was last heard from."""

    card: AgentCard
    seen: float
    """Event-loop time of the last request."""
    seen_at: datetime


@dataclass
class Lease:
    """One offer held for one agent: the NATS message stays un-acked until the attempt's outcome."""

    work: LeasedOffer
    agent_id: str
    reporter: Reporter
    traceparent: str | None = None
    """The attempt's trace context: the agent's spans and reports continue it."""

    @property
    def offer(self) -> TaskOffer:
        """The offer leased."""
        return self.work.offer

    @property
    def key(self) -> Key:
        """The attempt this lease holds: (execution id, subtask id, attempt)."""
        return (self.offer.execution_id, self.offer.subtask_id, self.offer.attempt)


@dataclass(frozen=True)
class Ended:
    """How a lease ended: the outcome the agent reported."""

    agent_id: str
    event_type: str
    event_id: str
    seq: int


def taken_away(status: str, attempt: int, leased: int) -> str | None:
    """Why the read model's ``status`` / ``attempt`` of a subtask means attempt ``leased`` is over (None: it is not).

    A read model that lags shows an older attempt: that never counts against the lease.
    """
    if attempt > leased:
        return f"attempt {attempt} of the subtask has been dispatched since"
    if attempt == leased and status not in HELD:
        return f"the coordinator has moved the attempt to {status}"
    return None


class AgentBridge:
    """Leases offers to HTTP agents and publishes their reports.

    Args:
        bus: The gateway's connection.
        sessions: The read model (agents mirror, subtask states).
        window_s: How long an agent stays online after it was last heard from.
    """

    def __init__(self, bus: Bus, sessions: Sessions, window_s: float = HTTP_AGENT_TTL_S) -> None:
        self.bus, self.sessions, self.window_s = bus, sessions, window_s
        self.agents: dict[str, HttpAgent] = {}
        self.leases: dict[Key, Lease] = {}
        self.ended: OrderedDict[Key, Ended] = OrderedDict()
        self.offers = OfferSource(bus)
        self._stopped = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._log_once = ErrorsOnce(log, logging.WARNING)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start refreshing cards and leases."""
        settings = self.bus.settings
        period = min(settings.heartbeat_s, settings.ack_wait_s / 2)
        refresh = every(period, self._tick, self._stopped, self._log_once.about("refresh failed"))
        self._refresher = asyncio.create_task(refresh, name="http agents refresh")

    async def stop(self) -> None:
        """Stop refreshing; give held offers back (nak) so that other agents get them at once."""
        self._stopped.set()
        if self._refresher is not None:
            await self._refresher
        for lease in list(self.leases.values()):
            await self._give_back(lease)
        await self.offers.close()

    async def _tick(self) -> None:
        now = asyncio.get_running_loop().time()
        for agent in list(self.agents.values()):
            if now - agent.seen > self.window_s:
                await self._expire(agent)
            else:
                await self._guard("card refresh failed", self._put(agent))
        for lease in list(self.leases.values()):
            await self._guard("lease extension failed", lease.work.extend())

    async def _expire(self, agent: HttpAgent) -> None:
        agent_id = agent.card.agent_id
        del self.agents[agent_id]
        for lease in [lease for lease in self.leases.values() if lease.agent_id == agent_id]:
            await self._give_back(lease)
        log.info("http agent went quiet; no longer kept online", extra={"agent_id": agent_id})

    async def _give_back(self, lease: Lease) -> None:
        self.leases.pop(lease.key, None)
        await self._guard("nak failed", lease.work.give_back())

    async def _guard(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except Exception as exc:  # the next period tries again
            self._log_once(what, exc)

    # -- agents -------------------------------------------------------------------------------------------
    async def register(self, agent_id: str, name: str, role: str, capabilities: list[CapabilityCard]) -> AgentCard:
        """Put (or replace) the card of an HTTP agent and create its consumers.

        Raises:
            BusAgentId: when a bus agent with this id is online.
        """
        known = self.agents.get(agent_id)
        stored = known.card if known else await self._stored_card(agent_id)
        now = utcnow()
        card = AgentCard(
            agent_id=agent_id,
            name=name,
            role=role,
            capabilities=capabilities,
            started_at=stored.started_at if stored else now,
            heartbeat_at=now,
            host=HTTP_HOST,
        )
        await self._ensure_consumers(card)
        agent = self._remember(card)
        await self._put(agent)
        log.info("http agent registered", extra={"agent_id": agent_id, "actions": [c.action for c in capabilities]})
        return agent.card

    async def agent(self, agent_id: str) -> HttpAgent:
        """The registered HTTP agent ``agent_id``, marked as heard from now.

        After a gateway restart, or once its window has passed, the agent is taken back from its card in the
        bucket or its row in the read model.

        Raises:
            UnknownAgent: when no agent of that id was registered.
            BusAgentId: when the id is a bus agent's.
        """
        agent = self.agents.get(agent_id)
        if agent is None:
            try:
                check_id(agent_id, "agent_id")
            except ValueError as exc:
                raise UnknownAgent(agent_id) from exc
            card = await self._stored_card(agent_id) or await self._row_card(agent_id)
            if card is None:
                raise UnknownAgent(agent_id)
            await self._ensure_consumers(card)
            agent = self._remember(card)
            await self._put(agent)
        agent.seen, agent.seen_at = asyncio.get_running_loop().time(), utcnow()
        return agent

    def expires_at(self, agent: HttpAgent) -> datetime:
        """When the agent goes offline and loses its leases unless it is heard from again."""
        return agent.seen_at + timedelta(seconds=self.window_s)

    def _remember(self, card: AgentCard) -> HttpAgent:
        loop_now = asyncio.get_running_loop().time()
        agent = self.agents[card.agent_id] = HttpAgent(card, loop_now, utcnow())
        return agent

    async def _put(self, agent: HttpAgent) -> None:
        agent_id = agent.card.agent_id
        current = sorted(lease.offer.subtask_id for lease in self.leases.values() if lease.agent_id == agent_id)
        agent.card = agent.card.model_copy(update={"heartbeat_at": utcnow(), "current": current})
        await put_card(self.bus, agent.card)

    async def _stored_card(self, agent_id: str) -> AgentCard | None:
        """The card in the bucket when it is an HTTP agent's; None when there is none."""
        stored = await stored_card(self.bus, agent_id)
        if stored is None:
            return None
        try:
            card = AgentCard.model_validate_json(stored)
        except ValidationError:
            return None
        if card.host != HTTP_HOST:
            raise BusAgentId(f"agent {agent_id} is a bus agent ({card.host}); it cannot be driven over HTTP")
        return card

    async def _row_card(self, agent_id: str) -> AgentCard | None:
        row = await read_agents.agent(self.sessions, agent_id)
        if row is None:
            return None
        caps = [CapabilityCard.model_validate(cap.model_dump()) for cap in row.capabilities]
        return AgentCard(agent_id=agent_id, name=row.name, role=row.role, capabilities=caps,
                         started_at=row.started_at, heartbeat_at=utcnow(), host=HTTP_HOST)  # fmt: skip

    async def _ensure_consumers(self, card: AgentCard) -> None:
        await self.offers.ensure(card.agent_id, [cap.action for cap in card.capabilities])

    # -- leasing ------------------------------------------------------------------------------------------
    async def next_offer(self, agent: HttpAgent) -> Lease | None:
        """Lease the next offer for ``agent``: work pinned to it first, then its capabilities'; None when none."""
        durables = OfferSource.durables(agent.card.agent_id, [cap.action for cap in agent.card.capabilities])
        for durable in durables:
            while (work := await self.offers.fetch(durable, FETCH_TIMEOUT_S)) is not None:
                lease = await self._take(agent, work)
                if lease is not None:
                    return lease
        return None

    async def _take(self, agent: HttpAgent, work: LeasedOffer) -> Lease | None:
        offer = work.offer
        why = await self._taken_away(offer.execution_id, offer.subtask_id, offer.attempt)
        if why is not None:  # the coordinator has moved on: nobody should do this attempt
            await work.finish()
            log.info("stale offer dropped", extra={"msg_id": offer.msg_id, "reason": why})
            return None
        lease = Lease(work, agent.card.agent_id, Reporter(self.bus, offer, agent.card.agent_id))
        with work.attempt_span(lease.agent_id):  # short: the agent continues it
            lease.traceparent = current_traceparent()
        previous = self.leases.get(lease.key)
        if previous is not None:  # redelivered: the lease moved (the first holder had let it lapse)
            log.warning("lease moved", extra={"msg_id": offer.msg_id, "from": previous.agent_id, "to": lease.agent_id})
        self.leases[lease.key] = lease
        log.info("offer leased", extra={"msg_id": offer.msg_id, "agent_id": lease.agent_id})
        return lease

    def lease(self, key: Key, agent_id: str) -> Lease:
        """The lease ``agent_id`` holds on ``key``.

        Raises:
            LeaseLost: when it holds none (never leased, taken away, ended, or another agent's).
        """
        lease = self.leases.get(key)
        if lease is not None and lease.agent_id == agent_id:
            return lease
        execution_id, subtask_id, attempt = key
        what = f"attempt {attempt} of subtask {subtask_id} of execution {execution_id}"
        ended = self.ended.get(key)
        if ended is not None:
            raise LeaseLost(f"the lease on {what} ended with {ended.event_type} from {ended.agent_id}")
        if lease is not None:
            raise LeaseLost(f"agent {agent_id} does not hold {what}: another agent does")
        raise LeaseLost(f"agent {agent_id} holds no lease on {what} (never leased, expired, or given back)")

    async def check_current(self, lease: Lease) -> None:
        """Make sure, from the read model, that the coordinator still wants the attempt.

        Raises:
            LeaseLost: when it took the attempt away (the offer is then acked and the lease dropped).
        """
        o = lease.offer
        why = await self._taken_away(o.execution_id, o.subtask_id, o.attempt)
        if why is not None:
            self.leases.pop(lease.key, None)
            await self._guard("ack failed", lease.work.finish())
            raise LeaseLost(f"attempt {o.attempt} of subtask {o.subtask_id} was taken away: {why}")

    async def _taken_away(self, execution_id: str, subtask_id: str, attempt: int) -> str | None:
        row = await read_agents.subtask_attempt(self.sessions, execution_id, subtask_id)
        return None if row is None else taken_away(row.status, row.attempt, attempt)

    # -- reports ------------------------------------------------------------------------------------------
    async def report(self, lease: Lease, event: EventBase, event_type: str, traceparent: str | None = None) -> PubAck:
        """Publish one report; progress extends the lease, an outcome (result, rejection) ends it.

        The report continues ``traceparent`` (the agent's span), else the attempt's context.
        """
        with continued({TRACEPARENT: traceparent or lease.traceparent or ""}):
            ack = await self.bus.publish_event(event)
        if isinstance(event, SubtaskResult | SubtaskRejected):
            await self._guard("ack failed", lease.work.finish())
            self.leases.pop(lease.key, None)
            self.ended[lease.key] = Ended(lease.agent_id, event_type, event.event_id, int(ack.seq))
            while len(self.ended) > ENDED_KEPT:
                self.ended.popitem(last=False)
        elif isinstance(event, SubtaskProgress | SubtaskBlocked):
            await self._guard("lease extension failed", lease.work.extend())
        return ack
