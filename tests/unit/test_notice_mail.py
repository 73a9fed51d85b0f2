"""A notice (an `acknowledge` item: a webhook disabled) is mailed as any inbox item, though it has no task."""

from planexe_ax.bus import InboxOpened
from planexe_ax.notifier.mail import answer_link, message, recipients


def test_a_notice_without_a_task_is_mailed_with_its_reason_and_its_one_answer() -> None:
    notice = InboxOpened(execution_id="x1", item_id="x1-ack-webhook-disabled-1", kind="acknowledge",
                         title="Webhook https://hooks.example.com/… disabled", reason="gave up on event e1",
                         actions=["acknowledge"])  # fmt: skip
    assert recipients({"*": ["ops@example.org"], "approval": ["boss@example.org"]}, None, "acknowledge") == [
        "ops@example.org"
    ]
    link = answer_link("http://dashboard.example:8000", notice.item_id, "pxl_t")
    mail = message(notice, "ops@example.org", "planexe-ax@localhost", link, "Prospecting")
    assert mail["Subject"] == "[Prospecting] acknowledge: Webhook https://hooks.example.com/… disabled"
    body = mail.get_content()
    assert "Task:   -" in body
    assert "Reason: gave up on event e1" in body
    assert "Answers: acknowledge" in body
    assert link in body
