"""The toolkit actions that talk to a network: against a local HTTP server and a local SMTP server only."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from planexe_ax.agents import Capability, CapabilityOutput, TaskContext
from planexe_ax.agents.toolkit import SendEmailParams, analyze_website, send_email, web_scrape
from planexe_ax.config import Settings
from planexe_ax.errors import PermanentError, RetryableError
from tests.helpers.web_site import serve_site


@pytest.fixture
def site() -> Iterator[str]:
    with serve_site() as url:
        yield url


def _ctx(settings: Settings, subtask: str = "s1") -> TaskContext:
    return TaskContext("exec1", "t1", subtask, 1, "tester", settings)


async def _run(cap: Capability, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    result = await cap(cap.params_model.model_validate(params), _ctx(settings))
    return result.output if isinstance(result, CapabilityOutput) else result


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings that let the agents fetch from the local test server (loopback is refused by default)."""
    return Settings(data_dir=tmp_path / "data", fetch_allow=["127.0.0.1"])


# ------------------------------------------------------------------------------------------ web
async def test_web_scrape_extracts_selector_matches_and_contacts(site: str, settings: Settings) -> None:
    out = await _run(web_scrape, {"url": f"{site}/good", "css_selector": "div.puppy, .brand"}, settings)
    assert out["status"] == 200
    assert out["title"] == "Marie's Yorkies"
    assert out["matches"] == 3
    assert out["first_matches"][0] == "Marie's Yorkies"
    assert "Bella $2,500" in out["first_matches"]
    assert out["emails"] == ["marie@yorkies.example"]
    assert out["phones"] == ["860-555-0142"]
    saved = (settings.outputs_dir / "exec1" / out["file"]).read_text()
    assert "not text" not in saved
    assert "Yorkshire Terriers in CT" in saved


async def test_web_scrape_errors_say_whether_to_retry(site: str, settings: Settings) -> None:
    with pytest.raises(PermanentError, match="404"):
        await _run(web_scrape, {"url": f"{site}/missing"}, settings)
    with pytest.raises(RetryableError, match="503"):
        await _run(web_scrape, {"url": f"{site}/broken"}, settings)
    with pytest.raises(PermanentError, match="http"):
        await _run(web_scrape, {"url": "file:///etc/passwd"}, settings)
    with pytest.raises(PermanentError, match="not supported"):
        await _run(web_scrape, {"url": f"{site}/good", "css_selector": "a[href]"}, settings)


async def test_analyze_website_scores_a_fetched_page(site: str, settings: Settings) -> None:
    good = await analyze_website(analyze_website.params_model(url=f"{site}/good"), _ctx(settings))
    poor = await _run(analyze_website, {"url": f"{site}/poor"}, settings)
    assert isinstance(good, CapabilityOutput)
    assert good.confidence == 0.8
    signals = good.output["signals"]
    assert signals["mobile_viewport"]
    assert signals["meta_description"]
    assert signals["contact_form"]
    assert not signals["https"]
    assert not poor["signals"]["no_site_builder"]
    assert not poor["signals"]["contact_form"]
    assert good.output["quality"] > poor["quality"]
    assert good.output["priority"] < poor["priority"]
    custom = await _run(analyze_website, {"url": f"{site}/good", "scoring_rubric": {"https": 1.0}}, settings)
    assert custom["quality"] == 1
    assert custom["priority"] == 5
    with pytest.raises(PermanentError, match="positive weight"):
        await _run(analyze_website, {"url": f"{site}/good", "scoring_rubric": {"https": 0}}, settings)


# ------------------------------------------------------------------------------------------ email
def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_send_email_writes_an_rfc5322_file_to_the_outbox(settings: Settings) -> None:
    folder = settings.outputs_dir / "exec1"
    folder.mkdir(parents=True)
    (folder / "quote.md").write_text("# Quote\n")
    params = {
        "to": "carol@bittersweet.example, Marie <marie@yorkies.example>",
        "subject": "Your breeding records, without the spreadsheets",
        "body": "Hi Carol,\n\nAs promised, the quote is attached.\n",
        "attachments": ["quote.md"],
    }
    out = await _run(send_email, params, settings)
    assert out["delivered_via"] == "outbox"
    assert out["file"].startswith("outbox/")
    assert out["file"].endswith(".eml")
    raw = (folder / out["file"]).read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = _parse(folder / out["file"])
    assert message["Subject"] == params["subject"]
    assert [a.addr_spec for a in message["To"].addresses] == ["carol@bittersweet.example", "marie@yorkies.example"]
    assert message["Message-ID"] == "<exec1.s1@planexe-ax.localhost>"
    assert message["Date"].datetime is not None
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "quote is attached" in body.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "quote.md"
    assert attachment.get_content() == "# Quote\n"


async def test_send_email_refuses_bad_addresses_and_missing_attachments(settings: Settings) -> None:
    with pytest.raises(ValidationError):
        SendEmailParams(to=["not an address"], subject="x", body="y")
    with pytest.raises(PermanentError, match="attachment"):
        await _run(send_email, {"to": "a@b.example", "subject": "x", "body": "y", "attachments": ["no.pdf"]}, settings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_send_email_over_smtp(settings: Settings) -> None:
    controller_mod = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is not installed")
    received: list[Any] = []

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = _free_port()
    controller = controller_mod.Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
        out = await _run(send_email, {"to": "carol@bittersweet.example", "subject": "Hello", "body": "Hi"}, smtp)
    finally:
        controller.stop()
    assert out["delivered_via"] == "smtp"
    assert out["file"].startswith("sent/")
    [envelope] = received
    assert envelope.rcpt_tos == ["carol@bittersweet.example"]
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == out["message_id"]


async def test_send_email_smtp_down_is_retryable(settings: Settings) -> None:
    smtp = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{_free_port()}"})
    with pytest.raises(RetryableError, match="SMTP"):
        await _run(send_email, {"to": "carol@bittersweet.example", "subject": "Hello", "body": "Hi"}, smtp)
