"""Every deterministic id keeps its exact format: the stream de-duplicates on them, so a change lets copies in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from planexe_ax.bus import TaskOffer, event_ids

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
    (event_ids.offer, ("e1", "s1", 2), "e1:s1:2"),
    (event_ids.subtask_started, ("e1:s1:2",), "e1:s1:2:started"),
    (event_ids.subtask_progress, ("e1:s1:2", 3), "e1:s1:2:progress:3"),
    (event_ids.subtask_blocked, ("e1:s1:2", 1), "e1:s1:2:blocked:1"),
    (event_ids.subtask_rejected, ("e1:s1:2",), "e1:s1:2:rejected"),
    (event_ids.subtask_result, ("e1:s1:2",), "e1:s1:2:result"),
    (event_ids.dead_letter, ("agents", "ns.ax.task.web", 41), "agents:ns.ax.task.web:41"),
    (event_ids.unpublished, ("coordinator", "e1:x:RUNNING:0"), "coordinator:publish:e1:x:RUNNING:0"),
]


@pytest.mark.parametrize(("build", "args", "expected"), PINNED, ids=[case[2] for case in PINNED])
def test_each_id_keeps_its_format(build: Callable[..., str], args: tuple[object, ...], expected: str) -> None:
    assert build(*args) == expected


def test_every_builder_is_pinned() -> None:
    builders = {name for name, value in vars(event_ids).items() if callable(value) and not name.startswith("_")}
    pinned = {build.__name__ for build, _, _ in PINNED}
    assert builders - pinned == set()


def test_an_offer_is_deduplicated_by_its_attempt() -> None:
    offer = TaskOffer(execution_id="e1", plan_id="p", task_id="t1", subtask_id="s1", attempt=2, action="a",
                      issued_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert offer.msg_id == "e1:s1:2"
