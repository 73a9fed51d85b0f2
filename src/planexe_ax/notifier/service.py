"""The notifier process: a durable consumer of inbox_opened events that mails the people each item is for.

At least once: a message is acked only after the mail server accepted every mail for it; a mail server
that is down gets the event again later (nak with a delay). Each (item, address) is mailed once: the link
file notes what was sent, so a redelivered event tells nobody twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from planexe_ax.bus import (
    Bus,
    InboxOpened,
    Msg,
    PullLoop,
    Subjects,
    decode_event,
    decode_event_on,
    tracing,
    with_plan,
)
from planexe_ax.bus.messages import ExecutionCreated
from planexe_ax.bus.replay import last_event
from planexe_ax.common.inbox_links import LinkStore
from planexe_ax.common.smtp import SmtpRefused, SmtpUnavailable, send_message
from planexe_ax.config import Settings
from planexe_ax.errors import PlanUnavailable
from planexe_ax.notifier.mail import answer_link, message, recipients

log = logging.getLogger(__name__)

DLQ_SOURCE = "notifier"


class Notifier:
    """Tell people of the inbox items opened for them, by email through ``settings.smtp_url``.

    Args:
        bus: A connected bus (the notifier's identity).
        settings: smtp_url, notify_to, notify_from, public_url, notify_link_ttl_s, notify_retry_s and the token
            folder.
    """

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.links = LinkStore(settings.links_path)
        self.retry_delay_s = settings.notify_retry_s
        self.sent = 0
        self._loop = PullLoop(bus, bus.subjects.events_stream, Subjects.NOTIFIER_INBOX, self._handle)

    async def run(self, stop: asyncio.Event) -> None:
        """Mail people until ``stop`` is set."""
        if not self.settings.smtp_url:
            log.warning("PLANEXE_SMTP_URL is unset: inbox items are acknowledged without mailing anyone")
        await self._loop.run(stop)

    async def _handle(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            await self._one(msg)

    async def _one(self, msg: Msg) -> None:
        try:
            event = decode_event_on(self.bus.subjects, msg.subject, msg.data)
        except ValueError as exc:
            await self.bus.dead_letter(DLQ_SOURCE, msg, f"undecodable event: {exc}")
            return
        if not isinstance(event, InboxOpened):
            await msg.ack()
            return
        try:
            await self.notify(event)
        except SmtpUnavailable as exc:
            log.warning(
                "mail server unavailable; the event comes again", extra={"item_id": event.item_id, "error": str(exc)}
            )
            await msg.nak(delay=self.retry_delay_s)
            return
        except SmtpRefused as exc:
            await self.bus.dead_letter(DLQ_SOURCE, msg, f"inbox item {event.item_id}: {exc}")
            return
        await msg.ack()

    async def notify(self, event: InboxOpened) -> list[str]:
        """Mail everyone ``event`` is for who was not mailed of it yet; returns who was mailed now.

        Raises:
            SmtpUnavailable: the mail server did not take a mail (those before it count as sent).
            SmtpRefused: the server or the URL refuses the mail for good.
        """
        smtp_url = self.settings.smtp_url
        if not smtp_url:
            return []
        plan_notify, title = await self._plan_of(event.execution_id)
        mailed = []
        for to in recipients(self.settings.notify_to, plan_notify, event.kind):
            if self.links.was_sent(event.item_id, to):
                continue
            token = self.links.issue(event.item_id, to, self.settings.notify_link_ttl_s)
            link = answer_link(self.settings.dashboard_url, event.item_id, token)
            mail = message(event, to, self.settings.notify_from, link, title)
            attributes = {"planexe.item_id": event.item_id, "planexe.inbox_kind": event.kind,
                          "server.address": urlsplit(smtp_url).hostname or ""}  # fmt: skip
            with tracing.client_span("mail inbox item", event.execution_id, attributes):
                await asyncio.to_thread(send_message, smtp_url, mail)
            self.links.mark_sent(token)
            self.sent += 1
            mailed.append(to)
            log.info("inbox item mailed", extra={"item_id": event.item_id, "to": to})
        return mailed

    async def _plan_of(self, execution_id: str) -> tuple[Any, str]:
        """The plan's ``metadata.notify`` and title, from the execution's execution_created event."""
        data = await last_event(self.bus, execution_id, "execution_created")
        if not data:
            return None, execution_id
        created = decode_event(data)
        if not isinstance(created, ExecutionCreated):
            return None, execution_id
        try:
            plan = (await with_plan(self.bus, created)).plan
        except PlanUnavailable as exc:
            log.warning("the plan's notify addresses cannot be read", extra={"error": str(exc)})
            return None, execution_id
        if plan is None:
            return None, execution_id
        return plan.metadata.get("notify"), plan.title or plan.plan_id
