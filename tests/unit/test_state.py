from typing import Any

from planexe_ax.bus import (
    CancelExecution,
    CommandRejected,
    Event,
    ExecutionState,
    ExecutionStatus,
    PauseExecution,
    ResumeExecution,
    StartExecution,
    SubtaskState,
    TaskState,
    TaskStatus,
)
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, Offer, WakeAt
from tests.helpers.factories import at, decision, emitted, make_plan, offers, result, started

X = "x1"


def start(
    plan_tasks: dict[str, int] | list[str],
    deps: list[tuple[str, str, str, float]] | None = None,
    config: CoreConfig | None = None,
    **extra: Any,
) -> tuple[CoordinatorCore, list[Effect]]:
    engine = CoordinatorCore(config or CoreConfig(lag_scale_s=0, backoff_initial_s=0))
    effects = engine.on_command(StartExecution(execution_id=X, plan=make_plan(plan_tasks, deps, **extra)), at(0))
    return engine, effects


def test_start_creates_queues_and_offers_the_first_subtask_only() -> None:
    engine, effects = start({"a": 2})
    assert emitted(effects)[:2] == [("execution_created", None, ""), ("execution_state", None, "QUEUED")]
    assert offers(effects) == ["a_s0"]
    assert engine.runs[X].status == ExecutionStatus.RUNNING


def test_offer_is_published_before_its_dispatched_event() -> None:
    _, effects = start({"a": 1})
    kinds = [type(e).__name__ if isinstance(e, Offer) else e.event.type for e in effects if isinstance(e, Offer | Emit)]
    assert kinds.index("Offer") < kinds.index("subtask_state")


def test_subtasks_run_in_order_then_task_and_execution_complete() -> None:
    engine, _ = start({"a": 2})
    assert offers(engine.on_event(result(X, "a_s0"), at(1))) == ["a_s1"]
    effects = engine.on_event(result(X, "a_s1"), at(2))
    assert ("task_state", "a", "COMPLETED") in emitted(effects)
    assert emitted(effects)[-1] == ("execution_state", None, "COMPLETED")


def test_declared_empty_dependencies_run_subtasks_in_parallel() -> None:
    plan = make_plan({"a": 2})
    raw = plan.model_dump(by_alias=True)
    for sub in raw["phases"][0]["tasks"][0]["subtasks"]:
        sub["dependencies"] = []
    engine = CoordinatorCore(CoreConfig(lag_scale_s=0))
    effects = engine.on_command(StartExecution(execution_id=X, plan=type(plan).model_validate(raw)), at(0))
    assert offers(effects) == ["a_s0", "a_s1"]


def test_finish_to_start_waits_for_the_finish() -> None:
    engine, effects = start(["a", "b"], [("a", "b", "finish_to_start", 0)])
    assert offers(effects) == ["a_s0"]
    assert offers(engine.on_event(result(X, "a_s0"), at(1))) == ["b_s0"]


def test_start_to_start_waits_for_the_start_only() -> None:
    engine, effects = start(["a", "b"], [("a", "b", "start_to_start", 0)])
    assert offers(effects) == ["a_s0", "b_s0"]  # a started in the same decision
    a, b = engine.runs[X].tasks["a"], engine.runs[X].tasks["b"]
    assert a.started_at is not None
    assert b.started_at is not None
    assert b.started_at >= a.started_at


def test_finish_to_finish_holds_the_successor_open() -> None:
    engine, effects = start(["a", "b"], [("a", "b", "finish_to_finish", 0)])
    assert offers(effects) == ["a_s0", "b_s0"]
    held = engine.on_event(result(X, "b_s0"), at(1))
    assert ("task_state", "b", "COMPLETED") not in emitted(held)
    released = engine.on_event(result(X, "a_s0"), at(2))
    assert emitted(released)[-2:] == [("task_state", "b", "COMPLETED"), ("execution_state", None, "COMPLETED")]


def test_start_to_finish_needs_the_predecessor_started() -> None:
    engine, _ = start(["a", "b", "c"], [("a", "b", "finish_to_start", 0), ("b", "c", "start_to_finish", 0)])
    run = engine.runs[X]
    assert run.tasks["c"].status == TaskStatus.RUNNING
    held = engine.on_event(result(X, "c_s0"), at(1))
    assert ("task_state", "c", "COMPLETED") not in emitted(held)
    released = engine.on_event(result(X, "a_s0"), at(2))  # b starts now, so c may finish
    assert ("task_state", "c", "COMPLETED") in emitted(released)
    b, c = run.tasks["b"], run.tasks["c"]
    assert b.started_at is not None
    assert c.finished_at is not None
    assert c.finished_at >= b.started_at


