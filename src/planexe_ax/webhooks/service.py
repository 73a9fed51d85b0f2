"""The webhook delivery service: AX_EVENTS -> owed deliveries (durable, acked after commit) -> signed POSTs.

Two loops share the read model. The consumer turns each batch of events into ``webhook_deliveries`` rows
for the webhooks subscribed to them, commits them with its checkpoint, and only then acks: a kill -9 loses
nothing. The dispatcher POSTs due deliveries, the earliest pending one of each (webhook, execution) at a
time, so each receiver sees an execution's events in order; a failure is retried with exponential backoff
until ``webhook_give_up_s``, then the delivery fails and its webhook is disabled with the reason, and a
``webhook_disabled`` command asks the coordinator to open an ``acknowledge`` inbox item on the execution of
the event given up on, so a person is told.

Any number of services may run on one read model: the holder of key ``webhooks.<durable>`` in the leases
bucket consumes and delivers, the others stand by and take over when it stops renewing (as projectors do).
A take-over starts from the checkpoint stored with the deliveries; a POST the old holder had in flight and
not recorded is sent again (at least once: receivers de-duplicate on ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from planexe_ax.bus import (
    Bus,
    Msg,
    PullLoop,
    Subjects,
    WebhookDisabled,
    decode_event,
    event_ids,
    facts,
    stream_seq,
)
from planexe_ax.bus.leader import HoldsLease, LeaderLease, Terms, default_holder
from planexe_ax.bus.replay import resume_after, rewind_if_lost
from planexe_ax.config import Settings
from planexe_ax.readmodel import webhook_queue as queue
from planexe_ax.readmodel.db import make_engine, make_session_factory
from planexe_ax.readmodel.events import event_item
from planexe_ax.readmodel.migrate import upgrade
from planexe_ax.webhooks.send import Sender, shown_url

log = logging.getLogger(__name__)
BATCH = 500
PARALLEL = 32


def retry_delay_s(settings: Settings, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: the initial delay doubled each time, capped."""
    return float(min(settings.webhook_backoff_initial_s * 2 ** (attempts - 1), settings.webhook_backoff_max_s))


