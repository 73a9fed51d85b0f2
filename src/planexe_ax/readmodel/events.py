"""An execution's events as the API and the WebSocket show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select

from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import ExecutionEvent
from planexe_ax.readmodel.paging import BadCursor, decode_cursor, encode_cursor, split_page
from planexe_ax.readmodel.schemas import EventItem, EventPage

INDEXED = ("event_id", "type", "task_id", "subtask_id", "agent_id", "attempt", "ts")


def event_item(seq: int, event: dict[str, Any]) -> EventItem:
    """One event (its JSON) at stream sequence ``seq``: the indexed fields and the whole event."""
    return EventItem.model_validate({"seq": seq, **{name: event.get(name) for name in INDEXED}, "data": event})


async def events_page(
    sessions: Sessions,
    execution_id: str,
    *,
    type_: str | None,
    task_id: str | None,
    agent_id: str | None,
    limit: int,
    cursor: str | None,
) -> EventPage:
    """An execution's events, newest first, keyset-paginated by stream sequence.

    A page holds up to ``limit`` stored events; a ``task_state`` that rides in a ``subtask_state`` is listed on its
    own as well, just before it, at the same sequence (:func:`stored_items`), and ``type``, ``task_id`` and
    ``agent_id`` select among them both.

    Raises:
        BadCursor: when ``cursor`` is not one a page handed out.
    """
    query = select(ExecutionEvent).where(ExecutionEvent.execution_id == execution_id)
    if type_ == "task_state":  # a task's move may ride in its subtask's decision
        carries = ExecutionEvent.data["task_state"]["status"].as_string().is_not(None)
        query = query.where(or_(ExecutionEvent.type == type_, and_(ExecutionEvent.type == "subtask_state", carries)))
    elif type_:
        query = query.where(ExecutionEvent.type == type_)
    if task_id:
        query = query.where(ExecutionEvent.task_id == task_id)
    if agent_id:
        query = query.where(ExecutionEvent.agent_id == agent_id)
    before, taken = _position(cursor) if cursor else (None, None)
    if before is not None:  # past the stored event the last page ended with, or within it
        query = query.where(
            ExecutionEvent.stream_seq < before if taken is None else ExecutionEvent.stream_seq <= before
        )
    query = query.order_by(ExecutionEvent.stream_seq.desc()).limit(limit + 1)
    async with sessions() as session:
        rows = list(await session.scalars(query))
    wanted = {"type": type_, "task_id": task_id, "agent_id": agent_id}
    found: list[tuple[int, int, int, EventItem]] = []
    """(sequence, place among the items of its stored event (newest first), how many it has, item)."""
    for row in rows:  # each row gives at least one item: a page of ``limit`` needs at most ``limit + 1`` rows
        items = stored_items(row.stream_seq, row.data)[::-1]
        for place, item in enumerate(items):
            if row.stream_seq == before and taken is not None and place < taken:
                continue  # handed out on the page before
            if all(value is None or getattr(item, name) == value for name, value in wanted.items()):
                found.append((row.stream_seq, place, len(items), item))
    page, more = split_page(found, limit)
    next_cursor = None
    if more and page:
        seq, place, count, _ = page[-1]
        next_cursor = encode_cursor(seq) if place + 1 == count else encode_cursor(seq, place + 1)
    return EventPage(items=[item for *_, item in page], next_cursor=next_cursor)


def _position(cursor: str) -> tuple[int, int | None]:
    """(sequence, items of it handed out already) a cursor names; None for all of them.

    Raises:
        BadCursor: when ``cursor`` is not one a page handed out.
    """
    before, *rest = decode_cursor(cursor, 1, 2)
    taken = rest[0] if rest else None
    if type(before) is not int or not 0 < before < 2**63 or not (taken is None or (type(taken) is int and taken > 0)):
        raise BadCursor(f"cursor {cursor!r} is not one this API handed out")
    return before, taken


def stored_items(seq: int, event: dict[str, Any]) -> list[EventItem]:
    """The events one stored event stands for (:func:`planexe_ax.bus.facts`), oldest first, at its sequence.

    A ``subtask_state`` that carries its task's ``task_state`` is that event, then the ``task_state`` on its own.
    """
    carried = event.get("task_state") if event.get("type") == "subtask_state" else None
    items = [event_item(seq, event)]
    if isinstance(carried, dict):
        items.append(event_item(seq, carried))
    return items


async def stored_events(sessions: Sessions, execution_id: str) -> list[tuple[int, dict[str, Any]]]:
    """Every event of the execution as the read model stored it, ``(stream sequence, event)``, oldest first."""
    query = (
        select(ExecutionEvent.stream_seq, ExecutionEvent.data)
        .where(ExecutionEvent.execution_id == execution_id)
        .order_by(ExecutionEvent.stream_seq)
    )
    async with sessions() as session:
        return [(seq, data) for seq, data in (await session.execute(query)).all()]
