"""Property tests of the core: dependencies always hold, executions finish, replay gives the same state."""

from collections import Counter
from datetime import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from planexe_ax.bus import (
    DependencyType,
    Event,
    ExecutionStatus,
    Plan,
    ResolveInbox,
    StartExecution,
    TaskOffer,
    TaskStatus,
)
from planexe_ax.bus.messages import InboxAction
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, GoOn, Offer, WakeAt
from tests.helpers.factories import at, make_plan, result, started

TYPES = [t.value for t in DependencyType]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(1, 7))
    names = [f"t{i}" for i in range(n)]
    counts = {name: draw(st.integers(0, 3)) for name in names}
    deps = [
        (names[i], names[j], draw(st.sampled_from(TYPES)), draw(st.sampled_from([0.0, 0.0, 1.0])))
        for j in range(1, n)
        for i in draw(st.lists(st.integers(0, j - 1), unique=True, max_size=3))
    ]
    return make_plan(counts, deps)


ANSWERS: list[InboxAction] = ["retry", "complete", "skip", "fail"]
DONE = (TaskStatus.COMPLETED, TaskStatus.SKIPPED)


def drive(
    plan: Plan, choices: st.DataObject, fail_every: int, slice_: int | None = None
) -> tuple[CoordinatorCore, list[Event]]:
    """Run a plan through the engine, completing outstanding offers in the order ``choices`` picks.

    A subtask that keeps failing is escalated; a person answers it as ``choices`` picks. With ``slice_``, a
    round dispatches at most that many subtasks and the backlog's rounds are taken as they are asked for."""
    engine = CoordinatorCore(CoreConfig(lag_scale_s=2.0, default_max_attempts=3, dispatch_slice=slice_))
    log: list[Event] = []
    clock = 0.0
    pending: list[TaskOffer] = []
    wakes: list[datetime] = []
    going_on: list[str] = []

    def take(effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Emit):
                log.append(effect.event)
            elif isinstance(effect, Offer):
                pending.append(effect.offer)
            elif isinstance(effect, WakeAt):
                wakes.append(effect.at)
            elif isinstance(effect, GoOn):
                going_on.append(effect.execution_id)

    take(engine.on_command(StartExecution(execution_id="x", plan=plan), at(clock)))
    step = 0
    while engine.runs["x"].status not in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED) and step < 500:
        step += 1
        clock += 1.0
        if going_on:
            going_on.clear()
            take(engine.go_on("x", at(clock)))
            continue
        escalations = [item for item in engine.runs["x"].inbox.values() if item.kind == "escalation"]
        if escalations:
            answer = choices.draw(st.sampled_from(ANSWERS))
            output: dict[str, Any] | None = {} if answer == "complete" else None
            command = ResolveInbox(execution_id="x", item_id=escalations[0].item_id, action=answer, output=output)
            take(engine.on_command(command, at(clock)))
            continue
        if not pending:
            take(engine.tick("x", at(clock)))
            continue
        offer = pending.pop(choices.draw(st.integers(0, len(pending) - 1)))
        for report in (
            started("x", offer.subtask_id, offer.attempt),
            result("x", offer.subtask_id, offer.attempt, ok=(step % fail_every != 0)),
        ):
            log.append(report)
            take(engine.on_event(report, at(clock)))
    return engine, log


@settings(max_examples=150, deadline=None)
@given(plans(), st.data(), st.sampled_from([10_000, 4]), st.sampled_from([None, 1, 2]))
def test_no_task_starts_or_finishes_before_its_dependencies_allow(
    plan: Plan, data: st.DataObject, fail_every: int, slice_: int | None
) -> None:
    engine, _ = drive(plan, data, fail_every, slice_)
    run = engine.runs["x"]
    assert run.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
    for task_id, task in run.tasks.items():
        for dep in (d for d in plan.all_dependencies() if d.to == task_id):
            pred = run.tasks[dep.from_]
            lag = dep.lag_hours * 2.0
            if dep.type == DependencyType.FINISH_TO_START and task.started_at:
                assert pred.finished_at
                assert (task.started_at - pred.finished_at).total_seconds() >= lag
            if dep.type == DependencyType.START_TO_START and task.started_at:
                assert pred.started_at
                assert (task.started_at - pred.started_at).total_seconds() >= lag
            if dep.type == DependencyType.FINISH_TO_FINISH and task.status in DONE:
                assert pred.finished_at
                assert task.finished_at
                assert (task.finished_at - pred.finished_at).total_seconds() >= lag
            if dep.type == DependencyType.START_TO_FINISH and task.status in DONE:
                assert pred.started_at
                assert task.finished_at
                assert (task.finished_at - pred.started_at).total_seconds() >= lag
    if fail_every > 1000:
        assert run.status == ExecutionStatus.COMPLETED
        assert not run.inbox


@settings(max_examples=150, deadline=None)
@given(plans(), st.data())
def test_failures_go_to_a_person_and_every_answer_leads_to_an_end(plan: Plan, data: st.DataObject) -> None:
    engine, _ = drive(plan, data, 3)
    run = engine.runs["x"]
    assert run.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
    assert not run.inbox, "an ended execution leaves nothing open"
    subs = run.subtasks.values()
    if run.status == ExecutionStatus.COMPLETED:
        assert all(s.status in DONE for s in subs)
        assert all(t.status in DONE for t in run.tasks.values())
    else:
        assert any(s.status == TaskStatus.FAILED for s in subs), "only a person's fail fails the execution"
    for task_id, task in run.tasks.items():
        own = [s for s in subs if s.task_id == task_id]
        if task.status == TaskStatus.SKIPPED:
            assert own
            assert all(s.status == TaskStatus.SKIPPED for s in own)


@settings(max_examples=100, deadline=None)
@given(plans(), st.data(), st.sampled_from([None, 1]))
def test_replaying_the_same_events_gives_the_same_state(plan: Plan, data: st.DataObject, slice_: int | None) -> None:
    engine, log = drive(plan, data, 3, slice_)  # often enough that escalations and answers are replayed too
    replayed = CoordinatorCore(CoreConfig(lag_scale_s=2.0, default_max_attempts=3))
    for event in log:
        replayed.fold(event)
    again = CoordinatorCore(CoreConfig(lag_scale_s=2.0, default_max_attempts=3))
    for event in log:
        again.fold(event)
    assert replayed.runs["x"].snapshot() == engine.runs["x"].snapshot() == again.runs["x"].snapshot()


@settings(max_examples=100, deadline=None)
@given(plans(), st.data())
def test_the_status_counters_match_the_tasks_and_subtasks_live_and_replayed(plan: Plan, data: st.DataObject) -> None:
    engine, log = drive(plan, data, 3)
    replayed = CoordinatorCore(CoreConfig(lag_scale_s=2.0, default_max_attempts=3))
    for event in log:
        replayed.fold(event)
    for run in (engine.runs["x"], replayed.runs["x"]):
        assert +run.task_counts == Counter(t.status for t in run.tasks.values())
        assert +run.subtask_counts == Counter(s.status for s in run.subtasks.values())