class WebhookService(HoldsLease):
    """Deliver every event to the webhooks subscribed to it; see the module docstring.

    Args:
        bus: A connected bus.
        settings: Backoff, give-up, timeout and egress settings.
        durable: The durable consumer on AX_EVENTS (it must exist; the topology creates the default).
        lease: Deliver only while holding the lease ``webhooks.<durable>`` (False: as if alone).
        holder: The name stored in the lease; default host, process id and a random suffix.
    """

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        durable: str = Subjects.WEBHOOK_EVENTS,
        *,
        lease: bool = True,
        holder: str | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.durable = durable
        self.engine = make_engine(settings.effective_database_url)
        self.sessions = make_session_factory(self.engine)
        self.sender = Sender(settings.fetch_allow, settings.webhook_timeout_s)
        self.plans: dict[str, str] = {}
        self.delivered = 0
        self.told = 0
        """webhook_disabled commands sent."""
        self._wake = asyncio.Event()
        self._disabling = asyncio.Lock()
        self._loop = PullLoop(bus, bus.subjects.events_stream, durable, self._handle_batch, batch=BATCH)
        key = LeaderLease(bus, Subjects.webhooks_lease(durable), holder or default_holder()) if lease else None
        self._lead = Terms(key, self._position, f"webhooks {durable}")
        self._started = False
        self._after = 0
        """The checkpoint: every event up to it is stored as owed (or owed to nobody)."""

    async def start(self) -> None:
        """Migrate the read model; then deliver at once when no other service does, else stand by."""
        await upgrade(self.settings.effective_database_url)
        self._started = True
        leading = await self._lead.try_lead()
        log.info("webhook delivery started", extra={"durable": self.durable, "leading": leading})

    async def _position(self) -> None:
        """Put the consumer just after the last event stored as owed: the read model's checkpoint is the position."""
        self._after = await queue.checkpoint(self.sessions, self.durable)
        await resume_after(self.bus, self.durable, self._after)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver while holding the lease, standing by otherwise, until ``stop`` is set."""
        if not self._started:
            await self.start()
        try:
            await self._lead.run(stop, lambda ended: [self._loop.run(ended), self._dispatch(ended)])
        finally:
            await self.close()

    async def close(self) -> None:
        """Give up the lease, close the HTTP client and the read model; safe to call twice."""
        await self._lead.step_down()
        await self.sender.close()
        await self.engine.dispose()

    # -- consumer ------------------------------------------------------------------------------------------
    async def _handle_batch(self, msgs: list[Msg]) -> None:
        events = [(stream_seq(m), event) for m in msgs for event in _events(m.data)]
        await rewind_if_lost(self.bus, self.durable, self._after, [stream_seq(m) for m in msgs])  # raises Rewound
        subs = await queue.subscriptions(self.sessions)
        for _, event in events:
            if event and event.get("type") == "execution_created":
                self.plans[str(event["execution_id"])] = str((event.get("plan") or {}).get("plan_id", ""))
        unknown = {str(e["execution_id"]) for _, e in events if e and str(e["execution_id"]) not in self.plans}
        self.plans.update(await queue.plans_of(self.sessions, unknown) if subs else {})
        owed: list[tuple[str, queue.Owed]] = []
        for seq, event in events:
            if event is None:
                continue  # undecodable: the projector dead-letters it; nobody is owed it
            ex, kind = str(event["execution_id"]), str(event.get("type"))
            wanting = [s.webhook_id for s in subs if s.wants(seq, kind, ex, self.plans.get(ex))]
            if wanting:
                payload = event_item(seq, event).model_dump_json()
                item = queue.Owed(seq, str(event["event_id"]), kind, ex, payload)
                owed += [(webhook_id, item) for webhook_id in wanting]
        top = max(stream_seq(m) for m in msgs)
        if await queue.enqueue(self.sessions, self.durable, top, owed):
            self._wake.set()
        self._after = max(self._after, top)
        for msg in msgs:
            await msg.ack()

    # -- dispatcher ----------------------------------------------------------------------------------------
    async def _dispatch(self, stop: asyncio.Event) -> None:
        gate = asyncio.Semaphore(PARALLEL)
        while not stop.is_set():
            try:
                runs = await queue.due(self.sessions)
                if runs:
                    await asyncio.gather(*(self._deliver_run(run, gate) for run in runs))
                    continue
                await self._idle(stop)
            except Exception:  # the read model away: log, wait a round, try again
                log.exception("webhook dispatch failed; trying again")
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        wait_s = self.settings.webhook_poll_s
        upcoming = await queue.next_due_at(self.sessions)
        if upcoming is not None:
            wait_s = max(0.0, min(wait_s, (upcoming - datetime.now(UTC)).total_seconds()))
        self._wake.clear()
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, woken}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopping, woken):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _deliver_run(self, run: list[queue.Due], gate: asyncio.Semaphore) -> None:
        """Deliver one execution's run to one webhook in order; stop at the first failure (it is retried)."""
        for item in run:
            async with gate:
                outcome = await self.sender.send(item)
            if outcome.delivered:
                self.delivered += 1
            else:
                outcome = self._next_step(item, outcome)
            if outcome.disable is not None:
                await self._disable(item, outcome)
            else:
                await queue.record(self.sessions, item, outcome)
            if not outcome.delivered:
                return

    async def _disable(self, item: queue.Due, outcome: queue.Outcome) -> None:
        """Tell a person, then record the give-up (which disables the webhook).

        The command goes first: a crash before the record gives up on the same attempt again after the
        restart, and the same command is de-duplicated. Runs of other executions that give up on the same
        webhook at the same moment wait here and find it disabled: one person is told once.
        """
        async with self._disabling:
            if await queue.is_active(self.sessions, item.webhook_id):
                command_id = event_ids.webhook_disabled(item.webhook_id, item.event_id, item.attempts + 1)
                await self.bus.send_command(
                    WebhookDisabled(command_id=command_id, execution_id=item.execution_id, webhook_id=item.webhook_id,
                                    url=shown_url(item.url), event_id=item.event_id, reason=outcome.disable or "")
                )  # fmt: skip
                self.told += 1
            await queue.record(self.sessions, item, outcome)

    def _next_step(self, item: queue.Due, outcome: queue.Outcome) -> queue.Outcome:
        now = datetime.now(UTC)
        attempts = item.attempts + 1
        if now - item.first_due_at >= timedelta(seconds=self.settings.webhook_give_up_s):
            reason = (
                f"gave up on event {item.event_id} after {attempts} attempts over "
                f"{(now - item.first_due_at).total_seconds():.0f}s; last error: {outcome.error}"
            )
            log.warning("webhook disabled", extra={"webhook_id": item.webhook_id, "reason": reason})
            return queue.Outcome(**{**outcome.__dict__, "disable": reason})
        retry_at = now + timedelta(seconds=retry_delay_s(self.settings, attempts))
        return queue.Outcome(**{**outcome.__dict__, "retry_at": retry_at})


def _events(data: bytes) -> list[dict[str, Any] | None]:
    """The events a message stands for, as the read model stores them (upcast, validated); [None]: undecodable.

    A ``subtask_state`` that carries its task's ``task_state`` is two events (:func:`~planexe_ax.bus.facts`), each
    delivered on its own to the webhooks that want its type, with the message's stream position.
    """
    try:
        return [fact.model_dump(mode="json", by_alias=True) for fact in facts(decode_event(data))]
    except ValueError:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
        return [None]
