"""The audit chain: the coordinator's heads, prev_hash and signed checkpoints, and the check that reads them back."""

from __future__ import annotations

import json
from pathlib import Path

import nkeys
import pytest

from planexe_ax.bus import event_ids
from planexe_ax.bus.audit_chain import canonical, signing_key
from planexe_ax.bus.codec import decode_event
from planexe_ax.bus.jwt import Key
from planexe_ax.bus.messages import (
    AuditCheckpoint,
    EventBase,
    ExecutionCreated,
    ExecutionState,
    ExecutionStatus,
    SubtaskProgress,
    TaskState,
    TaskStatus,
)
from planexe_ax.coordinator.audit import ChainKeeper
from planexe_ax.coordinator.state import Emit
from planexe_ax.errors import ConfigError
from planexe_ax.readmodel.audit_chain import check_chain
from tests.helpers.factories import make_plan

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
EXECUTION = "e1"
KEY = Key(nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_SERVER))
TRUSTED = frozenset({KEY.public})

History = list[tuple[int, EventBase | None]]


def progress(n: int) -> SubtaskProgress:
    return SubtaskProgress(execution_id=EXECUTION, task_id="t1", subtask_id="s1", agent_id="a1", percent=n)


def state(status: ExecutionStatus, n: int) -> ExecutionState:
    return ExecutionState(execution_id=EXECUTION, status=status, event_id=f"{EXECUTION}:x:{status}:{n}")


def decision(n: int) -> TaskState:
    return TaskState(execution_id=EXECUTION, task_id="t1", status=TaskStatus.RUNNING, reason=f"round {n}")


def run(keeper: ChainKeeper, reports: int = 6) -> History:
    """A run as the coordinator sees it: its decisions stamped and stored, agents' reports read in between."""
    stream: History = []

    def publish(*events: EventBase) -> None:
        for effect in keeper.stamp([Emit(e) for e in events], {}):  # type: ignore[arg-type]  # Emit wants an Event
            assert isinstance(effect, Emit)
            stream.append((len(stream) + 1, effect.event))
            keeper.stored(len(stream), effect.event)  # the stream's ack
        for execution_id, _ in keeper.unsettled():  # as the service does: no report was stored after them
            keeper.settle(execution_id, None)

    publish(ExecutionCreated(execution_id=EXECUTION, plan=make_plan(["t1"]), event_id="e1:created"))
    publish(state(ExecutionStatus.RUNNING, 1))
    for n in range(reports):
        report = progress(n)
        stream.append((len(stream) + 1, report))
        keeper.read(len(stream), report)
        publish(decision(n))  # a decision round (and checkpoints when due)
    publish(state(ExecutionStatus.COMPLETED, 1))
    publish()  # the end read back: its checkpoint
    return stream


def test_a_run_holds_to_its_chain_with_prev_hash_and_signed_checkpoints() -> None:
    keeper = ChainKeeper(KEY, every=4)
    stream = run(keeper)
    checkpoints = [e for _, e in stream if isinstance(e, AuditCheckpoint)]
    assert len(checkpoints) == 4, "after every 4 events, and at the end"
    assert checkpoints[-1].up_to_seq == stream[-2][0], "the last one covers the end"
    assert [c.prev_checkpoint for c in checkpoints] == ["", *(c.event_id for c in checkpoints[:-1])]
    assert checkpoints[0].event_id == event_ids.audit_checkpoint(EXECUTION, checkpoints[0].up_to_seq)
    # decided before any report was read, the start's decisions precede anything linked: no anchor
    assert [getattr(e, "prev_hash", "") for _, e in stream[:2]] == [None, None]
    assert all(e.prev_hash for _, e in stream[2:] if isinstance(e, ExecutionState | TaskState))
    verdict = check_chain("stream", stream, TRUSTED)
    assert verdict.problems == []
    assert (verdict.checkpoints, verdict.signed_up_to) == (4, checkpoints[-1].up_to_seq)


