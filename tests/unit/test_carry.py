"""A task's move goes out inside the subtask decision it was decided with (coordinator/carry.py)."""

from planexe_ax.bus import ExecutionStatus, StartExecution, SubtaskState, TaskState, TaskStatus, facts
from planexe_ax.coordinator.carry import carry_task_moves
from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, Offer, WakeAt
from tests.helpers.factories import at, make_plan, result

X = "x1"


def engine() -> CoordinatorCore:
    return CoordinatorCore(CoreConfig(lag_scale_s=0))


def emits(effects: list[Effect]) -> list[Emit]:
    return [e for e in effects if isinstance(e, Emit)]


def stood_for(effects: list[Effect]) -> list[str]:
    """The event ids the published decisions stand for, each carried move right after the decision it rides in."""
    return [fact.event_id for e in emits(effects) for fact in facts(e.event)]


def task_move(task_id: str, status: TaskStatus, t: float = 0) -> Emit:
    return Emit(TaskState(execution_id=X, ts=at(t), task_id=task_id, status=status))


def subtask_move(task_id: str, status: TaskStatus, t: float = 0) -> Emit:
    return Emit(SubtaskState(execution_id=X, ts=at(t), task_id=task_id, subtask_id=f"{task_id}_s0", status=status))


def test_a_wide_start_sends_each_task_start_inside_its_subtasks_dispatch_after_its_offer() -> None:
    core = engine()
    effects = core.on_command(StartExecution(execution_id=X, plan=make_plan({"a": 1, "b": 1, "c": 1})), at(0))
    carried = carry_task_moves(effects, {})

    decisions = [e.event for e in emits(carried)]
    assert [e.type for e in decisions].count("task_state") == 0
    dispatched = [e for e in decisions if isinstance(e, SubtaskState)]
    assert [(e.subtask_id, e.task_state and (e.task_state.task_id, e.task_state.status)) for e in dispatched] == [
        ("a_s0", ("a", TaskStatus.RUNNING)),
        ("b_s0", ("b", TaskStatus.RUNNING)),
        ("c_s0", ("c", TaskStatus.RUNNING)),
    ]
    assert len(emits(carried)) == len(emits(effects)) - 3
    assert sorted(stood_for(carried)) == sorted(e.event.event_id for e in emits(effects)), "each decision once"
    for i, effect in enumerate(carried):  # an offer still goes right before its DISPATCHED
        if isinstance(effect, Emit) and isinstance(effect.event, SubtaskState):
            offer = carried[i - 1]
            assert isinstance(offer, Offer)
            assert offer.offer.subtask_id == effect.event.subtask_id


def test_tasks_completed_in_one_round_ride_in_their_subtasks_and_a_replay_gives_the_same_state() -> None:
    plan = make_plan({"a": 1, "b": 1, "c": 1}, [("a", "c", "finish_to_start", 0), ("b", "c", "finish_to_start", 0)])
    live, stream = engine(), []
    start = live.on_command(StartExecution(execution_id=X, plan=plan), at(0))
    stream += [e.event for e in emits(carry_task_moves(start, {}))]
    for report in (result(X, "a_s0"), result(X, "b_s0")):  # one batch: both results, then one decision round
        live.fold_reported(report)
        stream.append(report)
    round_ = live.decide_folded(X, at(1))
    core_order = [(e.event.type, e.event.subtask_id or e.event.task_id) for e in emits(round_)]
    assert core_order[:4] == [("subtask_state", "a_s0"), ("subtask_state", "b_s0"), ("task_state", "a"),
                              ("task_state", "b")]  # fmt: skip
    carried = carry_task_moves(round_, {})
    sent = [e.event for e in emits(carried)]
    stream += sent
    assert [
        (e.subtask_id, e.task_state.task_id if isinstance(e, SubtaskState) and e.task_state else None) for e in sent
    ] == [
        ("a_s0", "a"),  # a's completion moved up to its subtask's
        ("b_s0", "b"),
        ("c_s0", "c"),  # c starts as its subtask is dispatched
    ]
    stream.append(result(X, "c_s0"))
    stream += [e.event for e in emits(carry_task_moves(live.on_event(stream[-1], at(2)), {}))]
    assert live.runs[X].status == ExecutionStatus.COMPLETED

    rebuilt = engine()
    for event in stream:
        rebuilt.fold(event)
    assert rebuilt.runs[X].snapshot() == live.runs[X].snapshot()
    assert rebuilt.runs[X].task_counts == live.runs[X].task_counts


def test_a_move_with_no_subtask_decision_beside_it_stays_a_message_of_its_own() -> None:
    alone = [task_move("a", TaskStatus.READY)]
    assert carry_task_moves(alone, {}) == alone  # type: ignore[arg-type]
    other_task = [subtask_move("b", TaskStatus.DISPATCHED), task_move("a", TaskStatus.RUNNING)]
    assert carry_task_moves(other_task, {}) == other_task  # type: ignore[arg-type]


def test_two_moves_of_one_task_keep_their_order() -> None:
    sub, first, second = (
        subtask_move("a", TaskStatus.CANCELLED),
        task_move("a", TaskStatus.COMPLETED),
        task_move("a", TaskStatus.CANCELLED),
    )
    carried = carry_task_moves([sub, first, second], {})
    assert len(carried) == 2
    assert isinstance(carried[0], Emit)
    assert isinstance(carried[0].event, SubtaskState)
    assert carried[0].event.task_state == first.event, "the first move rides in the subtask's decision"
    assert carried[1] is second, "the second may not move before the first: it stays where it was"


def test_a_move_rides_ahead_only_past_offers_and_timers_and_takes_its_trace_context() -> None:
    task = task_move("a", TaskStatus.RUNNING)
    timer = WakeAt(X, at(9))
    sub = subtask_move("a", TaskStatus.DISPATCHED)
    context = {id(task): "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    carried = carry_task_moves([task, timer, sub], context)
    assert carried[0] is timer
    assert isinstance(carried[1], Emit)
    assert isinstance(carried[1].event, SubtaskState)
    assert carried[1].event.task_state == task.event
    assert context == {id(carried[1]): "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, "the context moved with it"
    blocked = [task, subtask_move("b", TaskStatus.DISPATCHED), sub]
    assert carry_task_moves(blocked, {}) == blocked, "another decision between: not moved past it"  # type: ignore[arg-type]
