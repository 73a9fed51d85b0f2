"""Pause, cancel, BLOCKED and rejection in the SDK, without a bus."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from planexe_ax.agents import Agent, RejectOffer, TaskContext, WorkCancelled
from planexe_ax.agents.control import ExecutionWatch, about_other_subtask, takes_attempt_away
from planexe_ax.bus import Bus, ExecutionState, ExecutionStatus, SubtaskState, TaskOffer, TaskPaused, TaskStatus
from planexe_ax.config import Settings
from tests.helpers.agents import echo


def context(tmp_path: Path, task_id: str = "t1", subtask_id: str = "s1", attempt: int = 2) -> TaskContext:
    return TaskContext("e1", task_id, subtask_id, attempt, "a1", Settings(data_dir=tmp_path))


async def settle() -> None:
    """Let every ready task run until it waits again (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


# ------------------------------------------------------------------------------------------ rejection
def test_reject_offer_checks_its_reason_code() -> None:
    rejection = RejectOffer("over_budget", "costs 500, budget 100")
    assert (rejection.reason_code, rejection.reason) == ("over_budget", "costs 500, budget 100")
    assert str(rejection) == "over_budget: costs 500, budget 100"
    assert str(RejectOffer("other")) == "other"
    with pytest.raises(ValueError, match="missing_tool"):
        RejectOffer("lazy")  # type: ignore[arg-type]  # not a RejectReason, on purpose


async def test_accept_hook_may_be_sync_async_or_raise() -> None:
    work = TaskOffer(execution_id="e1", plan_id="p1", task_id="t1", subtask_id="s1", attempt=1, action="echo")
    no = RejectOffer("not_allowed", "outside office hours")

    async def later(offer: TaskOffer) -> RejectOffer | None:
        return no

    def raises(offer: TaskOffer) -> RejectOffer | None:
        raise no

    assert await Agent("a1", "A", capabilities=[echo]).can_accept(work) is None
    assert await Agent("a1", "A", capabilities=[echo], accept=lambda offer: None).can_accept(work) is None
    assert await Agent("a1", "A", capabilities=[echo], accept=lambda offer: no).can_accept(work) is no
    assert await Agent("a1", "A", capabilities=[echo], accept=later).can_accept(work) is no
    assert await Agent("a1", "A", capabilities=[echo], accept=raises).can_accept(work) is no


# ------------------------------------------------------------------------------------------ blocked
async def test_blocked_reports_through_the_runtime_and_checks_max_wait(tmp_path: Path) -> None:
    seen: list[tuple[str, float | None]] = []

    async def report(reason: str, max_wait_s: float | None) -> None:
        seen.append((reason, max_wait_s))

    ctx = TaskContext("e1", "t1", "s1", 1, "a1", Settings(data_dir=tmp_path), _blocked=report)
    await ctx.blocked("waiting for a reply", max_wait_s=60)
    await ctx.blocked("still waiting")
    assert seen == [("waiting for a reply", 60), ("still waiting", None)]
    with pytest.raises(ValueError, match="positive"):
        await ctx.blocked("never", max_wait_s=0)


# ------------------------------------------------------------------------------------------ checkpoint
async def test_checkpoint_returns_at_once_while_running(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    await ctx.checkpoint()
    assert not ctx.paused
    assert not ctx.cancelled
    assert ctx.stop_reason == ""


async def test_checkpoint_waits_while_paused_and_goes_on_when_resumed(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.set_paused(True, "ops pause")
    assert ctx.paused
    assert ctx.stop_reason == "ops pause"
    waiting = asyncio.create_task(ctx.checkpoint())
    await settle()
    assert not waiting.done()
    ctx.set_paused(True, "paused again")  # a repeated pause only updates the reason
    ctx.set_paused(False)
    await asyncio.wait_for(waiting, 1)
    assert not ctx.paused
    assert ctx.stop_reason == ""


async def test_cancel_wakes_a_paused_checkpoint_with_work_cancelled(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.set_paused(True, "ops pause")
    waiting = asyncio.create_task(ctx.checkpoint())
    await settle()
    ctx.cancel("execution cancelled")
    ctx.cancel("a second reason is ignored")
    with pytest.raises(WorkCancelled, match="execution cancelled"):
        await asyncio.wait_for(waiting, 1)
    assert ctx.cancelled
    assert ctx.stop_reason == "execution cancelled"
    ctx.set_paused(False)  # too late: the attempt stays cancelled
    with pytest.raises(WorkCancelled):
        await ctx.checkpoint()
    await asyncio.wait_for(ctx.wait_cancelled(), 1)
    assert not issubclass(WorkCancelled, asyncio.CancelledError)


# ------------------------------------------------------------------------------------------ decisions
@pytest.mark.parametrize(
    ("status", "attempt", "ends"),
    [
        (TaskStatus.DISPATCHED, 2, False),
        (TaskStatus.RUNNING, 2, False),
        (TaskStatus.BLOCKED, 2, False),
        (TaskStatus.CANCELLED, 2, True),
        (TaskStatus.FAILED, 2, True),
        (TaskStatus.RETRY_WAIT, 2, True),
        (TaskStatus.AWAITING_HUMAN, 2, True),
        (TaskStatus.DISPATCHED, 3, True),
        (TaskStatus.RUNNING, 3, True),
        (TaskStatus.CANCELLED, 1, False),
        (TaskStatus.RETRY_WAIT, 1, False),
        (TaskStatus.CANCELLED, None, True),
        (TaskStatus.RETRY_WAIT, None, False),
    ],
)
def test_which_subtask_states_take_the_attempt_away(status: TaskStatus, attempt: int | None, ends: bool) -> None:
    event = SubtaskState(execution_id="e1", subtask_id="s1", attempt=attempt, status=status)
    assert takes_attempt_away(event, 2) is ends


def watch() -> ExecutionWatch:
    errors: list[str] = []
    return ExecutionWatch(cast(Bus, None), "e1", lambda what, exc: errors.append(what))


def execution(status: ExecutionStatus, execution_id: str = "e1", reason: str = "") -> ExecutionState:
    return ExecutionState(execution_id=execution_id, status=status, reason=reason)


def test_execution_and_task_pauses_combine(tmp_path: Path) -> None:
    w = watch()
    mine, other = context(tmp_path), context(tmp_path, task_id="t2", subtask_id="s2")
    w.add(mine)
    w.add(other)
    w.apply(execution(ExecutionStatus.PAUSED, reason="maintenance"))
    assert (mine.paused, other.paused) == (True, True)
    assert mine.stop_reason == "maintenance"
    w.apply(TaskPaused(execution_id="e1", task_id="t1", paused=True, by="ops"))
    w.apply(execution(ExecutionStatus.RUNNING))
    assert (mine.paused, other.paused) == (True, False), "the task's own pause outlasts the execution's"
    assert mine.stop_reason == "task paused by ops"
    w.apply(TaskPaused(execution_id="e1", task_id="t1", paused=False, by="ops"))
    assert not mine.paused
    late = context(tmp_path, task_id="t3", subtask_id="s3")
    w.apply(execution(ExecutionStatus.PAUSED))
    w.add(late)
    assert late.paused, "work picked up while the execution is paused starts paused"


def test_events_of_other_executions_and_subtasks_are_ignored(tmp_path: Path) -> None:
    w = watch()
    ctx = context(tmp_path)
    w.add(ctx)
    w.apply(execution(ExecutionStatus.CANCELLED, execution_id="e2"))
    w.apply(SubtaskState(execution_id="e1", subtask_id="s9", attempt=2, status=TaskStatus.CANCELLED))
    w.apply(execution(ExecutionStatus.BLOCKED))
    assert not ctx.cancelled
    assert not ctx.paused


def test_a_final_execution_cancels_present_and_later_work(tmp_path: Path) -> None:
    w = watch()
    ctx = context(tmp_path)
    w.add(ctx)
    w.apply(execution(ExecutionStatus.CANCELLED, reason="by ops"))
    assert ctx.cancelled
    assert ctx.stop_reason == "execution cancelled: by ops"
    late = context(tmp_path, subtask_id="s2")
    w.add(late)
    assert late.cancelled
    w.remove(ctx)
    w.remove(late)
    assert w.contexts == []


def test_subtask_state_cancels_only_its_attempt(tmp_path: Path) -> None:
    w = watch()
    ctx, sibling = context(tmp_path), context(tmp_path, subtask_id="s2")
    w.add(ctx)
    w.add(sibling)
    event = SubtaskState(
        execution_id="e1", subtask_id="s1", attempt=3, status=TaskStatus.DISPATCHED, reason="reassigned"
    )
    w.apply(event)
    assert ctx.cancelled
    assert ctx.stop_reason == "subtask dispatched (attempt 3): reassigned"
    assert not sibling.cancelled


def test_subtask_states_of_other_subtasks_are_told_apart_by_their_bytes() -> None:
    def data(subtask_id: str | None, **extra: Any) -> bytes:
        event = SubtaskState(execution_id="e1", subtask_id=subtask_id, attempt=1, status=TaskStatus.RUNNING, **extra)
        return event.model_dump_json(by_alias=True).encode()

    mine = {"s1", "s-2"}
    assert about_other_subtask(data("s9"), mine)
    assert about_other_subtask(data("s1x"), mine), "an id that only starts like one of mine"
    assert not about_other_subtask(data("s1"), mine)
    assert not about_other_subtask(data("s-2"), mine)
    assert not about_other_subtask(data(None), mine), "no subtask id: decoded, as it cannot be told apart"
    # The key once more, in an output: which one is the event's own is not told from the bytes.
    assert not about_other_subtask(data("s9", output={"subtask_id": "s1"}), mine)
    assert not about_other_subtask(data("s9", output={"subtask_id": "s7"}), mine)
    assert not about_other_subtask(b'{"subtask_id": "s9"}', mine), "not written compactly: decoded"
    assert not about_other_subtask(b"not json", mine)
