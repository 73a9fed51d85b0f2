"""The inbox: work for people (human tasks, approvals, reviews, escalations) and how it was answered."""

from __future__ import annotations

from sqlalchemy import select

from planexe_ax.readmodel.db import Sessions
from planexe_ax.readmodel.models import INBOX_OPEN, InboxItem
from planexe_ax.readmodel.schemas import InboxEntry


def _entry(row: InboxItem) -> InboxEntry:
    return InboxEntry.model_validate({name: getattr(row, name) for name in InboxEntry.model_fields})


async def inbox_items(
    sessions: Sessions, *, execution_id: str | None = None, include_closed: bool = False
) -> list[InboxEntry]:
    """Inbox items, oldest first.

    Args:
        sessions: Sessions of the read model.
        execution_id: Only the items of this execution; None for every execution.
        include_closed: Closed items too; by default only the open ones.
    """
    query = select(InboxItem).order_by(InboxItem.opened_at, InboxItem.item_id)
    if execution_id is not None:
        query = query.where(InboxItem.execution_id == execution_id)
    if not include_closed:
        query = query.where(InboxItem.status == INBOX_OPEN)
    async with sessions() as session:
        return [_entry(row) for row in await session.scalars(query)]


async def inbox_item(sessions: Sessions, item_id: str) -> InboxEntry | None:
    """One inbox item, open or closed (None when unknown)."""
    async with sessions() as session:
        row = await session.get(InboxItem, item_id)
    return None if row is None else _entry(row)
