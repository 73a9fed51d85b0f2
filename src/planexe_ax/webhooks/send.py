"""One webhook delivery over HTTP: the target checked against the egress policy, signed as Standard Webhooks.

Headers: ``webhook-id`` (the event id, the same on every attempt, so receivers de-duplicate on it),
``webhook-timestamp`` (seconds since the epoch, of this attempt) and ``webhook-signature`` (``v1,`` and the
base64 HMAC-SHA256 of ``id.timestamp.body`` under the webhook's ``whsec_`` secret).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from planexe_ax.bus import tracing
from planexe_ax.common.egress import EgressRefused, FetchPolicy, checked_client
from planexe_ax.readmodel.webhook_queue import Due, Outcome

USER_AGENT = "PlanExe-AX-Webhooks/1"
ERROR_TEXT = 300


class BadTarget(ValueError):
    """A webhook URL that may not be used; the message says why."""


async def check_target(url: str, allow: Sequence[str]) -> None:
    """Refuse a URL that is not http(s) with a host, or whose host the egress policy refuses.

    Raises:
        BadTarget: naming the problem (and ``PLANEXE_FETCH_ALLOW`` when the policy refuses the address).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadTarget(f"url {url!r} must be http:// or https:// with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        await FetchPolicy.parse(allow).addresses(parts.hostname, port)
    except EgressRefused as exc:
        raise BadTarget(str(exc).replace("refused to fetch from", "refused to deliver to")) from exc
    except Exception as exc:  # a bad port (ValueError), a host that does not resolve (httpcore.ConnectError)
        raise BadTarget(f"url {url!r}: {exc}") from exc


def headers(item: Due, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of ``item`` signed at ``now``."""
    return {
        "content-type": "application/json",
        "webhook-id": item.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(item.secret).sign(item.event_id, now, item.payload),
    }


def span_attributes(item: Due) -> dict[str, str | int]:
    """What the delivery's span says: the webhook, the delivery, the event, the attempt and where it goes.

    The URL's path and query are left out: receivers often put a token there.
    """
    target = urlsplit(item.url)
    return {
        "planexe.webhook_id": item.webhook_id,
        "planexe.delivery_id": item.delivery_id,
        "planexe.event_id": item.event_id,
        "planexe.delivery_attempt": item.attempts + 1,
        "http.request.method": "POST",
        "server.address": target.hostname or "",
        "server.port": target.port or (443 if target.scheme == "https" else 80),
    }


def shown_url(url: str) -> str:
    """The URL as people may see it (an inbox item, a mail): scheme, host and port; the path may hold a token."""
    target = urlsplit(url)
    shown = f"{target.scheme}://{target.netloc.rpartition('@')[2]}"
    return shown + ("/…" if target.path.strip("/") or target.query else "")


class Sender:
    """POSTs deliveries through one HTTP client whose connections pass the egress policy."""

    def __init__(self, allow: Sequence[str], timeout_s: float) -> None:
        self.client = checked_client(allow, timeout_s, {"user-agent": USER_AGENT})

    async def send(self, item: Due) -> Outcome:
        """One attempt: delivered on a 2xx answer; anything else is an error to retry (the caller decides when).

        The attempt is a CLIENT span ``webhook delivery`` in the trace of the event's execution.
        """
        with tracing.client_span("webhook delivery", item.execution_id or None, span_attributes(item)) as span:
            started = time.perf_counter()
            code: int | None = None
            error: str | None = None
            try:
                answer = await self.client.post(
                    item.url, content=item.payload, headers=headers(item, datetime.now(UTC))
                )
                code = answer.status_code
                span.set_attribute("http.response.status_code", code)
                if not answer.is_success:
                    error = f"HTTP {code}: {answer.text[:ERROR_TEXT]}"
            except Exception as exc:  # every failure of one attempt is logged on it and retried
                error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT]
            if error is not None:
                tracing.failed(span, error)
            latency_ms = (time.perf_counter() - started) * 1000
        return Outcome(status_code=code, latency_ms=latency_ms, error=error, delivered=error is None)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
