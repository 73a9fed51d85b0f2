"""What `exec status`, `exec list` and the end of `run` print, read from the read model."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planexe_ax.bus import ExecutionStatus
from planexe_ax.cli.exit_codes import EXIT_OK, EXIT_USAGE
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError
from planexe_ax.readmodel import ReadModelError, Sessions, execution_report, read_model
from planexe_ax.readmodel.executions import list_executions
from planexe_ax.readmodel.schemas import ExecutionPage, ExecutionReport

MAX_LIMIT = 500


@contextlib.asynccontextmanager
async def readable(settings: Settings) -> AsyncIterator[Sessions]:
    """The read model's sessions; a read model that cannot be read is a ConfigError naming where it was looked for.

    Raises:
        ConfigError: when the database is not there or has no tables (no projector ever ran against it).
    """
    where = "PLANEXE_DATABASE_URL" if settings.database_url else str(settings.data_dir / "readmodel.sqlite3")
    if not settings.database_url and not (settings.data_dir / "readmodel.sqlite3").is_file():
        # Said before opening: SQLite's driver thread, failing to open a missing file, may still be reporting
        # to the event loop as the process exits, and print its traceback after the one line of the error.
        raise ConfigError(
            f"no read model to read at {where} (no such file): start `planexe-ax up` in this folder, "
            "or set PLANEXE_DATABASE_URL to the projector's database"
        )
    try:
        async with read_model(settings.effective_database_url) as sessions:
            yield sessions
    except (ReadModelError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"no read model to read at {where} ({first[:160]}): start `planexe-ax up` in this folder, "
            "or set PLANEXE_DATABASE_URL to the projector's database"
        ) from exc


async def read_report(settings: Settings, execution_id: str) -> ExecutionReport | None:
    """The execution as the read model has it (the JSON of ``run --json``).

    Raises:
        ConfigError: when there is no read model to read.
    """
    async with readable(settings) as sessions:
        return await execution_report(sessions, execution_id)


async def show_status(settings: Settings, execution_id: str, as_json: bool) -> int:
    """``exec status``: exit 0 with the report, 2 when the execution is unknown."""
    report = await read_report(settings, execution_id)
    if report is None:
        sys.stderr.write(f"planexe-ax: no execution {execution_id} in the read model\n")
        return EXIT_USAGE
    _json(report.model_dump(mode="json")) if as_json else print_summary(report)
    return EXIT_OK


async def show_list(settings: Settings, status: str | None, plan_id: str | None, as_json: bool, limit: int) -> int:
    """``exec list``: the newest executions, filtered by status and plan.

    Raises:
        ConfigError: on an unknown status or a limit out of 1..500, or when there is no read model.
    """
    statuses = [s.value for s in ExecutionStatus]
    status = status.upper() if status else None
    if status is not None and status not in statuses:
        raise ConfigError(f"--status {status} is not a status; use one of {', '.join(statuses)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"--limit must be between 1 and {MAX_LIMIT}, not {limit}")
    async with readable(settings) as sessions:
        page = await list_executions(sessions, plan_id=plan_id, status=status, limit=limit, cursor=None)
    if as_json:
        _json(page.model_dump(mode="json"))
    else:
        print_list(page)
    return EXIT_OK


def print_list(page: ExecutionPage) -> None:
    """A table of executions: id, plan title, status, progress, created, reason."""
    console = Console()
    if not page.items:
        console.print("no executions")
        return
    table = Table()
    for column in ("execution", "plan", "status", "progress", "created", "reason"):
        table.add_column(column, overflow="fold")
    for item in page.items:
        created = f"{item.created_at:%Y-%m-%d %H:%M:%S}"
        cells = (item.execution_id, item.title or item.plan_id, item.status, f"{item.progress:.0f}%", created)
        table.add_row(*(escape(c) for c in cells), escape(item.reason))
    console.print(table)
    if page.next_cursor:
        console.print(f"(the newest {len(page.items)}; --limit shows more)")


def print_summary(report: ExecutionReport, settings: Settings | None = None) -> None:
    """A table of tasks (by title) with status, attempts, agents and times, then why work did not go well."""
    console = Console()
    table = Table(title=escape(f"execution {report.execution_id} — {report.status}"))
    for column in ("task", "status", "attempts", "agents", "started", "finished"):
        table.add_column(column, overflow="fold")
    for task in report.tasks:
        agents = sorted({s.agent_id for s in task.subtasks if s.agent_id})
        table.add_row(
            escape(task.title),
            task.status,
            str(task.attempts),
            ", ".join(agents),
            f"{task.started_at:%H:%M:%S}" if task.started_at else "",
            f"{task.finished_at:%H:%M:%S}" if task.finished_at else "",
        )
    console.print(table)
    for line in reasons(report):
        console.print(escape(line), soft_wrap=True)
    if settings is not None:
        console.print(f"outputs: {settings.outputs_dir / report.execution_id}")


def reasons(report: ExecutionReport) -> list[str]:
    """One line per subtask with an error (failed, skipped, escalated, waiting), and the execution's reason."""
    lines = []
    if report.status != "COMPLETED" and report.reason:
        lines.append(f"{report.status}: {report.reason}")
    for task in report.tasks:
        for sub in task.subtasks:
            if sub.error:
                tries = f", {sub.attempts} attempt{'s' if sub.attempts != 1 else ''}" if sub.attempts else ""
                lines.append(f"{sub.status} {task.title} / {sub.subtask_id} ({sub.action}{tries}): {sub.error}")
    return lines


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
