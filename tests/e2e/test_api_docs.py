"""/docs in a real headless Chromium with every request off this machine refused: Swagger UI comes from the package."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Route, async_playwright, expect

from tests.helpers.gateway import Stack

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.nats,
    pytest.mark.postgres,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]


async def test_the_api_docs_render_without_the_internet(stack: Stack) -> None:
    elsewhere: list[str] = []

    async def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page()
            refused: list[str] = []
            page.on("console", lambda msg: refused.append(msg.text) if "Security Policy" in msg.text else None)
            await page.route("**/*", only_loopback)
            await page.goto(f"{stack.url}/docs")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text("PlanExe-AX", timeout=15_000)
            await expect(page.locator(".opblock-tag-section").first).to_be_visible()
            assert refused == [], "nothing the content security policy blocks"
        finally:
            await browser.close()

    assert elsewhere == []