def test_lag_arms_a_wake_up_and_dispatches_when_it_runs_out() -> None:
    engine, _ = start(["a", "b"], [("a", "b", "finish_to_start", 1.0)], config=CoreConfig(lag_scale_s=10))
    effects = engine.on_event(result(X, "a_s0"), at(5))
    assert offers(effects) == []
    assert [e.at for e in effects if isinstance(e, WakeAt)] == [at(15)]
    assert offers(engine.tick(X, at(14.9))) == []
    assert offers(engine.tick(X, at(15))) == ["b_s0"]


def test_retryable_failure_is_offered_again_with_the_next_attempt() -> None:
    engine, _ = start({"a": 1})
    effects = engine.on_event(result(X, "a_s0", ok=False, error="flaky"), at(1))
    assert ("subtask_state", "a_s0", "RETRY_WAIT") in emitted(effects)
    assert [e.offer.attempt for e in effects if isinstance(e, Offer)] == [2]


def test_with_on_failure_fail_attempts_run_out_and_fail_the_execution_cancelling_the_rest() -> None:
    config = CoreConfig(lag_scale_s=0, default_max_attempts=2, backoff_initial_s=0)
    engine, _ = start({"a": 1, "b": 2}, config=config, on_failure="fail")
    engine.on_event(result(X, "a_s0", ok=False, error="e1"), at(1))
    effects = engine.on_event(result(X, "a_s0", attempt=2, ok=False, error="e2"), at(2))
    got = emitted(effects)
    assert ("subtask_state", "a_s0", "FAILED") in got
    assert ("task_state", "a", "FAILED") in got
    assert ("subtask_state", "b_s1", "CANCELLED") in got
    assert got[-1] == ("execution_state", None, "FAILED")
    assert "a_s0 failed after 2 attempt(s): e2" in decision(effects[-1], ExecutionState).reason


def test_permanent_failure_is_not_retried() -> None:
    engine, _ = start({"a": 1}, on_failure="fail")
    effects = engine.on_event(result(X, "a_s0", ok=False, retryable=False, error="bad params"), at(1))
    assert offers(effects) == []
    assert engine.runs[X].status == ExecutionStatus.FAILED


def test_zombie_result_of_an_earlier_attempt_is_ignored() -> None:
    engine, _ = start({"a": 1})
    engine.on_event(result(X, "a_s0", ok=False), at(1))  # attempt 2 dispatched
    assert emitted(engine.on_event(result(X, "a_s0", attempt=1, ok=True), at(2))) == []
    assert engine.runs[X].subtasks["a_s0"].status == TaskStatus.DISPATCHED


def test_duplicate_result_changes_nothing() -> None:
    engine, _ = start({"a": 2})
    engine.on_event(result(X, "a_s0"), at(1))
    assert emitted(engine.on_event(result(X, "a_s0"), at(2))) == []


def test_started_report_moves_the_subtask_to_running_once() -> None:
    engine, _ = start({"a": 1})
    assert emitted(engine.on_event(started(X, "a_s0"), at(1))) == [("subtask_state", "a_s0", "RUNNING")]
    assert emitted(engine.on_event(started(X, "a_s0"), at(2))) == []


def test_a_result_that_says_when_it_began_completes_a_dispatched_subtask_without_running() -> None:
    engine, _ = start({"a": 1})
    effects = engine.on_event(result(X, "a_s0", started_at=at(0.5)), at(1))
    assert emitted(effects)[:2] == [("subtask_state", "a_s0", "COMPLETED"), ("task_state", "a", "COMPLETED")]
    [completed] = [e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, SubtaskState)]
    assert completed.started_at == at(0.5)
    assert engine.runs[X].subtasks["a_s0"].started_at == at(0.5)


def test_a_result_after_running_keeps_the_start_of_running() -> None:
    engine, _ = start({"a": 1})
    engine.on_event(started(X, "a_s0"), at(1))
    effects = engine.on_event(result(X, "a_s0", started_at=at(0.5)), at(2))  # a started resent after a result
    [completed] = [e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, SubtaskState)]
    assert completed.started_at is None, "RUNNING said when it began"
    assert engine.runs[X].subtasks["a_s0"].started_at == at(1)


