"""One message instead of two: a task's move rides in the ``subtask_state`` of its task decided in the same round. Pure.

A task starts as its first subtask is dispatched and ends with its last one: of a one-subtask task, every move
comes with one of its subtask's. Each stored message costs every service on its path (the coordinator's publish
and ack, the server, the projector, each dashboard), so the round's ``task_state`` goes out inside that
``subtask_state`` (its ``task_state`` field), with its own event id, and every reader applies it with the message
(:func:`planexe_ax.bus.messages.facts`). The core decides, and applies, the two events as before.
"""

from __future__ import annotations

from planexe_ax.bus.messages import SubtaskState, TaskState
from planexe_ax.coordinator.state import Effect, Emit

Key = tuple[str, str]
"""(execution, task)."""


def carry_task_moves(effects: list[Effect], carried: dict[int, str]) -> list[Effect]:
    """``effects`` with each ``task_state`` put into a ``subtask_state`` of its task, where one takes it.

    A task's move goes into the next decision when that is one of its subtask's, with only offers (and timers)
    between: a task that starts, then its first subtask's offer and DISPATCHED. Else into the latest of its
    subtask's decisions before it in the round, when no move of the task came between them: a subtask that
    completed, other decisions of the round, then its task's completion (moved up to its subtask's, which it
    follows from; nothing between depends on it). Else it stays where it is, a message of its own.

    Args:
        effects: One round's effects, in the order they are carried out.
        carried: Trace context by effect ``id``: a merged decision takes its subtask's (or else its task's).
    """
    out: list[Effect] = []
    hosts: dict[Key, int] = {}
    """Of each task, the place in ``out`` of its latest subtask decision that may still take its move."""
    merged: dict[int, Emit] = {}
    """Subtask decisions ahead that took the move before them, by their place in ``effects``."""
    for i, effect in enumerate(effects):
        effect = merged.pop(i, effect)
        if not isinstance(effect, Emit):
            out.append(effect)
            continue
        event = effect.event
        if isinstance(event, TaskState) and event.task_id is not None:
            key = (event.execution_id, event.task_id)
            host = hosts.pop(key, None)
            ahead = _next_decision(effects, i, key)
            if ahead is not None:
                merged[ahead] = _carrying(effects[ahead], effect, carried)
            elif host is not None:
                out[host] = _carrying(out[host], effect, carried)
            else:
                out.append(effect)
            continue
        if isinstance(event, SubtaskState) and event.task_id is not None:
            key = (event.execution_id, event.task_id)
            if event.task_state is None:
                hosts[key] = len(out)
            else:
                hosts.pop(key, None)
        out.append(effect)
    return out


def _next_decision(effects: list[Effect], i: int, key: Key) -> int | None:
    """The place of the next decision after ``i`` when it is a subtask decision of task ``key`` free to take a move."""
    for j in range(i + 1, len(effects)):
        effect = effects[j]
        if not isinstance(effect, Emit):
            continue  # an offer (published before its DISPATCHED), a timer
        event = effect.event
        free = isinstance(event, SubtaskState) and event.task_state is None
        return j if free and (event.execution_id, event.task_id) == key else None
    return None


def _carrying(host: Effect, task: Emit, carried: dict[int, str]) -> Emit:
    """``host`` (a subtask decision) carrying ``task``'s event; the trace context moves with them."""
    assert isinstance(host, Emit)
    assert isinstance(host.event, SubtaskState)
    merged = Emit(host.event.model_copy(update={"task_state": task.event}))
    context = carried.pop(id(host), None) or carried.get(id(task))
    carried.pop(id(task), None)
    if context is not None:
        carried[id(merged)] = context
    return merged


__all__ = ["carry_task_moves"]
