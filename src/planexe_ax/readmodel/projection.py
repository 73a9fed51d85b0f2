"""How events fold into the read model, a batch at a time: load what the batch touches, fold in memory, write.

The projector applies its batches live, with its checkpoints; :mod:`planexe_ax.readmodel.replay` applies an
execution's history to show it as it was at one event. A :class:`Batch` reads the rows its events touch with
one query per table, applies every event in stream order to those rows in memory
(:mod:`planexe_ax.readmodel.fold`), then writes the changed rows with one upsert statement per table
(``INSERT ... ON CONFLICT DO UPDATE``) and the events with one insert (on PostgreSQL a ``COPY``); see
:mod:`planexe_ax.readmodel.bulk`.

Everything runs inside the caller's transaction and never commits. An event whose ``event_id`` is already
stored (or seen earlier in the batch) is skipped entirely, so applying a stream twice changes nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Result, Select, Table, and_, any_, bindparam, delete, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.bus import Event, ExecutionCreated, Plan
from planexe_ax.readmodel import fold
from planexe_ax.readmodel.bulk import insert_events, insert_rows, upsert_rows
from planexe_ax.readmodel.fold import EVENT_ONLY, HANDLERS, HELD, Rows, TaskKey
from planexe_ax.readmodel.known import Known, copy_into
from planexe_ax.readmodel.models import (
    Base,
    Execution,
    ExecutionEvent,
    ExecutionSubtask,
    ExecutionTask,
    InboxItem,
    PlanRow,
    PlanSubtask,
    PlanTask,
    ProjectorCheckpoint,
    UTCDateTime,
)

__all__ = ["EVENT_ONLY", "HANDLERS", "HELD", "PLANS_CHECKPOINT", "Batch", "apply_event", "apply_events",
           "load_checkpoint", "save_checkpoint", "upsert_plan"]  # fmt: skip

log = logging.getLogger(__name__)

PLANS_CHECKPOINT = "plans-kv"
"""The checkpoint row that says how far the plan catalog (KV ax-plans) is mirrored into the plan tables."""

CHUNK = 500
"""Keys per ``IN`` list: well under every driver's limit on bound parameters."""

SUBTASK_EVENTS = frozenset({"subtask_state", "subtask_progress"})
TASK_EVENTS = frozenset({"task_state", "subtask_state"})
INBOX_EVENTS = frozenset({"inbox_opened", "inbox_closed"})


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


EXECUTIONS, TASKS, SUBTASKS, INBOX = (
    _table(Execution),
    _table(ExecutionTask),
    _table(ExecutionSubtask),
    _table(InboxItem),
)
PLANS, PLAN_TASKS, PLAN_SUBTASKS = _table(PlanRow), _table(PlanTask), _table(PlanSubtask)
EVENTS, CHECKPOINTS = _table(ExecutionEvent), _table(ProjectorCheckpoint)
_UTC = UTCDateTime()
_CHECKPOINT = select(CHECKPOINTS.c.stream_seq).where(CHECKPOINTS.c.consumer == bindparam("consumer"))
_CHECKPOINT_LOCKED = _CHECKPOINT.with_for_update()
UPSERTED = (
    ("executions", EXECUTIONS),
    ("execution_tasks", TASKS),
    ("execution_subtasks", SUBTASKS),
    ("inbox_items", INBOX),
)


@dataclass(frozen=True, slots=True)
class _Keys:
    """The primary keys a batch's events touch, by table (tasks also through their subtasks, once those are had)."""

    executions: set[str]
    subtasks: set[TaskKey]
    """(execution, subtask id): every task's row of that subtask id."""
    tasks: set[TaskKey]
    inbox: set[str]
    plans: set[str]
    """The plans of the executions the events create."""

    @classmethod
    def of(cls, events: Sequence[Event]) -> _Keys:
        keys = cls(executions=set(), subtasks=set(), tasks=set(), inbox=set(), plans=set())
        for e in events:  # one pass: a batch holds thousands of events
            kind = e.type
            keys.executions.add(e.execution_id)
            if kind in SUBTASK_EVENTS and e.subtask_id:
                keys.subtasks.add((e.execution_id, e.subtask_id))
            if kind in TASK_EVENTS and e.task_id:
                keys.tasks.add((e.execution_id, e.task_id))
            if kind in INBOX_EVENTS:
                keys.inbox.add(getattr(e, "item_id"))  # noqa: B009 - inbox events only
            if isinstance(e, ExecutionCreated) and e.plan is not None:
                keys.plans.add(e.plan.plan_id)
        return keys


