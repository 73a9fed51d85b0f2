"""Reading a card's heartbeat from its bytes: the same card heartbeating differs only there."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from planexe_ax.bus import AgentCard, CapabilityCard
from planexe_ax.coordinator.directory import split_heartbeat

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def card(heartbeat_at: datetime, **params_schema: object) -> AgentCard:
    caps = [CapabilityCard(action="echo", params_schema=params_schema)]
    return AgentCard(agent_id="a-1", name="n", capabilities=caps, started_at=STARTED, heartbeat_at=heartbeat_at)


def test_two_heartbeats_of_a_card_differ_only_in_the_heartbeat() -> None:
    first, later = STARTED + timedelta(seconds=1), STARTED + timedelta(seconds=6, microseconds=123456)
    one = split_heartbeat(card(first).model_dump_json().encode())
    two = split_heartbeat(card(later).model_dump_json().encode())
    assert one is not None
    assert two is not None
    assert one[0] == two[0]
    assert (one[1], two[1]) == (first, later)


def test_a_card_written_with_spaces_and_an_offset_is_read_too() -> None:
    raw = json.dumps({"agent_id": "a-1", "heartbeat_at": "2026-01-02T04:04:05.5+01:00"}).encode()
    split = split_heartbeat(raw)
    assert split is not None
    assert split[1] == STARTED + timedelta(seconds=0.5)
    assert split[0] == (b'{"agent_id": "a-1", "heartbeat_at": "', b'"}')


def test_the_last_heartbeat_at_is_the_one_read() -> None:
    """A key of the same name inside a capability comes before the card's own in pydantic's order."""
    raw = card(STARTED, default={"heartbeat_at": "2020-01-01T00:00:00Z"}).model_dump_json().encode()
    split = split_heartbeat(raw)
    assert split is not None
    assert split[1] == STARTED


@pytest.mark.parametrize(
    "value",
    ['"2026-13-02T03:04:05Z"', '"2026-01-02T03:04:05"', '"yesterday"', "1767323045", '"2026-01-02T03:04:05Z\\""'],
)
def test_a_heartbeat_that_is_not_an_aware_iso_time_is_not_read(value: str) -> None:
    assert split_heartbeat(f'{{"agent_id": "a-1", "heartbeat_at": {value}}}'.encode()) is None


def test_a_card_without_a_heartbeat_is_not_read() -> None:
    assert split_heartbeat(b'{"agent_id": "a-1"}') is None
