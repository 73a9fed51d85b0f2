"""The rules of issue 4 in the pure core: retries, timeouts, liveness, rejections, people in the loop, control."""

from datetime import timedelta
from typing import Any

from planexe_ax.bus import (
    CancelTask,
    Command,
    CommandRejected,
    Event,
    ExecutionStatus,
    InboxOpened,
    PauseTask,
    Plan,
    Reassign,
    ResolveInbox,
    ResumeTask,
    StartExecution,
    SubtaskBlocked,
    SubtaskProgress,
    SubtaskRejected,
    SubtaskResult,
    SubtaskState,
    TaskStatus,
)
from planexe_ax.bus.messages import CommandBase, InboxAction
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.decider import backoff_s
from planexe_ax.coordinator.state import Agents, CoreConfig, Effect, Emit, Offer, WakeAt
from tests.helpers.factories import at, decision, emitted, make_plan, offers, result, started

X = "x1"
AGENTS = {"agent-1": frozenset({"echo"}), "agent-2": frozenset({"echo"})}


def engine_for(plan: Plan, agents: Agents | None = AGENTS, **config: Any) -> tuple[CoordinatorCore, list[Effect]]:
    engine = CoordinatorCore(CoreConfig(lag_scale_s=0, **config))
    if agents is not None:
        engine.set_agents(agents, at(0))
    return engine, engine.on_command(StartExecution(execution_id=X, plan=plan), at(0))


def item_of(effects: list[Effect], kind: str) -> InboxOpened:
    (item,) = [
        e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, InboxOpened) and e.event.kind == kind
    ]
    return item


def reasons(effects: list[Effect]) -> str:
    return " | ".join(getattr(e.event, "reason", "") for e in effects if isinstance(e, Emit))


def offer_of(effects: list[Effect]) -> Offer:
    (offer,) = [e for e in effects if isinstance(e, Offer)]
    return offer


def with_fields(
    plan: Plan, task: dict[str, Any] | None = None, subtask: dict[str, Any] | None = None, **top: Any
) -> Plan:
    raw = plan.model_dump(by_alias=True)
    raw.update(top)
    raw["phases"][0]["tasks"][0].update(task or {})
    raw["phases"][0]["tasks"][0]["subtasks"][0].update(subtask or {})
    return Plan.model_validate(raw)


# -- retries and backoff --------------------------------------------------------------------------------
def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    run, config = engine.runs[X], CoreConfig(backoff_initial_s=1, backoff_max_s=10)
    sub = run.subtasks["a_s0"]
    delays = [backoff_s(run, sub, n, config) for n in range(1, 7)]
    for n, delay in enumerate(delays[:4], start=1):
        assert 0.5 * 2 ** (n - 1) <= delay <= 2 ** (n - 1)
    assert all(5 <= d <= 10 for d in delays[4:])
    assert delays == [backoff_s(run, sub, n, config) for n in range(1, 7)], "deterministic for replay"


def test_a_failed_attempt_waits_its_backoff_then_goes_again() -> None:
    engine, _ = engine_for(make_plan({"a": 1}), backoff_initial_s=4)
    effects = engine.on_event(result(X, "a_s0", ok=False, error="flaky"), at(1))
    (wait,) = [e.event for e in effects if isinstance(e, Emit) and e.event.type == "subtask_state"]
    assert wait.status == TaskStatus.RETRY_WAIT
    assert wait.not_before is not None
    assert at(3) <= wait.not_before <= at(5)
    assert wait.not_before in [e.at for e in effects if isinstance(e, WakeAt)]
    assert offers(engine.tick(X, wait.not_before - timedelta(milliseconds=1))) == []
    assert [e.offer.attempt for e in engine.tick(X, wait.not_before) if isinstance(e, Offer)] == [2]


def test_retry_policy_of_the_plan_wins_over_the_default() -> None:
    plan = with_fields(make_plan({"a": 1}), subtask={"retry_policy": {"max_attempts": 1}})
    engine, _ = engine_for(plan)
    effects = engine.on_event(result(X, "a_s0", ok=False, error="boom"), at(1))
    assert item_of(effects, "escalation").reason == "failed after 1 attempt(s): boom"
    assert offers(effects) == []