def test_a_rebuild_reaches_the_heads_the_live_coordinator_had() -> None:
    live = ChainKeeper(KEY, every=4)
    stream = run(live)
    again = ChainKeeper(KEY, every=4)
    for seq, event in stream:
        assert event is not None
        again.rebuild(seq, event)  # type: ignore[arg-type]  # every event here is an Event
    again.rebuilt()
    live.settle(EXECUTION, None)  # the last checkpoint, linked once a later report (or the stream) shows it is last
    (chain,) = again.chains.values()
    (before,) = live.chains.values()
    assert (chain.seq, chain.head, chain.count) == (before.seq, before.head, before.count)
    assert again.stamp([], {}) == [], "nothing is owed a checkpoint"


@pytest.mark.parametrize("how", ["changed", "removed", "inserted"])
def test_an_altered_event_is_found_in_the_window_the_anchors_leave(how: str) -> None:
    stream = run(ChainKeeper(KEY, every=100), reports=8)
    target = 5
    assert isinstance(stream[target - 1][1], SubtaskProgress)
    if how == "changed":
        stream[target - 1] = (target, progress(99))
    elif how == "removed":
        del stream[target - 1]
    else:
        stream.insert(target - 1, (target, progress(42)))
    verdict = check_chain("stream", stream, TRUSTED)
    breaks = [p for p in verdict.problems if p.kind == "chain"]
    assert len(breaks) == 1, verdict.problems
    assert not verdict.holds_at(target)
    assert verdict.holds_at(2), "events before the last good anchor are proven"
    assert "changed, removed or inserted in the stream" in breaks[0].problem


def test_a_forged_or_untrusted_checkpoint_is_reported_and_not_believed() -> None:
    stream = run(ChainKeeper(KEY, every=100))
    seq, last = stream[-1]
    assert isinstance(last, AuditCheckpoint)
    stream[-1] = (seq, last.model_copy(update={"count": last.count + 1}))
    problems = check_chain("stream", stream, TRUSTED).problems
    assert [p.kind for p in problems] == ["checkpoint", "unsigned_end"]
    assert "does not verify" in problems[0].problem
    stream[-1] = (seq, last)
    problems = check_chain("stream", stream, frozenset({"Nsomebody-else"})).problems
    assert "not a trusted audit key" in problems[0].problem


@pytest.mark.parametrize("kind", ["execution_created", "subtask_result", "inbox_opened", "audit_checkpoint"])
def test_an_event_hashes_alike_in_memory_and_after_a_round_trip(kind: str) -> None:
    event = decode_event((CONTRACTS / kind / "v1.json").read_bytes())
    assert canonical(event) == canonical(decode_event(event.model_dump_json().encode()))
    dumped = json.loads(json.dumps(event.model_dump(mode="json")))
    assert canonical(decode_event(json.dumps(dumped).encode())) == canonical(event)


def test_the_signing_key_is_made_once_with_its_public_key_beside_it(tmp_path: Path) -> None:
    key = signing_key(tmp_path / "auth" / "audit.nk")
    assert (tmp_path / "auth" / "audit.pub").read_text().strip() == key.public
    assert (tmp_path / "auth" / "audit.nk").stat().st_mode & 0o777 == 0o600
    assert signing_key(tmp_path / "auth" / "audit.nk") == key
    (tmp_path / "bad.nk").write_text("not a seed")
    with pytest.raises(ConfigError, match="PLANEXE_AUDIT_KEY_FILE"):
        signing_key(tmp_path / "bad.nk")