class Batch:
    """Events folded together: :meth:`load` once, :meth:`apply` each in stream order, :meth:`write` once.

    Args:
        events: ``(stream_seq, event)`` pairs in stream order (what :meth:`load` reads rows for).
        known: Rows the last committed batches left (:mod:`planexe_ax.readmodel.known`): :meth:`load` copies
            them instead of reading them; whoever commits the batch then keeps its rows there.
        look_up_ids: Whether :meth:`load` looks up which of the events' ids are stored already (those events are
            skipped). Without the look-up, an event stored already makes :meth:`write` fail on the unique index
            of ``execution_events.event_id`` (:class:`~sqlalchemy.exc.IntegrityError`), and the caller writes the
            batch again with it: the projector's way, where an event seldom comes twice.
    """

    def __init__(
        self, events: Sequence[tuple[int, Event]] = (), known: Known | None = None, *, look_up_ids: bool = True
    ) -> None:
        self.events = events
        self.rows = Rows()
        self.known = known or Known(most=0)
        self.look_up_ids = look_up_ids
        self.stored_ids: set[str] = set()
        """The events' ids that :meth:`load` found stored (none looked up: empty)."""
        self.assumed: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        """The executions, inbox items and plans :meth:`load_known` took to be absent (:meth:`confirm` checks)."""

    async def load(self, session: AsyncSession, plan_ids: Iterable[str] = ()) -> None:
        """Read every stored row the events (and plans ``plan_ids``) may change, one query per table."""
        rows, known, events = self.rows, self.known, [event for _, event in self.events]
        if self.look_up_ids:
            self.stored_ids = await _column(session, EVENTS.c.event_id, {e.event_id for e in events})
            rows.seen.update(self.stored_ids)
        keys = _Keys.of([e for e in events if e.event_id not in rows.seen])
        rows.executions.update(dict.fromkeys(keys.executions))
        execution_ids = copy_into(known.executions, rows.executions, keys.executions)
        for row in await _rows(session, EXECUTIONS, ("execution_id",), execution_ids):
            rows.executions[row["execution_id"]] = row
        await self._load_plans(session, keys.plans | set(plan_ids))
        subtask_ids = known.subtasks_into(rows, keys.subtasks)
        for row in await _rows(session, SUBTASKS, ("execution_id", "subtask_id"), subtask_ids):
            rows.add_subtask(row)
        task_ids = copy_into(known.tasks, rows.tasks, keys.tasks | {(e, t) for e, t, _ in rows.subtasks})
        for row in await _rows(session, TASKS, ("execution_id", "task_id"), task_ids):
            rows.tasks[(row["execution_id"], row["task_id"])] = row
        rows.inbox.update(dict.fromkeys(keys.inbox))
        for row in await _rows(session, INBOX, ("item_id",), copy_into(known.inbox, rows.inbox, keys.inbox)):
            rows.inbox[row["item_id"]] = row

    def load_known(self) -> bool:
        """Load the rows from ``known`` alone, without the database, taking every other row to be absent.

        For a batch folded while the one before it is written (the rows that one leaves are in ``known``). What
        is taken to be absent: the executions ``known`` lacks, with their tasks and subtasks (a task's row
        cannot outlive its execution's), the inbox items it lacks and the plans the batch's executions run
        (:attr:`assumed`); :meth:`confirm` then reads them, in the transaction that writes the batch.

        Returns:
            False, with nothing loaded that counts, when a task or subtask the events touch belongs to an
            execution ``known`` holds but is not there itself: it may be stored, and must be read (:meth:`load`).
        """
        rows, known = self.rows, self.known
        assert not self.look_up_ids  # the ids are looked up in the database, or not at all
        keys = _Keys.of([event for _, event in self.events])
        rows.executions.update(dict.fromkeys(keys.executions))
        absent = copy_into(known.executions, rows.executions, keys.executions)
        if any(e not in absent for e, _ in known.subtasks_into(rows, keys.subtasks)):
            return False
        task_ids = keys.tasks | {(e, t) for e, t, _ in rows.subtasks}
        if any(e not in absent for e, _ in copy_into(known.tasks, rows.tasks, task_ids)):
            return False
        rows.inbox.update(dict.fromkeys(keys.inbox))
        items_absent = copy_into(known.inbox, rows.inbox, keys.inbox)
        rows.plans.update(dict.fromkeys(keys.plans))
        self.assumed = (absent, items_absent, keys.plans)
        return True

    async def confirm(self, session: AsyncSession) -> bool:
        """Whether what :meth:`load_known` took to be absent is absent in the database (one read per table)."""
        executions, items, plans = self.assumed
        return not (
            await _rows(session, EXECUTIONS, ("execution_id",), executions)
            or await _rows(session, INBOX, ("item_id",), items)
            or await _rows(session, PLANS, ("plan_id",), plans)  # a plan's tasks cannot outlive its row
        )

    async def _load_plans(self, session: AsyncSession, plan_ids: set[str]) -> None:
        rows = self.rows
        rows.plans.update(dict.fromkeys(plan_ids))
        for row in await _rows(session, PLANS, ("plan_id",), plan_ids):
            rows.plans[row["plan_id"]] = row
        rows.plans_with_tasks |= await _column(session, PLAN_TASKS.c.plan_id, plan_ids)

    def apply(self, event: Event, stream_seq: int, data: str | None = None) -> bool:
        """Fold one event into the loaded rows (its JSON ``data`` when given); False when it was already stored."""
        return fold.apply(self.rows, event, stream_seq, data)

    async def write(self, session: AsyncSession) -> None:
        """Write what changed: replaced plans' rows deleted, then upserts in foreign-key order, then the events."""
        rows = self.rows
        if rows.plans_replaced:
            replaced = sorted(rows.plans_replaced)
            await session.execute(delete(PlanSubtask).where(PlanSubtask.plan_id.in_(replaced)))
            await session.execute(delete(PlanTask).where(PlanTask.plan_id.in_(replaced)))
        await upsert_rows(session, PLANS, [_get(rows.plans, k) for k in _changed(rows, "plans")])
        children = rows.plan_children.values()
        await insert_rows(session, PLAN_TASKS, [row for tasks, _ in children for row in tasks])
        await insert_rows(session, PLAN_SUBTASKS, [row for _, subtasks in children for row in subtasks])
        tables: dict[str, dict[Any, Any]] = {
            "executions": rows.executions,
            "execution_tasks": rows.tasks,
            "execution_subtasks": rows.subtasks,
            "inbox_items": rows.inbox,
        }
        for name, table in UPSERTED:
            await upsert_rows(session, table, [_get(tables[name], k) for k in _changed(rows, name)])
        await insert_events(session, EVENTS, rows.events)