# -- timeouts -----------------------------------------------------------------------------------------------
def test_schedule_to_start_timeout_retries_the_attempt() -> None:
    engine, effects = engine_for(make_plan({"a": 1}), schedule_to_start_s=30, backoff_initial_s=0)
    assert at(30) in [e.at for e in effects if isinstance(e, WakeAt)]
    assert emitted(engine.tick(X, at(29))) == []
    timed_out = engine.tick(X, at(30))
    assert "schedule-to-start timeout" in reasons(timed_out)
    assert [e.offer.attempt for e in timed_out if isinstance(e, Offer)] == [2]


def test_start_to_close_timeout_uses_the_subtask_timeout() -> None:
    plan = with_fields(make_plan({"a": 1}), subtask={"timeout_hours": 0.01})  # 36 s
    engine, _ = engine_for(plan, backoff_initial_s=0)
    engine.on_event(started(X, "a_s0"), at(1))
    assert emitted(engine.tick(X, at(36))) == []
    effects = engine.tick(X, at(37))
    assert "start-to-close timeout: still running after 36 s" in reasons(effects)
    assert offers(effects) == ["a_s0"]


def test_an_agent_going_offline_times_out_its_attempt_a_ttl_after_it_started() -> None:
    engine, _ = engine_for(make_plan({"a": 1}), backoff_initial_s=0, agent_ttl_s=10)
    engine.on_event(started(X, "a_s0"), at(1))  # agent-1 has it
    effects = engine.set_agents({"agent-2": frozenset({"echo"})}, at(2))
    assert emitted(effects) == [], "the start showed agent-1 alive a second ago"
    assert at(11) in [e.at for e in effects if isinstance(e, WakeAt)]
    assert emitted(engine.tick(X, at(10.5))) == []
    effects = engine.tick(X, at(11))
    assert "heartbeat timeout: agent agent-1 went offline" in reasons(effects)
    assert [e.offer.attempt for e in effects if isinstance(e, Offer)] == [2]


def test_a_result_from_an_agent_the_directory_lost_a_moment_ago_counts() -> None:
    """Every heartbeat is kept out while the bus elects the agents bucket's leader; the reports get in."""
    engine, _ = engine_for(make_plan({"a": 1}), backoff_initial_s=0, agent_ttl_s=10)
    engine.on_event(started(X, "a_s0"), at(1))
    engine.set_agents({}, at(2))
    engine.on_event(result(X, "a_s0"), at(3))
    assert engine.runs[X].subtasks["a_s0"].status == TaskStatus.COMPLETED


def test_no_agent_with_the_capability_goes_to_a_person_after_the_grace() -> None:
    engine, effects = engine_for(make_plan({"a": 1}), agents={}, no_agent_grace_s=10)
    assert at(10) in [e.at for e in effects if isinstance(e, WakeAt)]
    item = item_of(engine.tick(X, at(10)), "escalation")
    assert item.reason == "no agent has capability echo"
    assert engine.runs[X].subtasks["a_s0"].status == TaskStatus.AWAITING_HUMAN
    assert engine.runs[X].status == ExecutionStatus.BLOCKED


def test_zombie_report_after_a_timeout_never_completes_the_new_attempt() -> None:
    engine, _ = engine_for(make_plan({"a": 1}), schedule_to_start_s=5, backoff_initial_s=0)
    engine.tick(X, at(5))  # attempt 1 timed out, attempt 2 offered
    assert emitted(engine.on_event(result(X, "a_s0", attempt=1), at(6))) == []
    assert engine.runs[X].subtasks["a_s0"].status == TaskStatus.DISPATCHED
    effects = engine.on_event(result(X, "a_s0", attempt=2), at(7))
    assert ("subtask_state", "a_s0", "COMPLETED") in emitted(effects)


# -- rejections and blocked work ------------------------------------------------------------------------------
def reject(subtask_id: str, attempt: int, agent: str) -> SubtaskRejected:
    return SubtaskRejected(execution_id=X, subtask_id=subtask_id, attempt=attempt, agent_id=agent,
                           reason_code="missing_tool", reason="no browser")  # fmt: skip


