"""Which publish errors are worth sending the same message again."""

from __future__ import annotations

import pytest
from nats.errors import ConnectionClosedError, MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, ServiceUnavailableError

from planexe_ax.bus.errors import (
    FENCE_BUSY,
    STREAM_STORE_FAILED,
    WRONG_LAST_SEQUENCE,
    permanent_publish_error,
    transient_publish_error,
)


@pytest.mark.parametrize(
    "exc",
    [
        NatsTimeoutError(),
        TimeoutError(),
        NoStreamResponseError(),  # the stream is electing a leader
        NoRespondersError(),
        ServiceUnavailableError(code=503, description="JetStream system temporarily unavailable"),
        # a replicated stream checking another coordinator's fenced message on the same subject
        BadRequestError(code=400, err_code=FENCE_BUSY, description="wrong last sequence"),
    ],
)
def test_a_lost_server_or_a_stream_without_leader_is_worth_another_try(exc: Exception) -> None:
    assert transient_publish_error(exc)
    assert not permanent_publish_error(exc), "worth another try: not a dead letter"


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionClosedError(),
        MaxPayloadError(),
        BadRequestError(code=400, description="bad"),
        APIError(code=400, err_code=WRONG_LAST_SEQUENCE, description="wrong last sequence"),
        APIError(code=503, err_code=STREAM_STORE_FAILED, description="maximum bytes exceeded"),
        ValueError("not a token"),
    ],
)
def test_a_refusal_or_a_closed_connection_is_not(exc: Exception) -> None:
    assert not transient_publish_error(exc)