async def apply_events(session: AsyncSession, events: Sequence[tuple[int, Event]]) -> list[bool]:
    """Store ``events`` and apply them to the read model, each unless its ``event_id`` is already stored.

    Args:
        session: An open session; the caller owns the transaction.
        events: ``(stream_seq, event)`` pairs in stream order.

    Returns:
        For each event, False when it was already stored (nothing changed), else True.
    """
    batch = Batch(events)
    await batch.load(session)
    applied = [batch.apply(event, seq) for seq, event in events]
    await batch.write(session)
    return applied


async def apply_event(session: AsyncSession, event: Event, stream_seq: int) -> bool:
    """Store ``event`` and apply it to the read model, unless its ``event_id`` is already stored.

    Returns:
        False when the event was already stored (nothing changed), else True.
    """
    [applied] = await apply_events(session, [(stream_seq, event)])
    return applied


async def upsert_plan(session: AsyncSession, plan: Plan, ts: datetime) -> None:
    """Record ``plan`` (first seen at ``ts``) with its tasks and subtasks; a changed plan replaces its rows."""
    batch = Batch()
    await batch.load(session, plan_ids=[plan.plan_id])
    fold.fold_plan(batch.rows, plan, ts)
    await batch.write(session)


async def load_checkpoint(session: AsyncSession, consumer: str, *, lock: bool = False) -> int:
    """The stream sequence ``consumer`` has projected up to (0 for none).

    Args:
        session: An open session.
        consumer: The checkpoint's name (the projector's durable).
        lock: Lock the row until the transaction ends (PostgreSQL; SQLite's writer lock already serialises):
            a second writer of the same checkpoint waits, then sees how far the first one got.
    """
    connection = await session.connection()  # Core, not the ORM: this runs once a batch, however small
    found = await connection.scalar(_CHECKPOINT_LOCKED if lock else _CHECKPOINT, {"consumer": consumer})
    return int(found or 0)


