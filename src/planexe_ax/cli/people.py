"""People's side of an execution from the command line: answer inbox items, or let them be answered."""

from __future__ import annotations

import asyncio
import getpass

from rich.console import Console

from planexe_ax.bus import Bus, CommandRejected, InboxOpened, ResolveInbox
from planexe_ax.bus.client import command_verdict
from planexe_ax.bus.messages import InboxAction

AUTO_ANSWERS: dict[str, InboxAction] = {
    "approval": "approve",
    "review": "accept",
    "human_task": "complete",
    "escalation": "fail",  # failed work is not pretended done: an unattended run ends FAILED, as it says
    "acknowledge": "acknowledge",
}
AUTO_BY = "auto"
AUTO_NOTE = "answered automatically (--people auto)"


def current_user() -> str:
    """Who answers, by default: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


class AutoPeople:
    """Answer every inbox item of one execution at once (for demos and tests), counting what it answered."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.queue: asyncio.Queue[InboxOpened] = asyncio.Queue()
        self.answered: dict[str, int] = {}

    def on_event(self, event: object) -> None:
        """Feed every event of the execution here; inbox items are queued for an answer."""
        if isinstance(event, InboxOpened):
            self.queue.put_nowait(event)

    async def run(self) -> None:
        """Answer queued items until cancelled."""
        while True:
            item = await self.queue.get()
            action = AUTO_ANSWERS[item.kind]
            output = {"note": AUTO_NOTE} if action == "complete" else None
            await self.bus.send_command(
                ResolveInbox(
                    execution_id=item.execution_id,
                    item_id=item.item_id,
                    action=action,
                    output=output,
                    comment=AUTO_NOTE,
                    issued_by=AUTO_BY,
                )
            )
            self.answered[item.kind] = self.answered.get(item.kind, 0) + 1

    def summary(self) -> str:
        """One line: what was answered automatically."""
        if not self.answered:
            return ""
        parts = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in sorted(self.answered.items()))
        return f"people's work answered automatically (--people auto): {parts}"


class InboxNotices:
    """Say on the console when an execution waits for a person, and how to answer from another terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_event(self, event: object) -> None:
        """Feed every event of the execution here; each opened inbox item is announced once, on one line."""
        if isinstance(event, InboxOpened):
            self.console.print(notice(event), markup=False, highlight=False, soft_wrap=True)


def notice(item: InboxOpened) -> str:
    """One line: what waits for a person, why, and the commands that answer it."""
    what = f"{item.kind.replace('_', ' ')} {item.title or item.subtask_id or item.task_id}"
    why = f" ({item.reason})" if item.reason else ""
    answers = "|".join(item.actions)
    return f"waiting for a person: {what}{why}; answer with `planexe-ax inbox {answers} {item.item_id}`"


async def resolve_item(bus: Bus, command: ResolveInbox, timeout_s: float = 15.0) -> str | None:
    """Send a person's answer and wait for the coordinator's verdict.

    Returns:
        None when the item was closed as asked, else the reason the coordinator gave for refusing.

    Raises:
        TimeoutError: when no verdict came within ``timeout_s`` (is the coordinator running?).
    """
    event, _ = await command_verdict(bus, command, timeout_s)
    return event.reason if isinstance(event, CommandRejected) else None
