"""A plan whose work fails at run time, one task per answer a person can give to an escalation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from planexe_ax.bus import Bus, InboxOpened, Plan

ANSWERED = ["t_retry", "t_complete", "t_skip", "t_fail"]
FIXED_PARAMS: dict[str, Any] = {"operation": "write", "file_path": "RETRIED.csv", "data": [{"name": "Carol Campion"}]}


def broken(name: str) -> dict[str, Any]:
    """A ``manage_csv`` subtask with the right shape that fails for good: its source file does not exist."""
    return {
        "subtask_id": f"s_{name}",
        "action": "manage_csv",
        "params": {"operation": "import_json", "source": f"missing_{name}.json", "file_path": f"{name}.csv"},
    }


def escalating_plan(plan_id: str = "escalations") -> Plan:
    """Four independent tasks whose subtask fails, and ``t_after`` that waits for ``t_skip``."""
    tasks: list[dict[str, Any]] = [
        {"task_id": f"t_{name}", "title": f"Task to {name}", "subtasks": [broken(name)]}
        for name in ("retry", "complete", "skip", "fail")
    ]
    after = {"subtask_id": "s_after", "action": "draft_document", "params": {"template": "# After the skip\n"}}
    tasks.append({"task_id": "t_after", "title": "After the skipped task", "prerequisites": ["t_skip"],
                  "subtasks": [after]})  # fmt: skip
    document = {"plan_id": plan_id, "goal": "show each answer to an escalation"}
    return Plan.model_validate({**document, "phases": [{"phase_id": "p", "name": "Work", "tasks": tasks}]})


class Inbox:
    """The inbox_opened events of one execution, with their stream sequence, as they arrive."""

    def __init__(self) -> None:
        self.items: dict[str, InboxOpened] = {}
        self.seqs: dict[str, int] = {}
        self.arrived = asyncio.Event()

    def by_task(self) -> dict[str, InboxOpened]:
        """The open escalations by task id (the newest per task)."""
        return {item.task_id or "": item for item in self.items.values() if item.kind == "escalation"}

    async def wait_for(self, count: int, limit_s: float = 30) -> dict[str, InboxOpened]:
        """Until ``count`` escalations have arrived; by task id."""

        async def enough() -> None:
            while len(self.by_task()) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), limit_s)
        return self.by_task()


@asynccontextmanager
async def watching_inbox(bus: Bus, execution_id: str) -> AsyncIterator[Inbox]:
    """Collect the execution's inbox_opened events for as long as the block runs."""
    inbox = Inbox()
    sub = await bus.js.subscribe(bus.subjects.event(execution_id, "inbox_opened"), ordered_consumer=True)

    async def feed() -> None:
        async for msg in sub.messages:
            item = InboxOpened.model_validate_json(msg.data)
            inbox.items[item.item_id] = item
            inbox.seqs[item.item_id] = msg.metadata.sequence.stream
            inbox.arrived.set()

    feeder = asyncio.create_task(feed())
    try:
        yield inbox
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await sub.unsubscribe()