def test_a_rejected_offer_is_re_routed_to_another_capable_agent_then_to_a_person() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    rerouted = engine.on_event(reject("a_s0", 1, "agent-1"), at(1))
    offer = offer_of(rerouted)
    assert (offer.agent_id, offer.offer.attempt) == ("agent-2", 2)
    assert "rejected by agent-1 (missing_tool: no browser); re-routed to agent-2" in reasons(rerouted)
    escalated = engine.on_event(reject("a_s0", 2, "agent-2"), at(2))
    item = item_of(escalated, "escalation")
    assert "no other agent offers echo" in item.reason
    assert offers(escalated) == []


def test_blocked_work_past_its_max_wait_goes_to_a_person() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    blocked = SubtaskBlocked(execution_id=X, subtask_id="a_s0", attempt=1, agent_id="agent-1",
                             reason="waiting for an email reply", max_wait_s=60)  # fmt: skip
    effects = engine.on_event(blocked, at(1))
    assert ("subtask_state", "a_s0", "BLOCKED") in emitted(effects)
    assert engine.runs[X].status == ExecutionStatus.BLOCKED
    assert emitted(engine.tick(X, at(60))) == []
    assert item_of(engine.tick(X, at(61)), "escalation").reason == "blocked longer than allowed"


def test_progress_after_blocked_means_running_again() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    ids = {"execution_id": X, "subtask_id": "a_s0", "attempt": 1, "agent_id": "agent-1"}
    engine.on_event(SubtaskBlocked(reason="reply", **ids), at(1))
    back = engine.on_event(SubtaskProgress(percent=50, **ids), at(2))
    assert ("subtask_state", "a_s0", "RUNNING") in emitted(back)
    assert engine.runs[X].status == ExecutionStatus.RUNNING


# -- people in the loop ---------------------------------------------------------------------------------------
def resolve(item_id: str, action: InboxAction, **kw: Any) -> ResolveInbox:
    return ResolveInbox(execution_id=X, item_id=item_id, action=action, issued_by="ann", **kw)


def test_human_required_work_waits_in_the_inbox_until_a_person_completes_it() -> None:
    engine, effects = engine_for(with_fields(make_plan({"a": 1, "b": 1}), task={"human_required": True}))
    item = item_of(effects, "human_task")
    assert offers(effects) == ["b_s0"]
    done = engine.on_command(resolve(item.item_id, "complete", output={"notes": "called Carol"}), at(5))
    assert ("subtask_state", "a_s0", "COMPLETED") in emitted(done)
    closed = next(e.event for e in done if isinstance(e, Emit) and e.event.type == "inbox_closed")
    assert (closed.resolution, closed.by, closed.output) == ("completed", "ann", {"notes": "called Carol"})
    assert engine.runs[X].subtasks["a_s0"].agent_id == "person-ann"


def test_approval_gate_records_who_when_and_comment() -> None:
    engine, effects = engine_for(with_fields(make_plan({"a": 1}), task={"approval_required": True}))
    item = item_of(effects, "approval")
    assert offers(effects) == []
    assert engine.runs[X].tasks["a"].status == TaskStatus.AWAITING_APPROVAL
    approved = engine.on_command(resolve(item.item_id, "approve", comment="budget ok"), at(9))
    closed = next(e.event for e in approved if isinstance(e, Emit) and e.event.type == "inbox_closed")
    assert (closed.by, closed.comment, closed.ts) == ("ann", "budget ok", at(9))
    assert offers(approved) == ["a_s0"]


def test_rejected_approval_fails_the_task_and_the_execution() -> None:
    engine, effects = engine_for(make_plan({"a": 1}), approval_actions=frozenset({"echo"}))
    item = item_of(effects, "approval")
    assert "high-impact" in item.reason
    engine.on_command(resolve(item.item_id, "reject", comment="too risky"), at(2))
    run = engine.runs[X]
    assert run.tasks["a"].status == TaskStatus.FAILED
    assert run.status == ExecutionStatus.FAILED