def test_pause_stops_dispatch_but_takes_results_and_resume_goes_on() -> None:
    engine, _ = start({"a": 2})
    assert emitted(engine.on_command(PauseExecution(execution_id=X), at(1))) == [("execution_state", None, "PAUSED")]
    effects = engine.on_event(result(X, "a_s0"), at(2))
    assert ("subtask_state", "a_s0", "COMPLETED") in emitted(effects)
    assert offers(effects) == []
    resumed = engine.on_command(ResumeExecution(execution_id=X), at(3))
    assert emitted(resumed)[0] == ("execution_state", None, "RUNNING")
    assert offers(resumed) == ["a_s1"]


def test_cancel_ends_everything_and_later_results_are_ignored() -> None:
    engine, _ = start({"a": 2, "b": 1})
    effects = engine.on_command(CancelExecution(execution_id=X, reason="stop"), at(1))
    assert emitted(effects)[-1] == ("execution_state", None, "CANCELLED")
    run = engine.runs[X]
    assert all(t.status == TaskStatus.CANCELLED for t in run.tasks.values())
    assert emitted(engine.on_event(result(X, "a_s0"), at(2))) == []


def test_impossible_commands_are_rejected_with_the_reason() -> None:
    engine, _ = start({"a": 1})
    (rejected,) = engine.on_command(ResumeExecution(execution_id=X), at(1))
    assert "cannot resume a RUNNING execution" in decision(rejected, CommandRejected).reason
    (unknown,) = engine.on_command(PauseExecution(execution_id="nope"), at(1))
    assert "unknown execution nope" in decision(unknown, CommandRejected).reason


def test_start_is_idempotent_and_an_invalid_plan_is_rejected() -> None:
    engine, _ = start({"a": 1})
    assert engine.on_command(StartExecution(execution_id=X, plan=make_plan({"a": 1})), at(1)) == []
    bad = make_plan(["a", "b"], [("a", "b", "finish_to_start", 0), ("b", "a", "finish_to_start", 0)])
    (rejected,) = engine.on_command(StartExecution(execution_id="x2", plan=bad), at(1))
    assert "dependency cycle" in decision(rejected, CommandRejected).reason
    assert "x2" not in engine.runs


def test_terminal_task_states_are_final() -> None:
    engine, _ = start({"a": 1, "b": 1})
    engine.on_event(result(X, "a_s0"), at(1))
    run = engine.runs[X]
    assert run.tasks["a"].status == TaskStatus.COMPLETED
    engine.fold(TaskState(execution_id=X, task_id="a", status=TaskStatus.RUNNING))
    assert run.tasks["a"].status == TaskStatus.COMPLETED


def test_task_without_subtasks_is_a_milestone() -> None:
    _engine, effects = start({"m": 0, "b": 1}, [("m", "b", "finish_to_start", 0)])
    assert ("task_state", "m", "COMPLETED") in emitted(effects)
    assert offers(effects) == ["b_s0"]


def test_pinned_work_goes_to_the_named_agent() -> None:
    engine = CoordinatorCore(CoreConfig(lag_scale_s=0))
    effects = engine.on_command(
        StartExecution(execution_id=X, plan=make_plan({"a": 1}), pins={"echo": "agent-7"}), at(0)
    )
    (offer,) = [e for e in effects if isinstance(e, Offer)]
    assert offer.agent_id == "agent-7"


def test_rebuilding_from_the_events_gives_the_same_state() -> None:
    engine, log = start({"a": 2, "b": 1}, [("a", "b", "finish_to_start", 0)])
    reports: list[Event] = [
        result(X, "a_s0", started_at=at(0.5)),
        started(X, "a_s1"),
        result(X, "a_s1"),
        result(X, "b_s0", started_at=at(3.5)),
    ]
    for i, report in enumerate(reports):
        log += [Emit(report), *engine.on_event(report, at(i + 1))]
    rebuilt = CoordinatorCore(CoreConfig(lag_scale_s=0))
    for effect in log:
        if isinstance(effect, Emit):
            rebuilt.fold(effect.event)
    assert rebuilt.runs[X].snapshot() == engine.runs[X].snapshot()
    assert emitted(rebuilt.tick_all(at(10))) == []  # nothing left to decide


def decisions(effects: list[Effect]) -> dict[str, tuple[str, str | None, str]]:
    return {
        e.event.event_id: (e.event.type, e.event.subtask_id or e.event.task_id, str(getattr(e.event, "status", "")))
        for e in effects
        if isinstance(e, Emit)
    }


