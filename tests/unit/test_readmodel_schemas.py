"""The read model's answers: their fields follow the tables, and times are ISO 8601 UTC text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from planexe_ax.readmodel.models import InboxItem
from planexe_ax.readmodel.schemas import InboxEntry, PlanTaskEntry, ReportTask


def test_an_inbox_entry_has_every_column_of_inbox_items() -> None:
    assert list(InboxEntry.model_fields) == [column.key for column in InboxItem.__table__.columns]


def test_times_are_utc_text_ending_in_z_in_python_and_json() -> None:
    paris = timezone(timedelta(hours=1))
    task = ReportTask(
        task_id="t1",
        title="T",
        status="COMPLETED",
        started_at=datetime(2025, 3, 1, 10, 0, 0, 5, tzinfo=paris),
        finished_at=None,
        attempts=1,
        subtasks=[],
    )
    assert task.model_dump()["started_at"] == "2025-03-01T09:00:00.000005Z"
    assert '"started_at":"2025-03-01T09:00:00.000005Z"' in task.model_dump_json()
    assert task.model_dump()["finished_at"] is None
    assert ReportTask.model_validate(task.model_dump()).started_at == datetime(2025, 3, 1, 9, 0, 0, 5, tzinfo=UTC)


def test_a_plan_task_entry_keeps_every_field_of_the_document() -> None:
    entry = PlanTaskEntry.model_validate(
        {"phase_id": "p1", "phase_name": "P", "task_id": "t1", "title": "T", "subtasks": [{"subtask_id": "s1"}]}
    )
    assert entry.model_dump() == {
        "phase_id": "p1",
        "phase_name": "P",
        "task_id": "t1",
        "title": "T",
        "subtasks": [{"subtask_id": "s1"}],
    }
