"""``planexe-ax inbox list|approve|reject|complete|accept|edit|retry|skip|fail``: people's work.

Items are read from the read model; answers go to the coordinator over the bus.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from planexe_ax.bus import Bus, ResolveInbox, connect
from planexe_ax.cli.exit_codes import EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from planexe_ax.cli.people import current_user, resolve_item
from planexe_ax.cli.schemas import bus_schemas
from planexe_ax.cli.services import resolve_nats_url
from planexe_ax.config import Settings
from planexe_ax.errors import PlanExeAXError
from planexe_ax.plans.params import check_subtask_params
from planexe_ax.readmodel import inbox_item, inbox_items, read_model
from planexe_ax.readmodel.schemas import InboxEntry


class InboxError(PlanExeAXError):
    """An inbox command that cannot be carried out (exit 2)."""


async def _read_items(settings: Settings, execution_id: str | None, everything: bool) -> list[InboxEntry]:
    async with read_model(settings.effective_database_url) as sessions:
        return await inbox_items(sessions, execution_id=execution_id, include_closed=everything)


async def _read_item(settings: Settings, item_id: str) -> InboxEntry | None:
    async with read_model(settings.effective_database_url) as sessions:
        return await inbox_item(sessions, item_id)


def _print_items(items: list[InboxEntry]) -> None:
    table = Table(title=f"inbox: {len(items)} item(s)")
    for column in ("item", "kind", "status", "title", "reason", "answers"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(item.item_id, item.kind, item.status, item.title, item.reason, ", ".join(item.actions))
    Console().print(table)


def _json_object(raw: str | None, flag: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InboxError(f"{flag} is not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise InboxError(f"{flag} must be a JSON object")
    return value


async def _params_problems(bus: Bus, item: InboxEntry, params: dict[str, Any] | None) -> str | None:
    """A retry's new params checked against the action's schema: the problems, one per line, or None."""
    if params is None or not item.subtask_id:
        return None
    problems = check_subtask_params(item.subtask_id, item.action, params, await bus_schemas(bus))
    return "\n".join(f"params do not fit: {p.line()}" for p in problems) or None


async def run_inbox_command(settings: Settings, args: argparse.Namespace) -> int:
    """List the inbox, or answer one item and report the coordinator's verdict."""
    if args.inbox_command == "list":
        items = await _read_items(settings, args.execution, args.all)
        if args.json:
            sys.stdout.write(json.dumps([item.model_dump(mode="json") for item in items], indent=2) + "\n")
        else:
            _print_items(items)
        return EXIT_OK
    try:
        output = _json_object(getattr(args, "output", None), "--output")
        params = _json_object(getattr(args, "params", None), "--params")
        item = await _read_item(settings, args.item_id)
        if item is None:
            raise InboxError(f"no inbox item {args.item_id} in the read model")
        if item.status != "open":
            raise InboxError(f"inbox item {args.item_id} is already closed ({item.resolution})")
    except InboxError as exc:
        sys.stderr.write(f"planexe-ax: {exc}\n")
        return EXIT_USAGE
    command = ResolveInbox(execution_id=item.execution_id, item_id=args.item_id, action=args.inbox_command,
                           output=output, params=params, comment=args.comment,
                           issued_by=args.by or current_user())  # fmt: skip
    bus = await connect(settings, resolve_nats_url(settings), "planexe-ax-inbox", provision=False, role="operator")
    try:
        refused = await _params_problems(bus, item, params) or await resolve_item(bus, command)
    except TimeoutError:
        sys.stderr.write("planexe-ax: no answer from the coordinator in 15 s; is it running?\n")
        return EXIT_TIMEOUT
    finally:
        await bus.close()
    if refused:
        sys.stderr.write(f"planexe-ax: refused: {refused}\n")
        return EXIT_USAGE
    sys.stdout.write(f"{args.item_id}: {args.inbox_command} done\n")
    return EXIT_OK
