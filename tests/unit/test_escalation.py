"""A failure goes to a person: escalations in the inbox and the four answers (retry, complete, skip, fail)."""

from typing import Any

from planexe_ax.bus import (
    CommandRejected,
    ExecutionState,
    ExecutionStatus,
    InboxClosed,
    InboxOpened,
    Plan,
    Reassign,
    ResolveInbox,
    StartExecution,
    SubtaskResult,
    TaskState,
    TaskStatus,
)
from planexe_ax.bus.messages import InboxAction
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, Offer
from tests.helpers.factories import at, decision, emitted, make_plan, offers, result

X = "x1"
AGENTS = {"agent-1": frozenset({"echo"})}
CONFIG = CoreConfig(lag_scale_s=0, default_max_attempts=2, backoff_initial_s=0)


def start(plan: Plan) -> tuple[CoordinatorCore, list[Effect]]:
    engine = CoordinatorCore(CONFIG)
    engine.set_agents(AGENTS, at(0))
    return engine, engine.on_command(StartExecution(execution_id=X, plan=plan), at(0))


def fail_twice(engine: CoordinatorCore, subtask_id: str = "a_s0", first: int = 1, error: str = "boom") -> list[Effect]:
    """Two failed attempts: the reports and every effect, as a log to replay."""
    log: list[Effect] = []
    for attempt in (first, first + 1):
        report = result(X, subtask_id, attempt=attempt, ok=False, error=error)
        log += [Emit(report), *engine.on_event(report, at(attempt))]
    return log


def escalation(effects: list[Effect]) -> InboxOpened:
    (item,) = [e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, InboxOpened)]
    assert item.kind == "escalation"
    return item


def answer(engine: CoordinatorCore, item_id: str, action: InboxAction, when: float = 5, **kw: Any) -> list[Effect]:
    return engine.on_command(ResolveInbox(execution_id=X, item_id=item_id, action=action, issued_by="ann", **kw),
                             at(when))  # fmt: skip


def closed(effects: list[Effect]) -> InboxClosed:
    (event,) = [e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, InboxClosed)]
    return event


def status(engine: CoordinatorCore) -> ExecutionStatus:
    return engine.runs[X].status


def chain() -> Plan:
    """a -> b, and c on its own."""
    return make_plan(["a", "b", "c"], [("a", "b", "finish_to_start", 0)])


def test_after_the_last_attempt_the_subtask_waits_for_a_person_and_the_rest_goes_on() -> None:
    engine, _ = start(chain())
    effects = fail_twice(engine)
    item = escalation(effects)
    assert (item.reason, item.subtask_id, item.attempt) == ("failed after 2 attempt(s): boom", "a_s0", 2)
    assert item.actions == ["retry", "complete", "skip", "fail"]
    assert item.params == {"n": 0}
    run = engine.runs[X]
    assert run.subtasks["a_s0"].status == TaskStatus.AWAITING_HUMAN
    assert run.tasks["a"].status == TaskStatus.RUNNING
    assert status(engine) == ExecutionStatus.RUNNING, "c still runs"
    engine.on_event(result(X, "c_s0"), at(3))
    assert status(engine) == ExecutionStatus.BLOCKED
    assert run.tasks["b"].status == TaskStatus.PENDING


def test_a_permanent_error_goes_to_a_person_at_once() -> None:
    engine, _ = start(chain())
    effects = engine.on_event(result(X, "a_s0", ok=False, retryable=False, error="bad params"), at(1))
    assert escalation(effects).reason == "failed permanently: bad params"
    assert offers(effects) == []


def test_retry_with_new_params_offers_a_fresh_round_of_attempts_with_them() -> None:
    engine, _ = start(chain())
    item = escalation(fail_twice(engine))
    retried = answer(engine, item.item_id, "retry", params={"n": 42}, comment="typo fixed")
    assert (closed(retried).resolution, closed(retried).params, closed(retried).by) == ("retried", {"n": 42}, "ann")
    (offer,) = [e.offer for e in retried if isinstance(e, Offer)]
    assert (offer.attempt, offer.params) == (3, {"n": 42})
    assert engine.runs[X].status == ExecutionStatus.RUNNING
    again = engine.on_event(result(X, "a_s0", attempt=3, ok=False, error="still"), at(6))
    assert ("subtask_state", "a_s0", "RETRY_WAIT") in emitted(again), "the retry policy applies afresh"
    assert [o.offer.params for o in again if isinstance(o, Offer)] == [{"n": 42}]
    assert escalation(engine.on_event(result(X, "a_s0", attempt=4, ok=False, error="still"), at(7))).params == {"n": 42}


def test_retry_without_params_keeps_the_plans() -> None:
    engine, _ = start(chain())
    item = escalation(fail_twice(engine))
    retried = answer(engine, item.item_id, "retry")
    assert closed(retried).params is None
    assert [e.offer.params for e in retried if isinstance(e, Offer)] == [{"n": 0}]
    done = engine.on_event(result(X, "a_s0", attempt=3), at(6))
    assert ("subtask_state", "a_s0", "COMPLETED") in emitted(done)
    assert offers(done) == ["b_s0"]


def test_complete_by_hand_records_the_persons_output() -> None:
    engine, _ = start(chain())
    item = escalation(fail_twice(engine))
    done = answer(engine, item.item_id, "complete", output={"rows": 3})
    assert closed(done).output == {"rows": 3}
    sub = engine.runs[X].subtasks["a_s0"]
    assert (sub.status, sub.agent_id) == (TaskStatus.COMPLETED, "person-ann")
    assert offers(done) == ["b_s0"]