def test_a_decision_id_never_names_two_different_decisions_whatever_the_report_order() -> None:
    # Regression: after a restart the result can arrive before the started report (redelivery order).
    # With ids numbered by version, the COMPLETED decision then took the id of the earlier RUNNING one,
    # the stream dropped it as a duplicate, and the read model kept the subtask RUNNING forever.
    in_order, log_a = start({"a": 1})
    log_a = [*log_a, *in_order.on_event(started(X, "a_s0"), at(1)), *in_order.on_event(result(X, "a_s0"), at(2))]
    reordered = CoordinatorCore(CoreConfig(lag_scale_s=0))
    for effect in log_a[:3]:  # created, queued, ... up to before any report
        if isinstance(effect, Emit):
            reordered.fold(effect.event)
    reordered.tick(X, at(0))
    log_b = [*reordered.on_event(result(X, "a_s0"), at(1)), *reordered.on_event(started(X, "a_s0"), at(2))]
    seen_a, seen_b = decisions(log_a), decisions(log_b)
    for event_id in seen_a.keys() & seen_b.keys():
        assert seen_a[event_id] == seen_b[event_id], f"{event_id} names {seen_a[event_id]} and {seen_b[event_id]}"
    assert ("subtask_state", "a_s0", "COMPLETED") in seen_b.values()


def _stream_with_reports_before(dispatched_stored: bool) -> list[Event]:
    """The stream after a start of {"a": 2} whose first offer an agent finished before its DISPATCHED was stored."""
    _, effects = start({"a": 2})
    events = [e.event for e in effects if isinstance(e, Emit)]
    (dispatched,) = [e for e in events if isinstance(e, SubtaskState) and e.status == TaskStatus.DISPATCHED]
    before = [e for e in events if e is not dispatched]
    reports: list[Event] = [started(X, "a_s0"), result(X, "a_s0")]
    return [*before, *reports, *([dispatched] if dispatched_stored else [])]


def test_reports_stored_before_their_dispatched_event_count_on_a_rebuild() -> None:
    # Regression (the stall after a restart): decision events are published one at a time, behind the offer,
    # so a quick agent's reports can be stored first. A rebuild dropped them as reports on an attempt not
    # dispatched yet, then folded the DISPATCHED: the subtask waited forever for an offer an agent had taken.
    rebuilt = CoordinatorCore(CoreConfig(lag_scale_s=0))
    for event in _stream_with_reports_before(dispatched_stored=True):
        rebuilt.fold(event)
    effects = rebuilt.tick_all(at(5))
    assert ("subtask_state", "a_s0", "COMPLETED") in emitted(effects)
    assert offers(effects) == ["a_s1"]


def test_reports_on_an_offer_whose_dispatched_was_never_stored_count_when_it_is_decided_again() -> None:
    # The coordinator died between the offer and its DISPATCHED event; the agent did the work meanwhile.
    rebuilt = CoordinatorCore(CoreConfig(lag_scale_s=0))
    for event in _stream_with_reports_before(dispatched_stored=False):
        rebuilt.fold(event)
    assert rebuilt.runs[X].subtasks["a_s0"].status == TaskStatus.PENDING
    effects = rebuilt.tick_all(at(5))
    # the same attempt again (the stream drops the offer's copy), then the agent's reports on it
    assert emitted(effects)[:3] == [
        ("subtask_state", "a_s0", "DISPATCHED"),
        ("subtask_state", "a_s0", "RUNNING"),
        ("subtask_state", "a_s0", "COMPLETED"),
    ]
    assert offers(effects) == ["a_s0", "a_s1"]


def test_a_report_on_a_later_attempt_is_applied_only_once_that_attempt_is_dispatched() -> None:
    engine, _ = start({"a": 1})
    assert engine.on_event(result(X, "a_s0", attempt=2), at(1)) == []
    sub = engine.runs[X].subtasks["a_s0"]
    assert (sub.status, sub.attempt, sub.result) == (TaskStatus.DISPATCHED, 1, None)
    # attempt 1 fails; with no backoff attempt 2 is dispatched at once and its early result taken
    effects = engine.on_event(result(X, "a_s0", ok=False, retryable=True, error="x"), at(2))
    assert [s for t, sid, s in emitted(effects) if sid == "a_s0"] == ["RETRY_WAIT", "DISPATCHED", "COMPLETED"]
    assert engine.runs[X].status == ExecutionStatus.COMPLETED
