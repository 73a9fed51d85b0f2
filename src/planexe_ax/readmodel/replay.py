"""An execution as it was at one event: its events replayed through the projector's handlers.

The execution's stored events up to the chosen stream sequence are applied, in order, by the same
handlers that build the live read model (:func:`planexe_ax.readmodel.projection.apply_events`), into a
private in-memory SQLite database; the same queries that answer for the live execution then answer for
that copy. Nothing is kept between calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from planexe_ax.bus import decode_event
from planexe_ax.readmodel import executions
from planexe_ax.readmodel.db import Sessions, make_session_factory
from planexe_ax.readmodel.inbox import inbox_items
from planexe_ax.readmodel.models import Base, ExecutionEvent
from planexe_ax.readmodel.projection import apply_events
from planexe_ax.readmodel.schemas import ExecutionAt


async def execution_at(sessions: Sessions, execution_id: str, at_seq: int) -> ExecutionAt | None:
    """The execution, its tree and its inbox as they were right after the event at stream sequence ``at_seq``.

    Args:
        sessions: Sessions of the live read model (its stored events are read, never written).
        execution_id: The execution.
        at_seq: A stream sequence; the execution's events at or before it are replayed.

    Returns:
        None when the execution had no event yet at ``at_seq`` (or is unknown).
    """
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(ExecutionEvent)
                .where(ExecutionEvent.execution_id == execution_id, ExecutionEvent.stream_seq <= at_seq)
                .order_by(ExecutionEvent.stream_seq)
            )
        )
    if not rows:
        return None
    async with _scratch() as scratch:
        async with scratch.begin() as session:
            history = [(row.stream_seq, decode_event(json.dumps(row.data).encode())) for row in rows]
            await apply_events(session, history)
        snap = await executions.snapshot(scratch, execution_id)
        inbox = await inbox_items(scratch, execution_id=execution_id, include_closed=True)
    if snap is None:  # the events before execution_created do not make an execution
        return None
    return ExecutionAt(
        **snap.execution.model_dump(), at_seq=rows[-1].stream_seq, tree=snap.tree, inbox=inbox, events=len(rows)
    )


@asynccontextmanager
async def _scratch() -> AsyncIterator[Sessions]:
    """A private in-memory read model with every table, dropped on exit."""
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield make_session_factory(engine)
    finally:
        await engine.dispose()