def test_low_confidence_result_waits_for_review_and_can_be_edited() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    effects = engine.on_event(result(X, "a_s0", output={"score": 2}, confidence=0.4), at(1))
    item = item_of(effects, "review")
    assert (item.output, item.confidence) == ({"score": 2}, 0.4)
    rejected = engine.on_command(resolve(item.item_id, "approve"), at(2))
    assert "cannot approve a review item" in decision(rejected[0], CommandRejected).reason
    edited = engine.on_command(resolve(item.item_id, "edit", output={"score": 3}), at(3))
    completed = next(e.event for e in edited if isinstance(e, Emit) and e.event.type == "subtask_state")
    assert (completed.status, completed.output) == (TaskStatus.COMPLETED, {"score": 3})


def test_plan_review_threshold_and_reject_means_retry() -> None:
    plan = make_plan({"a": 1}, review_threshold=0.9)
    engine, _ = engine_for(plan, backoff_initial_s=0)
    item = item_of(engine.on_event(result(X, "a_s0", confidence=0.8), at(1)), "review")
    retried = engine.on_command(resolve(item.item_id, "reject", comment="wrong town"), at(2))
    assert [e.offer.attempt for e in retried if isinstance(e, Offer)] == [2]


# -- control ------------------------------------------------------------------------------------------------------
def test_pause_and_resume_one_task() -> None:
    engine, _ = engine_for(make_plan({"a": 2, "b": 2}))
    engine.on_command(PauseTask(execution_id=X, task_id="a"), at(1))
    held = engine.on_event(result(X, "a_s0"), at(2))
    assert offers(held) == []
    assert offers(engine.on_event(result(X, "b_s0"), at(3))) == ["b_s1"]
    assert offers(engine.on_command(ResumeTask(execution_id=X, task_id="a"), at(4))) == ["a_s1"]


def test_cancelling_a_task_lets_its_dependents_go_on() -> None:
    engine, _ = engine_for(make_plan(["a", "b"], [("a", "b", "finish_to_start", 0)]))
    effects = engine.on_command(CancelTask(execution_id=X, task_id="a"), at(1))
    assert ("task_state", "a", "CANCELLED") in emitted(effects)
    assert offers(effects) == ["b_s0"]
    done = engine.on_event(result(X, "b_s0"), at(2))
    assert emitted(done)[-1] == ("execution_state", None, "COMPLETED")


def test_reassign_moves_open_and_future_work_to_the_named_agent() -> None:
    engine, _ = engine_for(make_plan({"a": 2}))
    moved = engine.on_command(Reassign(execution_id=X, task_id="a", agent_id="agent-9"), at(1))
    offer = offer_of(moved)
    assert (offer.agent_id, offer.offer.attempt) == ("agent-9", 2)
    nxt = engine.on_event(result(X, "a_s0", attempt=2, agent_id="agent-9"), at(2))
    assert offer_of(nxt).agent_id == "agent-9"


def test_commands_on_unknown_tasks_and_items_are_rejected() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    (bad_task,) = engine.on_command(PauseTask(execution_id=X, task_id="zz"), at(1))
    assert decision(bad_task, CommandRejected).reason == "unknown task zz"
    (bad_item,) = engine.on_command(resolve("nope", "approve"), at(1))
    assert decision(bad_item, CommandRejected).reason == "no open inbox item nope"


def test_replay_with_people_and_rejections_gives_the_same_state() -> None:
    engine, log = engine_for(with_fields(make_plan({"a": 1, "b": 2}), task={"human_required": True}))
    item = item_of(log, "human_task")
    steps: list[Event | Command] = [
        reject("b_s0", 1, "agent-1"),
        result(X, "b_s0", attempt=2, agent_id="agent-2"),
        resolve(item.item_id, "complete", output={}),
        result(X, "b_s1", confidence=0.1),
    ]
    for i, message in enumerate(steps, start=1):
        if isinstance(message, CommandBase):
            log += engine.on_command(message, at(i))
        else:
            log += [Emit(message), *engine.on_event(message, at(i))]
    rebuilt = CoordinatorCore(CoreConfig(lag_scale_s=0))
    for effect in log:
        if isinstance(effect, Emit):
            rebuilt.fold(effect.event)
    assert rebuilt.runs[X].snapshot() == engine.runs[X].snapshot()
    assert len(rebuilt.runs[X].inbox) == 1