async def save_checkpoint(session: AsyncSession, consumer: str, stream_seq: int) -> None:
    """Set ``consumer``'s checkpoint to ``stream_seq`` (in the caller's transaction, with the rows it covers)."""
    await upsert_rows(session, CHECKPOINTS, [{"consumer": consumer, "stream_seq": stream_seq}])


def _changed(rows: Rows, table: str) -> list[Any]:
    return sorted(rows.changed.get(table, ()))  # a fixed order: concurrent writers lock rows alike


def _get(rows: dict[Any, fold.Row | None], key: Any) -> fold.Row:
    row = rows[key]
    assert row is not None  # only rows that exist are marked changed
    return row


def _chunks(keys: Iterable[Any]) -> Iterator[list[Any]]:
    keys = sorted(keys)
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


async def _rows(session: AsyncSession, table: Table, columns: tuple[str, ...], keys: set[Any]) -> list[fold.Row]:
    """Every row of ``table`` whose ``columns`` hold one of ``keys`` (single values, or pairs of values).

    Pairs are asked for as ``(a = x AND b IN (...)) OR ...``, grouped by their first value: both databases
    answer that from the index, where SQLite scans the whole table for a row-value ``IN``.
    """
    found: list[fold.Row] = []
    if len(columns) == 1:
        for chunk in _chunks(keys):
            result = await session.execute(select(table).where(table.c[columns[0]].in_(chunk)))
            found.extend(_dicts(result))
        return found
    first, second = table.c[columns[0]], table.c[columns[1]]
    for chunk in _chunks(keys):
        groups: dict[Any, list[Any]] = {}
        for a, b in chunk:
            groups.setdefault(a, []).append(b)
        where = or_(*(and_(first == a, second.in_(bs)) for a, bs in groups.items()))
        result = await session.execute(select(table).where(where))
        found.extend(_dicts(result))
    return found


def _dicts(result: Result[Any]) -> list[fold.Row]:
    """The rows as dicts by column name (``dict(zip(...))``: a ``RowMapping`` builds a key view per row)."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


async def _column(session: AsyncSession, column: Any, keys: set[str]) -> set[str]:
    """The values of ``column`` among ``keys`` that are stored.

    On PostgreSQL one array parameter (``= ANY``): one prepared statement for any number of keys, where an
    ``IN`` list is prepared again for each length.
    """
    found: set[str] = set()
    if not keys:
        return found
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        found.update(await connection.scalars(_stored_any(column), {"keys": sorted(keys)}))
        return found
    for chunk in _chunks(keys):
        found.update(await connection.scalars(_stored_in(column), {"keys": chunk}))
    return found


@functools.cache
def _stored_any(column: Any) -> Select[Any]:
    """``SELECT DISTINCT column FROM t WHERE column = ANY(:keys)``, built once per column."""
    keys = bindparam("keys", type_=postgresql.ARRAY(column.type))
    return select(column).where(column == any_(keys)).distinct()


@functools.cache
def _stored_in(column: Any) -> Select[Any]:
    """``SELECT DISTINCT column FROM t WHERE column IN (:keys)`` (expanded at execution), built once per column."""
    return select(column).where(column.in_(bindparam("keys", expanding=True))).distinct()
