"""Deterministic ids of everything published: the stream de-duplicates on them, so they never change.

A decision or a report taken again (after a crash, a redelivery, a retried HTTP call) gets the same id
and JetStream stores it once within its duplicate window. Every id is built here and pinned by
``tests/unit/test_event_ids.py``; changing a format would let copies through.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


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


def acknowledge_item(execution_id: str, command_id: str) -> str:
    """The id of the ``acknowledge`` inbox item a command (``webhook_disabled``) opens: one per command."""
    return f"{execution_id}-ack-{command_id}"


def audit_checkpoint(execution_id: str, up_to_seq: int) -> str:
    """``audit_checkpoint``: one per execution and stream sequence it signs up to."""
    return f"{execution_id}:audit:{up_to_seq}"


# -- offers and an agent's reports on them ---------------------------------------------------------------
def offer(execution_id: str, subtask_id: str, attempt: int) -> str:
    """The ``Nats-Msg-Id`` of an offer: one per attempt. Every report on the offer starts with it."""
    return f"{execution_id}:{subtask_id}:{attempt}"


def report_key() -> bytes:
    """A fresh secret for :func:`report`; one per process that publishes reports (see ``Bus.report_key``)."""
    return secrets.token_bytes(16)


def report(key: bytes, offer_id: str, agent_id: str, kind: str) -> str:
    """An agent's report on an offer: ``<offer_id>:<kind>:<tag>``.

    ``kind`` is ``started``, ``progress:<n>``, ``blocked:<n>`` (n from 1), ``rejected`` or ``result``. The
    tag is an HMAC of the offer, the agent's id and the kind under the publishing process's secret ``key``:
    the same report published again by that process keeps its id (and is stored once), while nobody else
    can compute the id of a report the agent has not sent yet, so no one can claim it first and have the
    real report dropped as a duplicate. Seeing earlier reports reveals nothing about later tags. The id is
    no longer than a decision's on the same subtask (the read model keeps ids of up to 128 characters).
    """
    tag = hmac.new(key, f"{offer_id}:{agent_id}:{kind}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{offer_id}:{kind}:{tag}"


# -- commands sent by services -------------------------------------------------------------------------
def webhook_disabled(webhook_id: str, event_id: str, attempt: int) -> str:
    """The ``command_id`` of a ``webhook_disabled``: one per webhook, disabling event and attempt.

    Sent again after a restart (the attempt was not recorded, so its number is the same), it is the same
    command; a webhook enabled again that gives up on the same event later gives up on a later attempt.
    """
    digest = hashlib.sha256(f"{webhook_id}\n{event_id}\n{attempt}".encode()).hexdigest()[:32]
    return f"webhook-disabled-{digest}"


# -- dead letters --------------------------------------------------------------------------------------
def dead_letter(source: str, subject: str, stream_seq: int) -> str:
    """A dead letter of the stored message ``stream_seq``: moved once, however often it is rejected."""
    return f"{source}:{subject}:{stream_seq}"


def unpublished(source: str, msg_id: str) -> str:
    """A dead letter of a message ``source`` built but could not publish (its own id ``msg_id``)."""
    return f"{source}:publish:{msg_id}"
