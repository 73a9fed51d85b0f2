"""Sending one email over SMTP: ``smtp://[user:password@]host:port[?starttls=true]`` or ``smtps://...``."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit


class SmtpRefused(ValueError):
    """The server or the URL refuses the message for good (bad URL, every recipient refused)."""


class SmtpUnavailable(OSError):
    """The server could not take the message now (connection, timeout, a temporary SMTP error)."""


def send_message(url: str, msg: EmailMessage, timeout_s: float = 30.0) -> None:
    """Send ``msg`` through the SMTP server of ``url``; returns once the server accepted it (blocking).

    Raises:
        SmtpRefused: a URL that is not smtp:// or smtps://, or every recipient refused.
        SmtpUnavailable: anything else that went wrong; trying again later may work.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise SmtpRefused(f"smtp_url {url!r} must start with smtp:// or smtps://")
    host, port = parts.hostname or "localhost", parts.port or (465 if parts.scheme == "smtps" else 25)
    client_type = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    try:
        with client_type(host, port, timeout=timeout_s) as client:
            if parts.scheme == "smtp" and "starttls=true" in parts.query:
                client.starttls()
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        raise SmtpRefused(f"every recipient was refused: {exc.recipients}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise SmtpUnavailable(f"SMTP {host}:{port} failed: {type(exc).__name__}: {exc}") from exc
