"""Plans, event streams and a direct event feed for the projector's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from planexe_ax.bus import (
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    InboxClosed,
    InboxOpened,
    Phase,
    Plan,
    Subtask,
    SubtaskBlocked,
    SubtaskRejected,
    SubtaskResult,
    SubtaskState,
    Task,
    TaskPaused,
    TaskReassigned,
    TaskState,
    TaskStatus,
)
from planexe_ax.bus.messages import Event, EventBase
from planexe_ax.readmodel.projection import apply_event

E = TypeVar("E", bound=EventBase)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

Sessions = async_sessionmaker[AsyncSession]


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def sample_plan(plan_id: str = "p1") -> Plan:
    """Two phases: t1 (s1 web_search, s2 summarise) and t2 (s3 send_email)."""
    return Plan(
        plan_id=plan_id,
        goal="Find ten leads",
        title="Leads",
        phases=[
            Phase(
                phase_id="ph1",
                name="Research",
                tasks=[
                    Task(
                        task_id="t1",
                        title="Search",
                        assignee_role="researcher",
                        estimated_hours=2.5,
                        subtasks=[
                            Subtask(subtask_id="s1", action="web_search", params={"q": "x"}),
                            Subtask(subtask_id="s2", action="summarise"),
                        ],
                    )
                ],
            ),
            Phase(
                phase_id="ph2",
                name="Outreach",
                tasks=[Task(task_id="t2", title="Email", subtasks=[Subtask(subtask_id="s3", action="send_email")])],
            ),
        ],
    )


def created(execution_id: str = "e1", t: float = 0) -> ExecutionCreated:
    """A new execution of :func:`sample_plan`."""
    return ExecutionCreated(execution_id=execution_id, ts=at(t), plan=sample_plan())


def people_scenario(execution_id: str = "e1") -> list[Event]:
    """A run with people in the loop, still going at the end.

    t1 waits for an approval (approved by ann); s1 is rejected by a1, waits for a retry, is reassigned to
    a2, and its low-confidence result is edited by bob on review; s2 is blocked and escalated (left open);
    s3 is a human task that person-ann completes.
    """
    e = execution_id

    def sub(kind: type[E], t: float, task: str, subtask: str, **kw: Any) -> E:
        return kind(execution_id=e, ts=at(t), task_id=task, subtask_id=subtask, **kw)

    def state(t: float, task: str, subtask: str, status: TaskStatus, **kw: Any) -> SubtaskState:
        return sub(SubtaskState, t, task, subtask, status=status, **kw)

    return [
        created(e),
        ExecutionState(execution_id=e, ts=at(1), status=ExecutionStatus.RUNNING),
        TaskState(execution_id=e, ts=at(2), task_id="t1", status=TaskStatus.AWAITING_APPROVAL, reason="approval"),
        InboxOpened(
            execution_id=e,
            ts=at(2),
            task_id="t1",
            item_id=f"{e}-t1-1",
            kind="approval",
            title="Search",
            reason="approval_required",
            actions=["approve", "reject"],
        ),
        TaskPaused(execution_id=e, ts=at(2.5), task_id="t1", paused=True, by="ann"),
        TaskPaused(execution_id=e, ts=at(2.7), task_id="t1", paused=False, by="ann"),
        InboxClosed(execution_id=e, ts=at(3), item_id=f"{e}-t1-1", resolution="approved", by="ann", comment="go"),
        TaskState(execution_id=e, ts=at(3), task_id="t1", status=TaskStatus.RUNNING),
        state(4, "t1", "s1", TaskStatus.RUNNING, attempt=1, agent_id="a1"),
        sub(SubtaskRejected, 4.5, "t1", "s1", attempt=1, agent_id="a1", reason_code="missing_tool", reason="no web"),
        state(
            5, "t1", "s1", TaskStatus.RETRY_WAIT, attempt=1, reason="rejected by a1: missing_tool", not_before=at(10)
        ),
        TaskReassigned(execution_id=e, ts=at(5.5), task_id="t1", agent_id="a2", by="ann"),
        state(10, "t1", "s1", TaskStatus.RUNNING, attempt=2, agent_id="a2"),
        sub(SubtaskResult, 11, "t1", "s1", attempt=2, agent_id="a2", ok=True, output={"n": 3}, confidence=0.4),
        state(
            11, "t1", "s1", TaskStatus.AWAITING_HUMAN, attempt=2, reason="confidence 0.40 below 0.70", confidence=0.4
        ),
        InboxOpened(
            execution_id=e,
            ts=at(11),
            task_id="t1",
            subtask_id="s1",
            attempt=2,
            item_id=f"{e}-s1-5",
            kind="review",
            title="web_search",
            reason="confidence 0.40 below 0.70",
            action="web_search",
            params={"q": "x"},
            output={"n": 3},
            confidence=0.4,
            actions=["accept", "edit", "reject"],
        ),
        InboxClosed(execution_id=e, ts=at(12), item_id=f"{e}-s1-5", resolution="edited", by="bob", output={"n": 4}),
        state(12, "t1", "s1", TaskStatus.COMPLETED, attempt=2, agent_id="a2", output={"n": 4}, reason="edited by bob"),
        state(13, "t1", "s2", TaskStatus.RUNNING, attempt=1, agent_id="a1"),
        sub(SubtaskBlocked, 14, "t1", "s2", attempt=1, agent_id="a1", reason="waiting for a reply", max_wait_s=60),
        state(14, "t1", "s2", TaskStatus.BLOCKED, attempt=1, reason="waiting for a reply", deadline=at(74)),
        TaskState(execution_id=e, ts=at(15), task_id="t2", status=TaskStatus.RUNNING),
        state(15, "t2", "s3", TaskStatus.AWAITING_HUMAN, attempt=1, reason="human_required"),
        InboxOpened(
            execution_id=e,
            ts=at(15),
            task_id="t2",
            subtask_id="s3",
            attempt=1,
            item_id=f"{e}-s3-2",
            kind="human_task",
            title="send_email",
            reason="human_required",
            action="send_email",
            actions=["complete"],
        ),
        InboxClosed(
            execution_id=e,
            ts=at(20),
            item_id=f"{e}-s3-2",
            resolution="completed",
            by="ann",
            comment="sent by hand",
            output={"sent": True},
        ),
        state(
            20,
            "t2",
            "s3",
            TaskStatus.COMPLETED,
            attempt=1,
            agent_id="person-ann",
            output={"sent": True},
            reason="completed by ann",
        ),
        TaskState(execution_id=e, ts=at(20), task_id="t2", status=TaskStatus.COMPLETED),
        InboxOpened(
            execution_id=e,
            ts=at(74),
            task_id="t1",
            subtask_id="s2",
            attempt=1,
            item_id=f"{e}-s2-4",
            kind="escalation",
            title="summarise",
            reason="blocked past its deadline: waiting for a reply",
            action="summarise",
            actions=["complete", "reject"],
        ),
    ]


class Feed:
    """Apply events straight to a read model (no NATS), one transaction per call, numbering them 1, 2, ..."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.seq = 0

    async def __call__(self, *events: Event) -> list[bool]:
        applied = []
        async with self.sessions.begin() as session:
            for event in events:
                self.seq += 1
                applied.append(await apply_event(session, event, self.seq))
        return applied
