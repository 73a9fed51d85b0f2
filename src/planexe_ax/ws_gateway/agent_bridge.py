"""The HTTP agent protocol on the bus: what the SDK's runtime does for a bus agent, done for an HTTP agent.

* The agent's card in KV ``ax-agents`` is refreshed every heartbeat period for as long as the agent was heard
  from (registered, polled, posted) within ``window_s``; then the card expires, the agent is offline, and the
  coordinator re-routes its work.
* Offers come from the SDK's durable consumers (the direct ``agent-<id>``, then one per capability); each
  offer's message stays un-acked while the agent works on it, its lease extended while the agent is live.
* Leases live on the bus (:mod:`planexe_ax.bus.http_leases`), not in this process: an agent may lease work
  from one gateway and report on it through another; every gateway extends the leases of live agents and any
  one of them gives back (nak) the leases of an agent that went quiet.
* Reports get the event ids of :class:`planexe_ax.agents.reporting.Reporter` with the lease's own secret (a
  retried one is stored once, whichever gateway it came through); the message is acked once the attempt's
  outcome is published.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from planexe_ax.bus.http_leases import (
    ACK,
    PROGRESS,
    Ended,
    HttpLease,
    Key,
    LeaseChanged,
)
from planexe_ax.bus.messages import EventBase
from planexe_ax.bus.tracing import TRACEPARENT, continued, current_traceparent
from planexe_ax.bus.work import LeasedOffer, OfferSource, put_card, stored_card
from planexe_ax.readmodel import Sessions
from planexe_ax.readmodel import agents as read_agents
from planexe_ax.ws_gateway.shared_leases import SharedLeases

log = logging.getLogger(__name__)

HTTP_AGENT_TTL_S = 300.0
"""An HTTP agent not heard from for this long goes offline (the default of ``PLANEXE_HTTP_AGENT_TTL_S``)."""
HTTP_HOST = "http"
"""``AgentCard.host`` of the agents registered over HTTP, which tells them from bus agents."""
FETCH_TIMEOUT_S = 0.1
"""How long one fetch waits on one consumer: a poll answers at once, with work or without."""
HELD = frozenset({TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value, TaskStatus.BLOCKED.value})
"""Subtask states in which the agent that took an attempt still holds it."""


class UnknownAgent(LookupError):
    """No agent with this id was ever registered."""


class BusAgentId(ValueError):
    """The id belongs to an agent that runs on the bus, not over HTTP."""


class LeaseLost(Exception):
    """The agent does not hold the lease it reports on (never leased, taken away, or another agent's)."""


@dataclass
class HttpAgent:
    """An agent registered over HTTP whose card this gateway refreshes, and when it was last heard from here."""

    card: AgentCard
    seen_at: datetime


@dataclass
class Lease:
    """One offer held for one agent, as read from the bus: the NATS message stays un-acked until the outcome."""

    record: HttpLease
    revision: int
    reporter: Reporter
    held: bool = True
    """False once the outcome is reported (or the attempt was taken away)."""

    @property
    def offer(self) -> TaskOffer:
        """The offer leased."""
        return self.record.offer

    @property
    def agent_id(self) -> str:
        """The agent holding it."""
        return self.record.agent_id

    @property
    def traceparent(self) -> str | None:
        """The attempt's trace context: the agent's spans and reports continue it."""
        return self.record.traceparent

    @property
    def key(self) -> Key:
        """The attempt this lease holds: (execution id, subtask id, attempt)."""
        return self.record.key


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
    """Leases offers to HTTP agents and publishes their reports; the leases themselves live on the bus.

    Args:
        bus: The gateway's connection.
        sessions: The read model (agents mirror, subtask states).
        window_s: How long an agent stays online after it was last heard from (by any gateway).
    """

    def __init__(self, bus: Bus, sessions: Sessions, window_s: float = HTTP_AGENT_TTL_S) -> None:
        self.bus, self.sessions = bus, sessions
        self.shared = SharedLeases(bus, window_s)
        self.store = self.shared.store
        self.agents: dict[str, HttpAgent] = {}
        """The agents whose cards this gateway refreshes (heard from here)."""
        self.offers = OfferSource(bus)

    @property
    def window_s(self) -> float:
        """How long an agent stays online after it was last heard from (by any gateway)."""
        return self.shared.window_s

    @window_s.setter
    def window_s(self, value: float) -> None:
        self.shared.window_s = value

    @property
    def held(self) -> dict[Key, tuple[HttpLease, int]]:
        """Every gateway's held leases, as this one knows them."""
        return self.shared.held

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Follow the leases on the bus; refresh the cards of live agents and the leases every period."""
        await self.shared.start(also=self._refresh_cards)

    async def stop(self) -> None:
        """Stop refreshing. With no other gateway left to keep them, give held offers back (nak) at once."""
        await self.shared.stop()
        await self.offers.close()

    async def _refresh_cards(self) -> None:
        for agent in list(self.agents.values()):
            if self.shared.live(agent.card.agent_id):
                await self.shared.guard("card refresh failed", self._put(agent))
            else:
                del self.agents[agent.card.agent_id]
                log.info("http agent went quiet; no longer kept online", extra={"agent_id": agent.card.agent_id})

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
        agent = await self._remember(card)
        await self._put(agent)
        log.info("http agent registered", extra={"agent_id": agent_id, "actions": [c.action for c in capabilities]})
        return agent.card

    async def agent(self, agent_id: str) -> HttpAgent:
        """The registered HTTP agent ``agent_id``, marked as heard from now (on the bus, for every gateway).

        After a gateway restart, when it was registered through another gateway, or once its window has
        passed, the agent is taken back from its card in the bucket or its row in the read model.

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
            agent = await self._remember(card)
            await self._put(agent)
        else:
            agent.seen_at = await self.shared.saw(agent_id)
        return agent

    def expires_at(self, agent: HttpAgent) -> datetime:
        """When the agent goes offline and loses its leases unless it is heard from again."""
        return agent.seen_at + timedelta(seconds=self.window_s)

    async def _remember(self, card: AgentCard) -> HttpAgent:
        agent = self.agents[card.agent_id] = HttpAgent(card, await self.shared.saw(card.agent_id))
        return agent

    async def _put(self, agent: HttpAgent) -> None:
        current = self.shared.holding(agent.card.agent_id)
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
        offer, agent_id = work.offer, agent.card.agent_id
        why = await self._taken_away(offer.execution_id, offer.subtask_id, offer.attempt)
        if why is not None:  # the coordinator has moved on: nobody should do this attempt
            await work.finish()
            log.info("stale offer dropped", extra={"msg_id": offer.msg_id, "reason": why})
            return None
        with work.attempt_span(agent_id):  # short: the agent continues it
            traceparent = current_traceparent()
        record = HttpLease(offer=offer, agent_id=agent_id, reply=work.reply, delivered=work.delivered,
                           report_key=secrets.token_hex(32), traceparent=traceparent)  # fmt: skip
        try:
            previous = await self.store.get(record.key)
            revision = await self.store.put(record)
        except Exception:  # not held by anyone: let another poll have it now rather than after the ack wait
            await self.shared.guard("nak failed", work.give_back())
            raise
        if previous is not None and previous[0].ended is None:  # redelivered: the first holder let it lapse
            log.warning("lease moved", extra={"msg_id": offer.msg_id, "from": previous[0].agent_id, "to": agent_id})
        self.held[record.key] = (record, revision)
        log.info("offer leased", extra={"msg_id": offer.msg_id, "agent_id": agent_id})
        return self._lease(record, revision)

    def _lease(self, record: HttpLease, revision: int) -> Lease:
        counts = (record.progress_n, record.blocked_n)
        reporter = Reporter(self.bus, record.offer, record.agent_id, bytes.fromhex(record.report_key), counts)
        return Lease(record, revision, reporter)

    async def ended(self, key: Key) -> Ended | None:
        """How the lease on ``key`` ended; None when it has not (or is not known)."""
        found = await self.store.get(key)
        return None if found is None else found[0].ended

    async def lease(self, key: Key, agent_id: str) -> Lease:
        """The lease ``agent_id`` holds on ``key``, whichever gateway it was taken from.

        Raises:
            LeaseLost: when it holds none (never leased, taken away, ended, or another agent's).
        """
        found = await self.store.get(key)
        execution_id, subtask_id, attempt = key
        what = f"attempt {attempt} of subtask {subtask_id} of execution {execution_id}"
        if found is None:
            raise LeaseLost(f"agent {agent_id} holds no lease on {what} (never leased, expired, or given back)")
        record, revision = found
        if record.ended is not None:
            raise LeaseLost(f"the lease on {what} ended with {record.ended.event_type} from {record.ended.agent_id}")
        if record.agent_id != agent_id:
            raise LeaseLost(f"agent {agent_id} does not hold {what}: another agent does")
        return self._lease(record, revision)

    async def check_current(self, lease: Lease) -> None:
        """Make sure, from the read model, that the coordinator still wants the attempt.

        Raises:
            LeaseLost: when it took the attempt away (the offer is then acked and the lease dropped).
        """
        o = lease.offer
        why = await self._taken_away(o.execution_id, o.subtask_id, o.attempt)
        if why is not None:
            lease.held = False
            await self.shared.guard("ack failed", self.store.settle(lease.record.reply, ACK))
            with contextlib.suppress(LeaseChanged):
                await self.store.remove(lease.key, lease.revision)
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
            await self.shared.guard("ack failed", self.store.settle(lease.record.reply, ACK))
            ended = Ended(agent_id=lease.agent_id, event_type=event_type, event_id=event.event_id, seq=int(ack.seq))
            await self.store.put(lease.record.model_copy(update={"ended": ended, "written_at": utcnow()}))
            self.held.pop(lease.key, None)
            lease.held = False
        elif isinstance(event, SubtaskProgress | SubtaskBlocked):
            await self.shared.guard("lease extension failed", self.store.settle(lease.record.reply, PROGRESS))
            progress_n, blocked_n = lease.reporter.counts
            update = {"progress_n": progress_n, "blocked_n": blocked_n, "written_at": utcnow()}
            record = lease.record.model_copy(update=update)
            try:
                lease.revision = await self.store.update(record, lease.revision)
                lease.record = record
            except LeaseChanged:  # reported through two gateways at once: the next count may repeat an id
                log.warning("lease changed while reporting", extra={"msg_id": lease.offer.msg_id})
        return ack
