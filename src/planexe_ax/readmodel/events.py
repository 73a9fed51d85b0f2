"""An execution's events as the API and the WebSocket show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

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

    Raises:
        BadCursor: when ``cursor`` is not one a page handed out.
    """
    query = select(ExecutionEvent).where(ExecutionEvent.execution_id == execution_id)
    if type_:
        query = query.where(ExecutionEvent.type == type_)
    if task_id:
        query = query.where(ExecutionEvent.task_id == task_id)
    if agent_id:
        query = query.where(ExecutionEvent.agent_id == agent_id)
    if cursor:
        (before,) = decode_cursor(cursor, 1)
        if type(before) is not int or not 0 < before < 2**63:
            raise BadCursor(f"cursor {cursor!r} is not one this API handed out")
        query = query.where(ExecutionEvent.stream_seq < before)
    query = query.order_by(ExecutionEvent.stream_seq.desc()).limit(limit + 1)
    async with sessions() as session:
        page, more = split_page(list(await session.scalars(query)), limit)
    return EventPage(
        items=[event_item(row.stream_seq, row.data) for row in page],
        next_cursor=encode_cursor(page[-1].stream_seq) if more and page else None,
    )


async def stored_events(sessions: Sessions, execution_id: str) -> list[tuple[int, dict[str, Any]]]:
    """Every event of the execution as the read model stored it, ``(stream sequence, event)``, oldest first."""
    query = (
        select(ExecutionEvent.stream_seq, ExecutionEvent.data)
        .where(ExecutionEvent.execution_id == execution_id)
        .order_by(ExecutionEvent.stream_seq)
    )
    async with sessions() as session:
        return [(seq, data) for seq, data in (await session.execute(query)).all()]
