"""A round dispatches at most ``dispatch_slice`` subtasks; the rest of the ready work goes out in the rounds after."""

from planexe_ax.bus import CancelExecution, ExecutionStatus, StartExecution
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, GoOn
from tests.helpers.factories import at, make_plan, offers, result, started

X = "x1"
WIDE = {f"t{i:02}": 1 for i in range(10)}


def engine_with(slice_: int | None) -> CoordinatorCore:
    return CoordinatorCore(CoreConfig(lag_scale_s=0, dispatch_slice=slice_))


def go_ons(effects: list[Effect]) -> list[str]:
    return [e.execution_id for e in effects if isinstance(e, GoOn)]


def event_ids(effects: list[Effect]) -> list[str]:
    return [e.event.event_id for e in effects if isinstance(e, Emit)]


def test_a_start_wider_than_the_slice_is_offered_slice_by_slice_in_plan_order() -> None:
    engine = engine_with(4)
    first = engine.on_command(StartExecution(execution_id=X, plan=make_plan(WIDE)), at(0))
    assert offers(first) == ["t00_s0", "t01_s0", "t02_s0", "t03_s0"]
    assert go_ons(first) == [X]
    second = engine.go_on(X, at(1))
    assert offers(second) == ["t04_s0", "t05_s0", "t06_s0", "t07_s0"]
    assert go_ons(second) == [X]
    third = engine.go_on(X, at(2))
    assert offers(third) == ["t08_s0", "t09_s0"]
    assert go_ons(third) == [], "nothing is left: no further round is asked for"
    assert engine.go_on(X, at(3)) == [], "a round asked for twice finds an empty backlog and decides nothing"


def test_sliced_and_unsliced_starts_make_the_same_decisions() -> None:
    whole, sliced = engine_with(None), engine_with(3)
    start = StartExecution(execution_id=X, plan=make_plan(WIDE))
    unsliced_ids = event_ids(whole.on_command(start, at(0)))
    effects = sliced.on_command(start, at(0))
    sliced_ids = event_ids(effects)
    while go_ons(effects):
        effects = sliced.go_on(X, at(0))
        sliced_ids += event_ids(effects)
    assert sorted(sliced_ids) == sorted(unsliced_ids)
    assert len(set(sliced_ids)) == len(sliced_ids), "no decision is taken twice"
    assert sliced.runs[X].snapshot() == whole.runs[X].snapshot()


def test_reports_between_slices_are_decided_with_the_next_slice_and_nothing_is_offered_twice() -> None:
    engine = engine_with(4)
    effects = engine.on_command(StartExecution(execution_id=X, plan=make_plan(WIDE)), at(0))
    offered = offers(effects)
    engine.fold_reported(started(X, "t00_s0"))
    engine.fold_reported(result(X, "t00_s0"))
    answered = engine.decide_folded(X, at(1))
    assert ("t00_s0", "COMPLETED") in [(e.event.subtask_id, str(e.event.status)) for e in answered
                                        if isinstance(e, Emit) and e.event.type == "subtask_state"]  # fmt: skip
    assert offers(answered) == ["t04_s0", "t05_s0", "t06_s0", "t07_s0"], "the report's round takes the backlog on"
    offered += offers(answered)
    offered += offers(engine.tick(X, at(2)))  # a full look meanwhile: every open task, none offered again
    offered += offers(engine.go_on(X, at(3)))
    assert sorted(offered) == sorted(f"{t}_s0" for t in WIDE)
    for subtask_id in offered[1:]:
        engine.on_event(started(X, subtask_id), at(4))
        engine.on_event(result(X, subtask_id), at(4))
    assert engine.runs[X].status == ExecutionStatus.COMPLETED
    assert not engine.runs[X].backlog


def test_an_execution_that_ends_drops_its_backlog() -> None:
    engine = engine_with(2)
    engine.on_command(StartExecution(execution_id=X, plan=make_plan(WIDE)), at(0))
    assert engine.runs[X].backlog
    engine.on_command(CancelExecution(execution_id=X, reason="stop"), at(1))
    assert engine.runs[X].status == ExecutionStatus.CANCELLED
    assert engine.go_on(X, at(2)) == []
    assert not engine.runs[X].backlog
