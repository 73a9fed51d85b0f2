"""The dashboard's webhooks page in a real headless Chromium against a stack with the delivery service:
register (the secret shown once), the delivery log with its attempts, redeliver, disable and enable, rotate
the secret, delete; a token without the operator role is told so (one stack for all: it takes seconds to
start)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from planexe_ax.cli.services import BACKGROUND
from planexe_ax.config import Settings
from planexe_ax.ws_gateway.tokens import Role
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack, example_document, running_stack
from tests.helpers.webhook_receiver import Receiver

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.nats,
    pytest.mark.postgres,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]
WAIT_MS = 10_000
FAST = {"fetch_allow": ["127.0.0.1"], "webhook_backoff_initial_s": 0.05, "webhook_backoff_max_s": 0.2,
        "webhook_poll_s": 0.1}  # fmt: skip


@pytest.fixture
async def stack(settings: Settings, nats_url: str, postgres_url: str) -> AsyncIterator[Stack]:
    configured = settings.model_copy(update=FAST)
    async with running_stack(configured, nats_url, postgres_url, (*BACKGROUND, "webhooks")) as started:
        yield started


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(browser: Browser, stack: Stack, token: str, errors: list[str]) -> Page:
    """A page logged in with ``token`` on the webhooks page; page errors and CSP violations go to ``errors``."""
    context = await browser.new_context(viewport={"width": 1500, "height": 1200})
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Security Policy" in msg.text else None)
    await page.goto(f"{stack.url}/?token={token}")
    await page.get_by_role("link", name="Webhooks").click()
    await expect(page.locator("#webhooks-view")).to_be_visible()
    return page


async def deliveries(stack: Stack, webhook_id: str) -> list[dict[str, Any]]:
    answer = await stack.client.get(f"/api/webhooks/{webhook_id}/deliveries", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def all_delivered(stack: Stack, webhook_id: str, attempts: int = 1) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        found = await deliveries(stack, webhook_id)
        settled = found and all(d["status"] == "delivered" for d in found)
        return found if settled and sum(len(d["attempts"]) for d in found) >= attempts else None

    return await eventually(done, timeout=WAIT_MS / 1000)


async def test_webhooks_are_registered_followed_redelivered_rotated_and_deleted(stack: Stack, browser: Browser) -> None:
    errors: list[str] = []
    receiver = Receiver().start()
    try:
        page = await signed_in(browser, stack, stack.token, errors)
        form = page.locator("#webhook-form")
        await form.locator("input[name=url]").fill(receiver.url)
        await form.locator("input[name=event_types]").fill("execution_state")
        await form.locator("input[name=description]").fill("from the page")
        await form.get_by_role("button", name="Register").click()
        secret = page.get_by_test_id("webhook-secret")
        await expect(secret).to_have_text(re.compile(r"^whsec_"), timeout=WAIT_MS)
        receiver.secret = await secret.inner_text()
        row = page.get_by_test_id("webhook-row")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("from the page")
        await expect(row).to_contain_text("events: execution_state")
        webhook_id = await row.get_attribute("data-webhook-id")
        assert webhook_id is not None

        assert (await stack.client.post("/api/plans", json=example_document())).status_code in (200, 201)
        started = await stack.client.post("/api/executions", json={"plan_id": example_document()["plan_id"]})
        execution_id = started.json()["execution_id"]

        async def completed() -> bool:
            return bool((await stack.client.get(f"/api/executions/{execution_id}")).json()["status"] == "COMPLETED")

        await eventually(completed, timeout=30)
        log = await all_delivered(stack, webhook_id)
        assert {d["event_type"] for d in log} == {"execution_state"}

        await row.get_by_role("button", name="Deliveries").click()
        rows = page.get_by_test_id("delivery-row")
        await expect(rows).to_have_count(len(log), timeout=WAIT_MS)
        await expect(page.locator("#deliveries-title")).to_have_text(f"Deliveries to {receiver.url}")
        await expect(rows.first.get_by_test_id("attempt")).to_contain_text("#1 204")

        oldest = rows.last  # newest first: the execution's first state change is at the bottom
        assert await oldest.get_attribute("data-delivery-id") == log[-1]["delivery_id"]
        await oldest.get_by_role("button", name="Redeliver").click()
        await expect(page.locator("#notices .notice", has_text="will be sent again")).to_be_visible()
        await all_delivered(stack, webhook_id, attempts=len(log) + 1)
        assert receiver.duplicates == 1, "the receiver saw the same webhook-id again"
        await page.locator("#btn-deliveries-refresh").click()
        await expect(oldest.get_by_test_id("attempt")).to_have_count(2)
        await expect(oldest.get_by_test_id("attempt").nth(1)).to_contain_text("#2 204")

        await row.get_by_role("button", name="Disable").click()
        await expect(row.locator(".badge")).to_have_text("disabled", timeout=WAIT_MS)
        assert (await stack.client.get(f"/api/webhooks/{webhook_id}")).json()["status"] == "disabled"
        await row.get_by_role("button", name="Enable").click()
        await expect(row.locator(".badge")).to_have_text("active", timeout=WAIT_MS)
        assert (await stack.client.get(f"/api/webhooks/{webhook_id}")).json()["status"] == "active"

        old_secret = receiver.secret
        await row.get_by_role("button", name="Rotate secret").click()
        await page.locator("#webhook-dialog-yes").click()
        await expect(secret).not_to_have_text(old_secret, timeout=WAIT_MS)
        receiver.secret = await secret.inner_text()
        assert receiver.secret.startswith("whsec_")
        again = f"/api/webhooks/{webhook_id}/deliveries/{log[0]['delivery_id']}/redeliver"
        assert (await stack.client.post(again)).status_code == 202
        await all_delivered(stack, webhook_id, attempts=len(log) + 2)
        assert (receiver.duplicates, receiver.bad) == (2, []), "signed with the new secret"

        await row.get_by_role("button", name="Delete").click()
        await page.locator("#webhook-dialog-yes").click()
        await expect(page.get_by_test_id("webhook-row")).to_have_count(0, timeout=WAIT_MS)
        assert (await stack.client.get(f"/api/webhooks/{webhook_id}")).status_code == 404

        viewer = await signed_in(browser, stack, stack.issue(Role.VIEWER, "vera"), errors)  # same stack: saves one
        await expect(viewer.locator("#notices")).to_contain_text("operator role", timeout=WAIT_MS)
        await expect(viewer.get_by_test_id("webhook-row")).to_have_count(0)
        assert not errors, f"errors in the page: {errors}"
    finally:
        receiver.stop()
