"""The NATS client's errors, named once so that code outside ``bus/`` never imports ``nats``."""

from __future__ import annotations

from nats.errors import ConnectionClosedError, MaxPayloadError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, BadRequestError, FetchTimeoutError, ServerError, ServiceUnavailableError
from pydantic import ValidationError

BusError = NatsError
"""Base class of every error the NATS client raises (server away, timeout, refused request)."""
BusClosed = ConnectionClosedError
"""The connection was closed (by us, on shutdown, or for good)."""
TIMEOUTS: tuple[type[Exception], ...] = (TimeoutError, NatsTimeoutError, FetchTimeoutError)
"""What a fetch or a wait raises when nothing came in time: not an error, just nothing new."""
PASSING: tuple[type[Exception], ...] = (BusError, *TIMEOUTS)
"""What a server away or slow raises: worth another try."""


def brief_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """One line naming the fields that failed validation and why."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def permanent_publish_error(exc: BaseException) -> bool:
    """Whether publishing failed for a reason that sending the same message again cannot cure.

    A subject that cannot be built (an id that is not a token), a payload larger than the server or the
    stream accepts, a request the stream refuses, or a stream full to its byte limit that refuses new
    messages (AX_TASKS: nothing drains it when no agent takes that work): these go to the DLQ. Lost
    connections and timeouts are worth another try.
    """
    if isinstance(exc, APIError) and exc.err_code == STREAM_STORE_FAILED:
        return True
    if isinstance(exc, APIError) and exc.err_code == FENCE_BUSY:
        return False  # a 400, but another try passes once the other fenced message is replicated
    return isinstance(exc, ValueError | TypeError | MaxPayloadError | BadRequestError)


def transient_publish_error(exc: BaseException) -> bool:
    """Whether the same message, sent again a little later, may well be stored.

    A lost or reconnecting connection, a timeout, no stream answering (its leader being elected) or
    JetStream unavailable for a moment. Not a closed connection, a refusal, or what
    :func:`permanent_publish_error` names.
    """
    if isinstance(exc, ConnectionClosedError) or permanent_publish_error(exc):
        return False
    if isinstance(exc, APIError):
        if exc.err_code == FENCE_BUSY:
            return True
        return isinstance(exc, ServiceUnavailableError | ServerError) and exc.err_code != STREAM_STORE_FAILED
    return isinstance(exc, NatsError | TimeoutError)


STREAM_STORE_FAILED = 10077
"""JetStream's error code when a stream cannot store a message: its byte or message limit is reached."""

FENCE_BUSY = 10164
"""JetStream's error code (a 400) when a replicated stream refuses a message that checks a subject's last
sequence while another one checking the same subject is being replicated: two coordinators' fenced
decisions at once (an old leader not yet fenced off, the new one). Worth another try, not a dead letter."""

WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code when a publish's expected last subject sequence is not the stream's: here, a fence."""


class Deposed(BaseException):
    """The stream refused a leader's decision: a newer leader has fenced this one off.

    A BaseException, as a cancellation is: no retry loop or error handler of the leader's may swallow it;
    it ends the leader's term (``coordinator/failover.py``).
    """