def test_decisions_are_linked_in_stream_order_with_reports_read_after_them() -> None:
    """The coordinator learns where its decisions went from acks and reads reports later: a report stored between
    two decisions is linked between them, and a decision waits while a report before it is still on its way."""
    keeper = ChainKeeper(KEY, every=100)
    created = ExecutionCreated(execution_id=EXECUTION, plan=make_plan(["t1"]), event_id="e1:created")
    d1, d2, d3, r1, r2 = decision(1), decision(2), decision(3), progress(1), progress(2)
    stream: History = [(1, created), (2, d1), (3, r1), (4, d2), (5, r2), (6, d3)]
    keeper.stored(1, created)
    keeper.stored(2, d1)
    keeper.stored(4, d2)  # acked before report 3 is read
    keeper.read(3, r1)
    (chain,) = keeper.chains.values()
    assert chain.seq == 3, "decision 2 waits: a report may still come before it"
    keeper.stored(6, d3)
    keeper.settle(EXECUTION, 5)  # the stream holds report 5, not read yet
    assert chain.seq == 4
    keeper.read(5, r2)
    keeper.settle(EXECUTION, None)
    verdict = check_chain("stream", stream, TRUSTED)
    assert verdict.problems == []
    again = ChainKeeper(KEY, every=100)
    for seq, event in stream:
        again.read(seq, event)  # type: ignore[arg-type]  # every event here is an Event
    assert (chain.seq, chain.head, chain.count) == (6, again.chains[EXECUTION].head, 6)


def test_a_decision_stored_before_the_linked_part_is_not_linked_twice() -> None:
    keeper = ChainKeeper(KEY, every=100)
    keeper.read(1, ExecutionCreated(execution_id=EXECUTION, plan=make_plan(["t1"]), event_id="e1:created"))
    keeper.read(2, progress(1))
    head = keeper.chains[EXECUTION].head
    keeper.stored(1, decision(1))  # a duplicate whose copy the rebuild read
    keeper.settle(EXECUTION, None)
    assert (keeper.chains[EXECUTION].head, keeper.chains[EXECUTION].count) == (head, 2)


def test_the_stream_is_asked_once_while_the_report_it_named_is_on_its_way() -> None:
    """A checkpoint is owed (``every`` events) but a report comes before the decisions: they wait for its read, and
    once the checkpoint is made nothing is owed until ``every`` more events."""
    keeper = ChainKeeper(KEY, every=3)
    keeper.stored(1, ExecutionCreated(execution_id=EXECUTION, plan=make_plan(["t1"]), event_id="e1:created"))
    keeper.stored(2, decision(1))
    assert keeper.unsettled() == []
    keeper.stored(4, decision(2))  # three not linked: a checkpoint is owed once they are
    assert keeper.unsettled() == [(EXECUTION, 0)]
    keeper.settle(EXECUTION, 3)  # report 3 is stored and not read yet
    assert keeper.unsettled() == [], "asking again would find the same report"
    keeper.read(3, progress(1))  # links 1, 2 and the report: four events, a checkpoint is due
    assert keeper.unsettled() == [(EXECUTION, 3)], "decision 4 still owes its place"
    keeper.settle(EXECUTION, None)
    (checkpoint,) = keeper.stamp([], {})
    assert isinstance(checkpoint, Emit)
    assert isinstance(checkpoint.event, AuditCheckpoint)
    assert checkpoint.event.count == 4
    keeper.stored(6, checkpoint.event)
    keeper.stored(7, decision(3))
    assert keeper.unsettled() == [], "two since the checkpoint: nothing owed"


def test_a_long_backlog_is_linked_in_slices_to_the_same_head() -> None:
    """A large plan's decisions stored ahead of its reports are linked a slice at a time, to the same chain."""
    whole, sliced = ChainKeeper(KEY, every=1000), ChainKeeper(KEY, every=1000)
    created = ExecutionCreated(execution_id=EXECUTION, plan=make_plan(["t1"]), event_id="e1:created")
    stored = [(1, created), *((n + 2, decision(n)) for n in range(25))]
    for keeper in (whole, sliced):
        keeper.read(*stored[0])
        for seq, event in reversed(stored[1:]) if keeper is sliced else stored[1:]:  # acks out of order too
            keeper.stored(seq, event)
    assert whole.settle(EXECUTION, None)
    steps = 1
    while not sliced.settle(EXECUTION, None, most=10):
        steps += 1
    assert steps == 3, "25 decisions, 10 at a time"
    (a,), (b,) = whole.chains.values(), sliced.chains.values()
    assert (b.seq, b.count, b.head) == (a.seq, a.count, a.head) == (26, 26, a.head)
    assert not b.pending
