"""Notifications: an opened inbox item is mailed (a real local SMTP server) with a one-time link that answers it."""

from __future__ import annotations

import email
import socket
from collections.abc import AsyncIterator, Iterator
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller

from planexe_ax.bus import InboxOpened
from planexe_ax.config import Settings
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, running_stack
from tests.integration.test_gateway_executions import (
    all_events,
    people_plan,
    start,
    until_item,
    until_status,
    upload,
)

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

BACKGROUND_AND_NOTIFIER = ("coordinator", "projector", "agents", "notifier")


class Sink:
    """An SMTP server's handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
async def notified(
    nats_url: str, settings: Settings, postgres_url: str, smtp: tuple[Sink, int]
) -> AsyncIterator[tuple[Stack, Sink]]:
    sink, port = smtp
    configured = settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{port}",
            "public_url": "http://dashboard.example:8000/",
            "notify_to": {"approval": ["ann@example.org"], "human_task": ["bob.smith@example.org"]},
        }
    )
    async with running_stack(configured, nats_url, postgres_url, BACKGROUND_AND_NOTIFIER) as stack:
        yield stack, sink


async def mail_to(sink: Sink, to: str, item_id: str) -> EmailMessage:
    """The mail to ``to`` about ``item_id``, once it arrived."""

    async def arrived() -> EmailMessage | None:
        return next((m for m in sink.messages if m["To"] == to and item_id in m.get_content()), None)

    return await eventually(arrived)


def link_of(message: EmailMessage) -> tuple[str, str, str]:
    """The link in ``message``: its address before the fragment, the item id and the token."""
    [link] = [line for line in message.get_content().splitlines() if "/answer#" in line]
    parts = urlsplit(link)
    fragment = parse_qs(parts.fragment)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", fragment["item"][0], fragment["token"][0]


async def test_the_people_an_item_is_for_are_mailed_a_link_that_answers_it_once(notified: tuple[Stack, Sink]) -> None:
    stack, sink = notified
    plan = people_plan("mailed") | {"metadata": {"notify": ["carol@example.org"]}}
    await upload(stack, plan)
    execution_id = (await start(stack, "mailed"))["execution_id"]
    approval = await until_item(stack, execution_id, "approval")

    to_ann = await mail_to(sink, "ann@example.org", approval["item_id"])
    to_carol = await mail_to(sink, "carol@example.org", approval["item_id"])
    page, item_id, token = link_of(to_ann)
    assert (page, item_id) == ("http://dashboard.example:8000/answer", approval["item_id"])
    assert "approval" in to_ann["Subject"]
    assert link_of(to_carol)[2] != token, "each addressee has a link of their own"
    assert (await stack.client_as(None).get("/answer")).status_code == 200

    async with stack.client_as(token) as ann:
        read = await ann.get(f"/api/inbox/{item_id}")
        others = await ann.get("/api/inbox")
        approved = await ann.post(f"/api/inbox/{item_id}", json={"action": "approve", "comment": "ok"})
        again = await ann.post(f"/api/inbox/{item_id}", json={"action": "approve"})
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "open"
    assert others.status_code == 401, "a link reads its own item only"
    assert approved.status_code == 200, approved.text
    assert (approved.json()["resolution"], approved.json()["resolved_by"]) == ("approved", "ann@example.org")
    assert again.status_code == 401, again.text
    assert "used already" in again.json()["detail"]

    human = await until_item(stack, execution_id, "human_task")
    _, human_id, bob_token = link_of(await mail_to(sink, "bob.smith@example.org", human["item_id"]))
    async with stack.client_as(token) as ann, stack.client_as(bob_token) as bob:
        wrong_item = await ann.post(f"/api/inbox/{human_id}", json={"action": "complete"})
        done = await bob.post(f"/api/inbox/{human_id}", json={"action": "complete", "output": {"called": True}})
    assert wrong_item.status_code == 401, wrong_item.text
    assert done.status_code == 200, done.text
    assert done.json()["resolved_by"] == "bob.smith@example.org"

    await until_status(stack, execution_id, "COMPLETED")
    tree = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    call = tree["phases"][0]["tasks"][-1]["subtasks"][0]
    assert call["agent_id"] == "person-bob_smith_example_org"
    told = sorted(m["To"] for m in sink.messages)
    assert told == ["ann@example.org", "bob.smith@example.org", "carol@example.org", "carol@example.org"], "once each"


async def test_a_mail_server_that_is_down_gets_the_item_later_and_each_address_is_told_once(
    nats_url: str, settings: Settings, postgres_url: str
) -> None:
    sink, port = Sink(), _free_port()
    configured = settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{port}", "notify_retry_s": 0.2, "notify_to": {"*": ["ann@example.org"]}}
    )
    async with running_stack(configured, nats_url, postgres_url, BACKGROUND_AND_NOTIFIER) as stack:
        await upload(stack, people_plan("later", approval=True))
        execution_id = (await start(stack, "later"))["execution_id"]
        approval = await until_item(stack, execution_id, "approval")
        notifier = stack.services.notifier
        assert notifier is not None
        assert notifier.sent == 0, "nobody listens on the SMTP port yet"

        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            await mail_to(sink, "ann@example.org", approval["item_id"])
            opened = await all_events(stack, execution_id, type="inbox_opened")
            again = await notifier.notify(InboxOpened.model_validate(opened[0]["data"]))
        finally:
            controller.stop()
    assert again == [], "a redelivered event mails nobody twice"
    assert [m["To"] for m in sink.messages] == ["ann@example.org"]
    assert notifier.sent == 1
