"""A webhook disabled becomes a notice: an `acknowledge` inbox item on the execution, ended or not, that holds
nothing up, opens once per command, and whose one answer changes nothing else."""

from planexe_ax.bus import (
    CancelExecution,
    CommandRejected,
    ExecutionStatus,
    InboxClosed,
    InboxOpened,
    PauseTask,
    Plan,
    ResolveInbox,
    StartExecution,
    WebhookDisabled,
    event_ids,
)
from planexe_ax.bus.messages import InboxAction
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit
from tests.helpers.factories import at, make_plan, result

X = "x1"
AGENTS = {"agent-1": frozenset({"echo"})}
CONFIG = CoreConfig(lag_scale_s=0)
REASON = "gave up on event x1:x:RUNNING:1 after 3 attempts over 1s; last error: ConnectError: refused"


def start(plan: Plan) -> CoordinatorCore:
    engine = CoordinatorCore(CONFIG)
    engine.set_agents(AGENTS, at(0))
    engine.on_command(StartExecution(execution_id=X, plan=plan), at(0))
    return engine


def completed() -> CoordinatorCore:
    engine = start(make_plan(["a"]))
    engine.on_event(result(X, "a_s0"), at(1))
    assert engine.runs[X].status == ExecutionStatus.COMPLETED
    return engine


def disabled(attempt: int = 3) -> WebhookDisabled:
    command_id = event_ids.webhook_disabled("wh_1", "x1:x:RUNNING:1", attempt)
    return WebhookDisabled(command_id=command_id, execution_id=X, webhook_id="wh_1", url="http://127.0.0.1:9/…",
                           event_id="x1:x:RUNNING:1", reason=REASON)  # fmt: skip


def events(effects: list[Effect]) -> list[object]:
    return [e.event for e in effects if isinstance(e, Emit)]


def answer(engine: CoordinatorCore, item_id: str, action: InboxAction = "acknowledge") -> list[object]:
    command = ResolveInbox(execution_id=X, item_id=item_id, action=action, issued_by="ann", comment="seen")
    return events(engine.on_command(command, at(9)))


def test_an_ended_execution_takes_the_notice_and_its_acknowledgement_and_nothing_else() -> None:
    engine = completed()
    (opened,) = events(engine.on_command(disabled(), at(5)))
    assert isinstance(opened, InboxOpened)
    assert (opened.kind, opened.task_id, opened.subtask_id, opened.actions) == ("acknowledge", None, None,
                                                                                ["acknowledge"])  # fmt: skip
    assert (opened.title, opened.reason) == ("Webhook http://127.0.0.1:9/… disabled", REASON)
    assert opened.params == {"webhook_id": "wh_1", "url": "http://127.0.0.1:9/…", "event_id": "x1:x:RUNNING:1"}
    assert opened.causation_id == disabled().command_id
    assert engine.runs[X].status == ExecutionStatus.COMPLETED

    assert engine.on_command(disabled(), at(6)) == [], "the same command again opens nothing"
    (wrong,) = answer(engine, opened.item_id, "approve")
    assert isinstance(wrong, CommandRejected)
    assert wrong.reason == "cannot approve a acknowledge item; answer with acknowledge"
    (closed,) = answer(engine, opened.item_id)
    assert isinstance(closed, InboxClosed)
    assert (closed.resolution, closed.by, closed.comment) == ("acknowledged", "ann", "seen")
    assert engine.runs[X].status == ExecutionStatus.COMPLETED
    assert engine.runs[X].inbox == {}
    assert engine.on_command(disabled(), at(10)) == [], "nor after it was acknowledged"
    (again,) = answer(engine, opened.item_id)
    assert isinstance(again, CommandRejected)
    assert again.reason == "the execution is COMPLETED", "an acknowledged notice is an item like any closed one"


def test_an_ended_execution_refuses_every_other_command() -> None:
    engine = completed()
    for command in (
        PauseTask(execution_id=X, task_id="a"),
        ResolveInbox(execution_id=X, item_id="x1-a_s0-escalation-1", action="fail"),
    ):
        (refused,) = events(engine.on_command(command, at(5)))
        assert isinstance(refused, CommandRejected)
        assert refused.reason == "the execution is COMPLETED"
    (refused,) = events(engine.on_command(CancelExecution(execution_id=X), at(5)))
    assert isinstance(refused, CommandRejected)


def test_a_later_give_up_on_the_same_event_is_told_again() -> None:
    engine = completed()
    (first,) = events(engine.on_command(disabled(attempt=3), at(5)))
    (second,) = events(engine.on_command(disabled(attempt=7), at(6)))
    assert isinstance(first, InboxOpened)
    assert isinstance(second, InboxOpened)
    assert first.item_id != second.item_id


def test_an_open_notice_holds_nothing_up_and_outlives_a_cancel() -> None:
    engine = start(make_plan(["a", "b"]))
    (opened,) = events(engine.on_command(disabled(), at(1)))
    assert isinstance(opened, InboxOpened)
    engine.on_event(result(X, "a_s0"), at(2))
    engine.on_event(result(X, "b_s0"), at(3))
    assert engine.runs[X].status == ExecutionStatus.COMPLETED
    assert list(engine.runs[X].inbox) == [opened.item_id]

    cancelled = start(make_plan(["a"]))
    (notice,) = events(cancelled.on_command(disabled(), at(1)))
    effects = events(cancelled.on_command(CancelExecution(execution_id=X), at(2)))
    assert not [e for e in effects if isinstance(e, InboxClosed)], "a cancel closes work items, not notices"
    assert isinstance(notice, InboxOpened)
    assert list(cancelled.runs[X].inbox) == [notice.item_id]


def test_a_rebuilt_coordinator_opens_no_second_item() -> None:
    engine = completed()
    log = events(engine.on_command(disabled(), at(5)))
    rebuilt = CoordinatorCore(CONFIG)
    for event in [*_history(engine), *log]:
        rebuilt.fold(event)  # type: ignore[arg-type]  # every emitted effect here is an event
    assert rebuilt.on_command(disabled(), at(6)) == []


def _history(engine: CoordinatorCore) -> list[object]:
    """Every event the first engine decided, again from a start: what a rebuild reads from the stream."""
    fresh = CoordinatorCore(CONFIG)
    fresh.set_agents(AGENTS, at(0))
    history = events(fresh.on_command(StartExecution(execution_id=X, plan=engine.runs[X].plan), at(0)))
    report = result(X, "a_s0")
    return [*history, report, *events(fresh.on_event(report, at(1)))]
