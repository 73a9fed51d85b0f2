"""Every deterministic id keeps its exact format: the stream de-duplicates on them, so a change lets copies in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from planexe_ax.bus import TaskOffer, event_ids

KEY = b"k" * 16
PINNED: list[tuple[Callable[..., str], tuple[object, ...], str]] = [
    (event_ids.execution_created, ("e1",), "e1:created"),
    (event_ids.command_rejected, ("e1", "c9"), "e1:rejected:c9"),
    (event_ids.execution_state, ("e1", "RUNNING", 2), "e1:x:RUNNING:2"),
    (event_ids.task_state, ("e1", "t1", "DONE", 1), "e1:t:t1:DONE:1"),
    (event_ids.subtask_state, ("e1", "s1", 3, "RUNNING", 1), "e1:s:s1:3:RUNNING:1"),
    (event_ids.subtask_state, ("e1", "s1", None, "SKIPPED", 1), "e1:s:s1:None:SKIPPED:1"),
    (event_ids.task_paused, ("e1", "c9"), "e1:tp:c9"),
    (event_ids.task_reassigned, ("e1", "c9"), "e1:tr:c9"),
    (event_ids.inbox_item, ("e1", "s1", "approval", 1), "e1-s1-approval-1"),
    (event_ids.inbox_opened, ("e1-s1-approval-1",), "e1-s1-approval-1:opened"),
    (event_ids.inbox_closed, ("e1-s1-approval-1",), "e1-s1-approval-1:closed"),
    (event_ids.acknowledge_item, ("e1", "c9"), "e1-ack-c9"),
    (event_ids.webhook_disabled, ("wh_1", "e1:x:RUNNING:1", 3), "webhook-disabled-fc07116fc133d52ded0facf2bb8800c4"),
    (event_ids.audit_checkpoint, ("e1", 42), "e1:audit:42"),
    (event_ids.offer, ("e1", "s1", 2), "e1:s1:2"),
    (event_ids.report, (KEY, "e1:s1:2", "agent-1", "started"), "e1:s1:2:started:68582dde7b21eb8c"),
    (event_ids.report, (KEY, "e1:s1:2", "agent-1", "progress:3"), "e1:s1:2:progress:3:21f51c0cbae1b6ec"),
    (event_ids.report, (KEY, "e1:s1:2", "agent-1", "blocked:1"), "e1:s1:2:blocked:1:3c5262d56ee038a7"),
    (event_ids.report, (KEY, "e1:s1:2", "agent-1", "rejected"), "e1:s1:2:rejected:b94674ea4039d19e"),
    (event_ids.report, (KEY, "e1:s1:2", "agent-1", "result"), "e1:s1:2:result:bb059ec990c6c2fa"),
    (event_ids.dead_letter, ("agents", "ns.ax.task.web", 41), "agents:ns.ax.task.web:41"),
    (event_ids.unpublished, ("coordinator", "e1:x:RUNNING:0"), "coordinator:publish:e1:x:RUNNING:0"),
]


@pytest.mark.parametrize(("build", "args", "expected"), PINNED, ids=[case[2] for case in PINNED])
def test_each_id_keeps_its_format(build: Callable[..., str], args: tuple[object, ...], expected: str) -> None:
    assert build(*args) == expected


def test_every_builder_is_pinned() -> None:
    builders = {name for name, value in vars(event_ids).items() if callable(value) and not name.startswith("_")}
    builders.discard("report_key")  # a random secret, not an id
    pinned = {build.__name__ for build, _, _ in PINNED}
    assert builders - pinned == set()


def test_an_offer_is_deduplicated_by_its_attempt() -> None:
    offer = TaskOffer(execution_id="e1", plan_id="p", task_id="t1", subtask_id="s1", attempt=2, action="a",
                      issued_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert offer.msg_id == "e1:s1:2"


def test_nobody_without_the_key_can_compute_the_id_of_a_report_not_sent_yet() -> None:
    """An id seen (the agent's `started`) tells nothing of the next one; another process's key gives another id."""
    key, other = event_ids.report_key(), event_ids.report_key()
    assert key != other
    assert len(key) == 16
    seen = event_ids.report(key, "e1:s1:2", "agent-1", "started")
    result = event_ids.report(key, "e1:s1:2", "agent-1", "result")
    assert result == event_ids.report(key, "e1:s1:2", "agent-1", "result"), "the same process sends the same id"
    assert result != event_ids.report(other, "e1:s1:2", "agent-1", "result")
    assert seen.rsplit(":", 1)[1] != result.rsplit(":", 1)[1]
    assert result != event_ids.report(key, "e1:s1:2", "agent-2", "result"), "the agent's id is part of the tag"
    assert result.startswith("e1:s1:2:result:")
