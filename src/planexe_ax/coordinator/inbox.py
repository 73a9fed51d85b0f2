"""A person's answer to an inbox item, turned into decisions. Pure."""

from __future__ import annotations

from planexe_ax.bus.messages import ExecutionStatus, ResolveInbox, TaskStatus
from planexe_ax.coordinator.decide import ACTIONS, Decider, end, fail_attempt
from planexe_ax.coordinator.state import Effect


def resolve(d: Decider, command: ResolveInbox) -> list[Effect]:
    """Close the item as the person said and carry on from there.

    Raises:
        Rejected: an unknown or closed item, or an answer that does not fit the item's kind.
    """
    from planexe_ax.coordinator.core import Rejected

    item = d.run.inbox.get(command.item_id)
    if item is None:
        raise Rejected(f"no open inbox item {command.item_id}")
    if command.action not in ACTIONS[item.kind]:
        raise Rejected(f"cannot {command.action} a {item.kind} item; answer with {' or '.join(ACTIONS[item.kind])}")
    if command.action == "edit" and command.output is None:
        raise Rejected("edit needs the corrected output")
    by, comment, cause = command.issued_by, command.comment, command.command_id
    if item.kind == "approval":
        task = d.run.tasks[item.task_id or ""]
        if command.action == "approve":
            d.close_inbox(item.item_id, "approved", by, comment, causation_id=cause)
            d.set_task(task, TaskStatus.READY, f"approved by {by}")
        else:
            d.close_inbox(item.item_id, "rejected", by, comment, causation_id=cause)
            reason = f"approval of task {task.task_id} rejected by {by}" + (f": {comment}" if comment else "")
            d.set_task(task, TaskStatus.FAILED, reason)
            end(d, ExecutionStatus.FAILED, reason)
        return d.effects
    sub = d.run.subtasks[item.subtask_id or ""]
    if command.action == "reject" and item.kind == "review":
        d.close_inbox(item.item_id, "rejected", by, comment, causation_id=cause)
        fail_attempt(d, sub, f"result rejected by {by}" + (f": {comment}" if comment else ""))
    elif command.action == "reject":
        d.close_inbox(item.item_id, "rejected", by, comment, causation_id=cause)
        d.set_subtask(sub, TaskStatus.FAILED, reason=f"rejected by {by}: {comment or item.reason}")
        end(d, ExecutionStatus.FAILED, f"subtask {sub.subtask_id} rejected by {by}")
    else:
        output = command.output if command.output is not None else (item.output or {})
        resolution = {"accept": "accepted", "edit": "edited", "complete": "completed"}[command.action]
        d.close_inbox(item.item_id, resolution, by, comment, output=output, causation_id=cause)
        agent = sub.agent_id if command.action == "accept" else f"person-{by}"
        d.set_subtask(sub, TaskStatus.COMPLETED, agent_id=agent, output=output, reason=f"{resolution} by {by}")
    return d.effects
