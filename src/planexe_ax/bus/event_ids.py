"""Deterministic ids of everything published: the stream de-duplicates on them, so they never change.

A decision or a report taken again (after a crash, a redelivery, a retried HTTP call) gets the same id
and JetStream stores it once within its duplicate window. Every id is built here and pinned by
``tests/unit/test_event_ids.py``; changing a format would let copies through.
"""

from __future__ import annotations


# -- the coordinator's decisions -----------------------------------------------------------------------
def execution_created(execution_id: str) -> str:
    """``execution_created``: one per execution."""
    return f"{execution_id}:created"


def command_rejected(execution_id: str, command_id: str) -> str:
    """``command_rejected``: one per refused command."""
    return f"{execution_id}:rejected:{command_id}"


def execution_state(execution_id: str, status: str, seen: int) -> str:
    """``execution_state``: the ``seen``-th time the execution entered ``status``."""
    return f"{execution_id}:x:{status}:{seen}"


def task_state(execution_id: str, task_id: str, status: str, seen: int) -> str:
    """``task_state``: the ``seen``-th time the task entered ``status``."""
    return f"{execution_id}:t:{task_id}:{status}:{seen}"


def subtask_state(execution_id: str, subtask_id: str, attempt: int | None, status: str, seen: int) -> str:
    """``subtask_state``: the ``seen``-th time attempt ``attempt`` of the subtask entered ``status``."""
    return f"{execution_id}:s:{subtask_id}:{attempt}:{status}:{seen}"


def task_paused(execution_id: str, command_id: str) -> str:
    """``task_paused`` (pause or resume of one task): one per command."""
    return f"{execution_id}:tp:{command_id}"


def task_reassigned(execution_id: str, command_id: str) -> str:
    """``task_reassigned``: one per command."""
    return f"{execution_id}:tr:{command_id}"


def inbox_item(execution_id: str, entity_id: str, kind: str, opened: int) -> str:
    """The id of an inbox item: the ``opened``-th item of ``kind`` on a task or subtask."""
    return f"{execution_id}-{entity_id}-{kind}-{opened}"


def inbox_opened(item_id: str) -> str:
    """``inbox_opened`` of an item."""
    return f"{item_id}:opened"


def inbox_closed(item_id: str) -> str:
    """``inbox_closed`` of an item."""
    return f"{item_id}:closed"


# -- offers and an agent's reports on them ---------------------------------------------------------------
def offer(execution_id: str, subtask_id: str, attempt: int) -> str:
    """The ``Nats-Msg-Id`` of an offer: one per attempt. Every report on the offer derives from it."""
    return f"{execution_id}:{subtask_id}:{attempt}"


def subtask_started(offer_id: str) -> str:
    """``subtask_started`` of an offer."""
    return f"{offer_id}:started"


def subtask_progress(offer_id: str, n: int) -> str:
    """The ``n``-th ``subtask_progress`` of an offer (n from 1)."""
    return f"{offer_id}:progress:{n}"


def subtask_blocked(offer_id: str, n: int) -> str:
    """The ``n``-th ``subtask_blocked`` of an offer (n from 1)."""
    return f"{offer_id}:blocked:{n}"


def subtask_rejected(offer_id: str) -> str:
    """``subtask_rejected`` of an offer."""
    return f"{offer_id}:rejected"


def subtask_result(offer_id: str) -> str:
    """``subtask_result`` of an offer."""
    return f"{offer_id}:result"


# -- dead letters --------------------------------------------------------------------------------------
def dead_letter(source: str, subject: str, stream_seq: int) -> str:
    """A dead letter of the stored message ``stream_seq``: moved once, however often it is rejected."""
    return f"{source}:{subject}:{stream_seq}"


def unpublished(source: str, msg_id: str) -> str:
    """A dead letter of a message ``source`` built but could not publish (its own id ``msg_id``)."""
    return f"{source}:publish:{msg_id}"
