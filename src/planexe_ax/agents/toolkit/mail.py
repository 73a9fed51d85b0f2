"""``send_email``: build an RFC 5322 message; send it over SMTP when ``smtp_url`` is set, else keep it in outbox/.

The Message-ID is derived from the execution and subtask, so a retried attempt produces the same
message and a receiving server or mail client can recognise the duplicate.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import inside, rel, slug
from planexe_ax.bus import utcnow
from planexe_ax.common.smtp import SmtpRefused, SmtpUnavailable, send_message
from planexe_ax.errors import PermanentError, RetryableError

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$|^[^@\s<>]+@localhost$")


def _check_address(value: str) -> str:
    _, address = parseaddr(value)
    if not _ADDRESS.match(address):
        raise ValueError(f"{value!r} is not an email address")
    return value


class SendEmailParams(BaseModel):
    """Parameters of ``send_email``."""

    to: list[str] = Field(min_length=1, description="Recipients (a comma-separated string is accepted).")
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(description="Plain-text body.")
    attachments: list[str] = Field(default_factory=list, description="Files relative to the output folder.")
    cc: list[str] = Field(default_factory=list)
    from_addr: str = Field(default="planexe-ax@localhost", description="Sender address.")

    @field_validator("to", "cc", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_check_address(v) for v in value]

    @field_validator("from_addr")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _check_address(value)


def build_message(params: SendEmailParams, ctx: TaskContext) -> EmailMessage:
    """The message with its attachments, headers and a Message-ID stable across attempts.

    Raises:
        PermanentError: When an attachment is missing from the output folder.
    """
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = params.from_addr
    msg["To"] = ", ".join(params.to)
    if params.cc:
        msg["Cc"] = ", ".join(params.cc)
    msg["Subject"] = params.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{ctx.execution_id}.{ctx.subtask_id}@planexe-ax.localhost>"
    msg["X-PlanExe-Execution"] = ctx.execution_id
    msg.set_content(params.body)
    for name in params.attachments:
        path = inside(ctx.output_dir, name)
        if not path.is_file():
            raise PermanentError(f"attachment {name!r} is not in the output folder")
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return msg


def _send_smtp(url: str, msg: EmailMessage, timeout_s: float = 30.0) -> None:
    try:
        send_message(url, msg, timeout_s)
    except SmtpRefused as exc:
        raise PermanentError(str(exc)) from exc
    except SmtpUnavailable as exc:
        raise RetryableError(str(exc)) from exc


def _write_eml(folder: Path, name: str, msg: EmailMessage) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_bytes(msg.as_bytes())
    tmp.replace(path)
    return path


@capability("send_email")
async def send_email(params: SendEmailParams, ctx: TaskContext) -> dict[str, Any]:
    """Send an email over SMTP (``settings.smtp_url``), or write it as an .eml file to outbox/ when unset."""
    msg = build_message(params, ctx)
    name = f"{slug(params.subject, 40)}-{ctx.subtask_id}.eml"
    smtp_url = ctx.settings.smtp_url
    if smtp_url:
        await asyncio.to_thread(_send_smtp, smtp_url, msg)
        path = _write_eml(ctx.output_dir / "sent", name, msg)
    else:
        path = _write_eml(ctx.output_dir / "outbox", name, msg)
    await ctx.progress(100, f"email {'sent' if smtp_url else 'written to outbox'}: {params.subject}")
    ctx.logger.info("email handled", extra={"delivered_via": "smtp" if smtp_url else "outbox", "to": params.to})
    return {
        "delivered_via": "smtp" if smtp_url else "outbox",
        "file": rel(ctx.output_dir, path),
        "to": params.to,
        "message_id": msg["Message-ID"],
        "attachments": len(params.attachments),
    }
