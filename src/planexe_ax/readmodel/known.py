"""The rows the projector's last committed batches left behind, so that the next batch need not read them again.

Only the projector writes executions, tasks, subtasks and inbox items (plans come from the plan catalog too, and
are not kept here). While it commits batch after batch, the rows it last wrote or read are the stored rows: a
:class:`~planexe_ax.readmodel.projection.Batch` copies them from a :class:`Known` and reads only the others.
The projector keeps a batch's rows as soon as the batch is folded, before it is written, so that the next batch
can be folded meanwhile (it then checks, in its own transaction, that the batch before it committed as folded).
Whatever might make them differ from the stored rows (a batch that failed, another writer's checkpoint, a new
term) must call :meth:`Known.clear`. Event ids are never kept here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from planexe_ax.readmodel.fold import Row, Rows, TaskKey

KNOWN_ROWS = 20_000
"""Tasks and subtask ids kept at most (a few kilobytes each); past that, all are forgotten and read again."""

K = TypeVar("K")


class Known:
    """Committed rows by primary key; subtasks by (execution, subtask id), every task's row of that id, in order.

    Args:
        most: Tasks plus subtask ids to keep at most.
    """

    def __init__(self, most: int = KNOWN_ROWS) -> None:
        self.most = most
        self.executions: dict[str, Row] = {}
        self.tasks: dict[TaskKey, Row] = {}
        self.subtasks: dict[TaskKey, list[Row]] = {}
        self.inbox: dict[str, Row] = {}

    def clear(self) -> None:
        """Forget every row: the next batch reads what it needs from the database."""
        self.executions, self.tasks, self.subtasks, self.inbox = {}, {}, {}, {}

    def keep(self, rows: Rows) -> None:
        """Remember the rows of a batch folded to be committed (read or written: they are stored as they are then)."""
        self.executions.update((key, row) for key, row in rows.executions.items() if row is not None)
        self.tasks.update(rows.tasks)
        by_id: dict[TaskKey, list[Row]] = {}
        for (execution_id, _, subtask_id), row in rows.subtasks.items():
            # A batch holds every row of a subtask id it holds: all were read together, or made by execution_created.
            by_id.setdefault((execution_id, subtask_id), []).append(row)
        self.subtasks.update(by_id)
        self.inbox.update((key, row) for key, row in rows.inbox.items() if row is not None)
        if len(self.tasks) + len(self.subtasks) > self.most:
            self.clear()

    def subtasks_into(self, rows: Rows, keys: set[TaskKey]) -> set[TaskKey]:
        """Copy the subtasks of the known (execution, subtask id) ``keys`` into ``rows``; return the other keys."""
        unknown = set()
        for key in keys:
            found = self.subtasks.get(key)
            if found is None:
                unknown.add(key)
                continue
            for row in found:
                rows.add_subtask(dict(row))
        return unknown


def copy_into(known: dict[K, Row], rows: dict[K, Any], keys: set[K]) -> set[K]:
    """Copy the rows of the known ``keys`` into ``rows`` (a batch changes its copies); return the other keys."""
    unknown = set()
    for key in keys:
        row = known.get(key)
        if row is None:
            unknown.add(key)
        else:
            rows[key] = dict(row)
    return unknown
