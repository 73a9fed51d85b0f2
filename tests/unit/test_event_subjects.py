"""An event counts only on its own subject: reports name their agent in the subject, decisions do not."""

from __future__ import annotations

import pytest

from planexe_ax.bus import (
    ExecutionState,
    ExecutionStatus,
    Subjects,
    SubtaskResult,
    decode_event_on,
    event_subject,
)

S = Subjects("ns")


def result(agent_id: str = "agent-a", execution_id: str = "x1") -> SubtaskResult:
    return SubtaskResult(execution_id=execution_id, task_id="t1", subtask_id="s1", agent_id=agent_id, ok=True)


def test_a_report_goes_on_a_subject_with_its_agent_id_and_a_decision_does_not() -> None:
    assert event_subject(S, result()) == "ns.ax.evt.x1.subtask_result.agent-a"
    state = ExecutionState(execution_id="x1", status=ExecutionStatus.RUNNING)
    assert event_subject(S, state) == "ns.ax.evt.x1.execution_state"


def test_an_event_on_its_own_subject_decodes() -> None:
    event = result()
    assert decode_event_on(S, event_subject(S, event), event.model_dump_json().encode()) == event


def test_a_report_before_agent_ids_were_in_subjects_still_decodes() -> None:
    """Only the coordinator may publish on decision subjects, so a report there is a stored one of old."""
    event = result()
    assert decode_event_on(S, S.event("x1", "subtask_result"), event.model_dump_json().encode()) == event


@pytest.mark.parametrize(
    "subject",
    [
        "ns.ax.evt.x1.subtask_result.agent-b",  # the body names another agent than the identity that sent it
        "ns.ax.evt.x2.subtask_result.agent-a",  # another execution
        "ns.ax.evt.x1.subtask_progress.agent-a",  # another kind
    ],
)
def test_a_report_on_a_subject_that_does_not_match_its_body_is_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="cannot be on"):
        decode_event_on(S, subject, result().model_dump_json().encode())


def test_a_decision_on_an_agents_report_subject_is_refused() -> None:
    forged = ExecutionState(execution_id="x1", status=ExecutionStatus.COMPLETED, agent_id="agent-a")
    with pytest.raises(ValueError, match="cannot be on"):
        decode_event_on(S, "ns.ax.evt.x1.execution_state.agent-a", forged.model_dump_json().encode())


def test_a_forged_subject_is_refused_after_the_event_decoded_on_its_own() -> None:
    """The subjects an event may come on are kept between calls: the refusals must not change for it."""
    event = result()
    data = event.model_dump_json().encode()
    assert decode_event_on(S, event_subject(S, event), data) == event
    with pytest.raises(ValueError, match="cannot be on"):
        decode_event_on(S, "ns.ax.evt.x1.subtask_result.agent-b", data)
    with pytest.raises(ValueError, match="cannot be on"):
        decode_event_on(Subjects("other"), event_subject(S, event), data)
    assert decode_event_on(Subjects("other"), event_subject(Subjects("other"), event), data) == event
