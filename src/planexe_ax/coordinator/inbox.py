"""A person's answer to an inbox item, turned into decisions. Pure."""

from __future__ import annotations

import re

from planexe_ax.bus import event_ids
from planexe_ax.bus.messages import ExecutionStatus, InboxOpened, ResolveInbox, TaskStatus, WebhookDisabled
from planexe_ax.coordinator.decider import ACTIONS, Decider, end, fail_attempt
from planexe_ax.coordinator.state import Effect, SubtaskRun

_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


def person_id(by: str) -> str:
    """The agent id that stands for the person ``by`` (an email or a token name): ``person-`` and a safe token."""
    return "person-" + (_NOT_IN_ID.sub("_", by)[:120] or "unknown")


def resolve(d: Decider, command: ResolveInbox) -> list[Effect]:
    """Close the item as the person said and carry on from there.

    Raises:
        Rejected: an unknown or closed item, or an answer that does not fit the item's kind.
    """
    from planexe_ax.coordinator.core import Rejected

    item = d.run.inbox.get(command.item_id)
    if item is None:
        raise Rejected(f"no open inbox item {command.item_id}")
    action = "fail" if item.kind == "escalation" and command.action == "reject" else command.action
    if action not in ACTIONS[item.kind]:
        raise Rejected(f"cannot {command.action} a {item.kind} item; answer with {' or '.join(ACTIONS[item.kind])}")
    if action == "edit" and command.output is None:
        raise Rejected("edit needs the corrected output")
    if command.params is not None and action != "retry":
        raise Rejected(f"params go with retry only, not with {command.action}")
    if item.kind == "acknowledge":  # a notice: seen, and nothing else changes
        d.close_inbox(item.item_id, "acknowledged", command.issued_by, command.comment, causation_id=command.command_id)
    elif item.kind == "approval":
        _approval(d, item, command)
    elif item.kind == "escalation":
        _escalation(d, item, command, d.run.subtasks[item.subtask_id or ""])
    else:
        _work(d, item, command, d.run.subtasks[item.subtask_id or ""])
    return d.effects


def webhook_disabled(d: Decider, command: WebhookDisabled) -> list[Effect]:
    """Tell a person that a webhook was disabled: an ``acknowledge`` item on the execution, ended or not.

    The item's id comes from the command's, so the same command delivered again opens nothing (its
    ``inbox_opened`` was applied already, whether the item is still open or was acknowledged).
    """
    item_id = event_ids.acknowledge_item(d.run.execution_id, command.command_id)
    opened_id = event_ids.inbox_opened(item_id)
    if opened_id in d.run.applied:
        return d.effects
    details = {"webhook_id": command.webhook_id, "url": command.url, "event_id": command.event_id}
    d.emit(InboxOpened(event_id=opened_id, item_id=item_id, execution_id=d.run.execution_id, ts=d.now,
                       kind="acknowledge", title=f"Webhook {command.url} disabled", reason=command.reason,
                       params=details, actions=ACTIONS["acknowledge"], causation_id=command.command_id))  # fmt: skip
    return d.effects


def _approval(d: Decider, item: InboxOpened, command: ResolveInbox) -> None:
    by, comment, cause = command.issued_by, command.comment, command.command_id
    task = d.run.tasks[item.task_id or ""]
    if command.action == "approve":
        d.close_inbox(item.item_id, "approved", by, comment, causation_id=cause)
        d.set_task(task, TaskStatus.READY, f"approved by {by}")
        return
    d.close_inbox(item.item_id, "rejected", by, comment, causation_id=cause)
    reason = f"approval of task {task.task_id} rejected by {by}" + (f": {comment}" if comment else "")
    d.set_task(task, TaskStatus.FAILED, reason)
    end(d, ExecutionStatus.FAILED, reason)


def _escalation(d: Decider, item: InboxOpened, command: ResolveInbox, sub: SubtaskRun) -> None:
    """Retry (a fresh round of attempts, with new params if given), complete by hand, skip, or fail."""
    by, comment, cause = command.issued_by, command.comment, command.command_id
    note = f": {comment}" if comment else ""
    if command.action == "retry":
        d.close_inbox(item.item_id, "retried", by, comment, params=command.params, causation_id=cause)
        edited = " with new params" if command.params is not None else ""
        d.set_subtask(sub, TaskStatus.PENDING, reason=f"retry{edited} asked by {by}{note}")
    elif command.action == "skip":
        d.close_inbox(item.item_id, "skipped", by, comment, causation_id=cause)
        d.set_subtask(sub, TaskStatus.SKIPPED, reason=f"skipped by {by}{note} ({item.reason})")
    elif command.action == "complete":
        output = command.output if command.output is not None else {}
        d.close_inbox(item.item_id, "completed", by, comment, output=output, causation_id=cause)
        d.set_subtask(sub, TaskStatus.COMPLETED, agent_id=person_id(by), output=output, reason=f"completed by {by}")
    else:
        d.close_inbox(item.item_id, "failed", by, comment, causation_id=cause)
        d.set_subtask(sub, TaskStatus.FAILED, reason=f"failed by {by}{note} ({item.reason})")
        end(d, ExecutionStatus.FAILED, f"subtask {sub.subtask_id} failed by {by}{note} ({item.reason})")


def _work(d: Decider, item: InboxOpened, command: ResolveInbox, sub: SubtaskRun) -> None:
    """A human task done by a person, or a reviewed result accepted, edited or rejected (a new attempt)."""
    by, comment, cause = command.issued_by, command.comment, command.command_id
    if command.action == "reject" and item.kind == "review":
        d.close_inbox(item.item_id, "rejected", by, comment, causation_id=cause)
        fail_attempt(d, sub, f"result rejected by {by}" + (f": {comment}" if comment else ""))
        return
    if command.action == "reject":
        d.close_inbox(item.item_id, "rejected", by, comment, causation_id=cause)
        d.set_subtask(sub, TaskStatus.FAILED, reason=f"rejected by {by}: {comment or item.reason}")
        end(d, ExecutionStatus.FAILED, f"subtask {sub.subtask_id} rejected by {by}")
        return
    output = command.output if command.output is not None else (item.output or {})
    resolution = {"accept": "accepted", "edit": "edited", "complete": "completed"}[command.action]
    d.close_inbox(item.item_id, resolution, by, comment, output=output, causation_id=cause)
    agent = sub.agent_id if command.action == "accept" else person_id(by)
    d.set_subtask(sub, TaskStatus.COMPLETED, agent_id=agent, output=output, reason=f"{resolution} by {by}")