# -- the attempt's holder -------------------------------------------------------------------------------------
def test_a_report_counts_only_from_the_agent_that_started_the_attempt() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    engine.on_event(started(X, "a_s0", agent_id="agent-1"), at(1))
    forged = result(X, "a_s0", agent_id="agent-2", output={"from": "agent-2"})
    assert emitted(engine.on_event(forged, at(2))) == []
    sub = engine.runs[X].subtasks["a_s0"]
    assert (sub.status, sub.agent_id, sub.result) == (TaskStatus.RUNNING, "agent-1", None)
    effects = engine.on_event(result(X, "a_s0", agent_id="agent-1", output={"from": "agent-1"}), at(3))
    (done,) = [e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, SubtaskState)]
    assert (done.status, done.agent_id, done.output) == (TaskStatus.COMPLETED, "agent-1", {"from": "agent-1"})


def test_only_the_agent_an_attempt_is_pinned_to_can_start_reject_or_finish_it() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    engine.on_command(Reassign(execution_id=X, task_id="a", agent_id="agent-2"), at(1))
    for report in (started(X, "a_s0", 2, "agent-1"), reject("a_s0", 2, "agent-1"), result(X, "a_s0", 2)):
        assert emitted(engine.on_event(report, at(2))) == []
    assert engine.runs[X].subtasks["a_s0"].status == TaskStatus.DISPATCHED
    effects = engine.on_event(result(X, "a_s0", 2, agent_id="agent-2"), at(3))
    assert ("subtask_state", "a_s0", "COMPLETED") in emitted(effects)


def test_a_report_without_an_agent_id_holds_nothing() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    anonymous = SubtaskResult(execution_id=X, subtask_id="a_s0", attempt=1, ok=True)
    assert emitted(engine.on_event(anonymous, at(1))) == []
    assert engine.runs[X].subtasks["a_s0"].agent_id is None


def test_the_first_report_of_an_unpinned_attempt_makes_its_sender_the_holder() -> None:
    engine, _ = engine_for(make_plan({"a": 1}))
    blocked = SubtaskBlocked(execution_id=X, subtask_id="a_s0", attempt=1, agent_id="agent-2", reason="reply")
    assert ("subtask_state", "a_s0", "BLOCKED") in emitted(engine.on_event(blocked, at(1)))
    assert emitted(engine.on_event(reject("a_s0", 1, "agent-1"), at(2))) == []
    progress = SubtaskProgress(execution_id=X, subtask_id="a_s0", attempt=1, agent_id="agent-2", percent=10)
    assert ("subtask_state", "a_s0", "RUNNING") in emitted(engine.on_event(progress, at(3)))


def test_replay_of_foreign_reports_gives_the_same_state() -> None:
    engine, log = engine_for(make_plan({"a": 2}))
    steps: list[Event] = [started(X, "a_s0", agent_id="agent-1"), result(X, "a_s0", agent_id="agent-2"),
             result(X, "a_s0", agent_id="agent-1"), result(X, "a_s1", agent_id="agent-2")]  # fmt: skip
    for i, event in enumerate(steps, start=1):
        log += [Emit(event), *engine.on_event(event, at(i))]
    rebuilt = CoordinatorCore(CoreConfig(lag_scale_s=0))
    for effect in log:
        if isinstance(effect, Emit):
            rebuilt.fold(effect.event)
    assert rebuilt.runs[X].snapshot() == engine.runs[X].snapshot()
    assert engine.runs[X].status == ExecutionStatus.COMPLETED


def test_a_coordinator_starting_sends_again_the_offers_of_recent_dispatches_as_they_were() -> None:
    """A leader that stopped between a DISPATCHED and its offer left nothing for agents to take: the next one
    sends the offer again, the same message, so the stream keeps one copy of an offer that was stored."""
    engine, effects = engine_for(make_plan({"a": 1, "b": 1}), duplicate_window_s=60)
    first = [e for e in effects if isinstance(e, Offer)]
    assert len(first) == 2
    assert engine.reoffers(at(30)) == first
    engine.on_event(started(X, "a_s0"), at(31))
    again = [e.offer.subtask_id for e in engine.reoffers(at(32)) if isinstance(e, Offer)]
    assert again == ["b_s0"], "a started one is not offered again"
    assert engine.reoffers(at(61)) == [], "past the de-duplication window a copy would be a second offer"