def test_skip_counts_as_done_for_dependents_and_shows_skipped() -> None:
    engine, _ = start(chain())
    item = escalation(fail_twice(engine))
    skipped = answer(engine, item.item_id, "skip", comment="not needed")
    assert closed(skipped).resolution == "skipped"
    assert ("subtask_state", "a_s0", "SKIPPED") in emitted(skipped)
    assert ("task_state", "a", "SKIPPED") in emitted(skipped)
    assert offers(skipped) == ["b_s0"]
    engine.on_event(result(X, "c_s0"), at(6))
    end = engine.on_event(result(X, "b_s0"), at(7))
    last = decision(end[-1], ExecutionState)
    assert (last.status, last.reason) == (ExecutionStatus.COMPLETED, "1 subtask(s) skipped by a person")


def test_a_task_with_one_of_two_subtasks_skipped_completes_and_names_it() -> None:
    engine, _ = start(make_plan({"a": 2}))
    skipped = answer(engine, escalation(fail_twice(engine)).item_id, "skip")
    done = engine.on_event(result(X, "a_s1", attempt=1), at(6))
    (task,) = [e.event for e in done if isinstance(e, Emit) and isinstance(e.event, TaskState)]
    assert (task.status, task.reason) == (TaskStatus.COMPLETED, "skipped: a_s0")
    assert offers(skipped) == ["a_s1"]


def test_fail_fails_the_task_and_the_execution_as_before() -> None:
    engine, _ = start(chain())
    item = escalation(fail_twice(engine))
    failed = answer(engine, item.item_id, "fail", comment="give up")
    run = engine.runs[X]
    assert (run.subtasks["a_s0"].status, run.tasks["a"].status) == (TaskStatus.FAILED, TaskStatus.FAILED)
    assert run.status == ExecutionStatus.FAILED
    assert "failed by ann: give up (failed after 2 attempt(s): boom)" in decision(failed[-1], ExecutionState).reason
    assert run.subtasks["c_s0"].status == TaskStatus.CANCELLED


def test_reject_still_fails_an_escalation() -> None:
    engine, _ = start(chain())
    answer(engine, escalation(fail_twice(engine)).item_id, "reject")
    assert engine.runs[X].status == ExecutionStatus.FAILED


def test_answers_that_do_not_fit_are_refused() -> None:
    engine, _ = start(chain())
    item = escalation(fail_twice(engine))
    (bad,) = answer(engine, item.item_id, "approve")
    expected = "cannot approve a escalation item; answer with retry or complete or skip or fail"
    assert decision(bad, CommandRejected).reason == expected
    (bad,) = answer(engine, item.item_id, "skip", params={"n": 1})
    assert decision(bad, CommandRejected).reason == "params go with retry only, not with skip"
    answer(engine, item.item_id, "skip")
    (late,) = answer(engine, item.item_id, "fail")
    assert decision(late, CommandRejected).reason == f"no open inbox item {item.item_id}"


def test_on_failure_fail_per_plan_or_per_task() -> None:
    engine, _ = start(make_plan(["a", "b", "c"], on_failure="fail"))
    fail_twice(engine)
    assert engine.runs[X].status == ExecutionStatus.FAILED
    raw = chain().model_dump(by_alias=True)
    raw["phases"][0]["tasks"][2]["on_failure"] = "fail"
    engine, _ = start(Plan.model_validate(raw))
    escalation(fail_twice(engine))  # task a: the plan's default, escalate
    fail_twice(engine, "c_s0")
    assert engine.runs[X].status == ExecutionStatus.FAILED


def test_reassigning_escalated_work_gives_the_new_agent_a_fresh_round_of_attempts() -> None:
    engine, _ = start(chain())
    escalation(fail_twice(engine))
    moved = engine.on_command(Reassign(execution_id=X, task_id="a", agent_id="agent-9"), at(4))
    assert closed(moved).resolution == "reassigned"
    (offer,) = [e for e in moved if isinstance(e, Offer)]
    assert (offer.agent_id, offer.offer.attempt) == ("agent-9", 3)
    report = SubtaskResult(execution_id=X, subtask_id="a_s0", attempt=3, ok=False, error="still", agent_id="agent-9")
    again = engine.on_event(report, at(5))
    assert ("subtask_state", "a_s0", "RETRY_WAIT") in emitted(again)


def replayed(log: list[Effect]) -> CoordinatorCore:
    """A coordinator rebuilt from the events of ``log``, as after a restart."""
    rebuilt = CoordinatorCore(CONFIG)
    for effect in log:
        if isinstance(effect, Emit):
            rebuilt.fold(effect.event)
    return rebuilt


def test_a_restarted_coordinator_keeps_the_escalation_and_the_retried_params() -> None:
    engine, log = start(chain())
    log += fail_twice(engine)
    item = escalation(log)
    rebuilt = replayed(log)
    assert list(rebuilt.runs[X].inbox) == [item.item_id]
    rebuilt.set_agents(AGENTS, at(4))
    log += answer(rebuilt, item.item_id, "retry", params={"n": 7})
    again = replayed(log)
    assert again.runs[X].snapshot() == rebuilt.runs[X].snapshot()
    assert again.runs[X].subtasks["a_s0"].params == {"n": 7}
