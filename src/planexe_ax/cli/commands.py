"""The work behind each ``planexe-ax`` command (argument parsing stays in cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from planexe_ax.bus import Bus, Event, ExecutionStatus, Plan, SubtaskState, TaskState, TaskStatus, connect
from planexe_ax.bus.client import control, control_task, execution_known, follow, start_execution
from planexe_ax.cli.auth_http import LOCAL_TOKEN_FILE, login_link
from planexe_ax.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from planexe_ax.cli.people import AutoPeople, InboxNotices
from planexe_ax.cli.reports import print_summary, read_report
from planexe_ax.cli.services import BACKGROUND, SERVICES, nats_server, start_services
from planexe_ax.common import eventloop
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError
from planexe_ax.readmodel import execution_report
from planexe_ax.readmodel.schemas import ExecutionReport


class LiveProgress:
    """A rich progress bar of completed subtasks, with the task being worked on."""

    def __init__(self, plan: Plan, console: Console) -> None:
        self.titles = {task.task_id: task.title for task in plan.tasks()}
        total = sum(len(task.subtasks) for task in plan.tasks()) or 1
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.bar = self.progress.add_task("starting", total=total)

    def on_event(self, event: Event) -> None:
        """Advance the bar on each completed subtask and show the task that started."""
        if isinstance(event, SubtaskState) and event.status == TaskStatus.COMPLETED:
            self.progress.advance(self.bar)
        elif isinstance(event, TaskState) and event.status == TaskStatus.RUNNING and event.task_id:
            self.progress.update(self.bar, description=self.titles.get(event.task_id, event.task_id)[:60])


async def run_plan(
    settings: Settings,
    plan: Plan,
    as_json: bool,
    timeout_s: float | None,
    people: str = "inbox",
    *,
    dashboard: bool = False,
    linger: asyncio.Event | None = None,
) -> int:
    """Run ``plan`` to the end with every service in this process; print the result from the read model.

    Args:
        settings: Where the services connect and how they behave.
        plan: The plan to run.
        as_json: Print the final report as JSON, without the progress bar.
        timeout_s: Give up (exit code EXIT_TIMEOUT) after this long; None waits for the end.
        people: "inbox" leaves people's work in the inbox; "auto" answers it at once.
        dashboard: Serve the gateway too and print the dashboard link of the execution.
        linger: With ``dashboard``: after the run, keep serving until this event is set (Ctrl-C).

    Returns:
        The exit code: EXIT_OK when the execution completed, EXIT_FAILED when it did not, EXIT_TIMEOUT
        past ``timeout_s``, EXIT_USAGE when the coordinator rejected the plan.
    """
    console = Console(stderr=True)
    async with nats_server(settings) as url:
        names = SERVICES if dashboard else BACKGROUND
        services = await start_services(settings, url, names, any_port=True)
        stop = asyncio.Event()
        runner = asyncio.create_task(services.run(stop))
        bus = await connect(settings, url, "planexe-ax-run", provision=False, role="operator")
        auto = AutoPeople(bus) if people == "auto" else None
        answering = asyncio.create_task(auto.run()) if auto else None
        try:
            execution_id = await start_execution(bus, plan)
            if services.gateway:
                link = login_link(settings, services.gateway.url, f"#/executions/{execution_id}")
                sys.stdout.write(f"dashboard: {link}\n")
                sys.stdout.flush()
            live = None if as_json else LiveProgress(plan, console)
            notices = None if auto else InboxNotices(console)
            listeners = [f for f in (live and live.on_event, auto and auto.on_event, notices and notices.on_event) if f]

            def on_event(event: Event) -> None:
                for listener in listeners:
                    listener(event)

            with live.progress if live else contextlib.nullcontext():
                try:
                    outcome = await follow(bus, execution_id, on_event, timeout_s)
                except TimeoutError:
                    console.print(f"execution {execution_id} did not end within {timeout_s} s")
                    return EXIT_TIMEOUT
            if outcome.status is None:
                console.print(f"planexe-ax: plan rejected: {outcome.reason}")
                return EXIT_USAGE
            assert services.projector is not None
            await services.projector.wait_for_seq(outcome.stream_seq, timeout=30)
            report = await execution_report(services.projector.sessions, execution_id)
            if services.gateway and linger is not None:
                assert report is not None
                _print_report(report, settings, as_json)
                console.print(f"the dashboard stays up at {services.gateway.url}; Ctrl-C to stop")
                await linger.wait()
                report = None  # printed already
        finally:
            if answering:
                answering.cancel()
                await asyncio.gather(answering, return_exceptions=True)
            await bus.close()
            stop.set()
            await runner
    if auto and auto.summary():
        console.print(auto.summary())
    if report is not None:
        _print_report(report, settings, as_json)
    return EXIT_OK if outcome.status == ExecutionStatus.COMPLETED else EXIT_FAILED


def _print_report(report: ExecutionReport, settings: Settings, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    else:
        print_summary(report, settings)


async def serve(settings: Settings, names: tuple[str, ...], stop: asyncio.Event) -> int:
    """Run services until ``stop`` (SIGTERM/SIGINT); drain and return 0.

    Raises:
        ConfigError: when the gateway is among them and its port is taken (before anything starts).
    """
    if "gateway" in names:
        from planexe_ax.ws_gateway.server import port_free

        if not port_free(settings.http_host, settings.http_port):
            raise ConfigError(
                f"{settings.http_host}:{settings.http_port} is taken (another planexe-ax up?); "
                "choose another with --port or PLANEXE_HTTP_PORT"
            )
    async with nats_server(settings) as url:
        services = await start_services(settings, url, names)
        if "gateway" in names:
            from planexe_ax.cli.catalog import seed_examples

            await seed_examples(settings, url)
        if services.gateway:
            _print_links(settings, services.gateway.url, login=names == SERVICES)
        Console(stderr=True).print(f"planexe-ax: {', '.join(names)} running on {url}; Ctrl-C to stop")
        eventloop.freeze_startup_objects()
        eventloop.tune_gc(eventloop.young_threshold(names))
        await services.run(stop)
    return EXIT_OK


def _print_links(settings: Settings, web: str, login: bool) -> None:
    """The gateway's addresses; with ``login`` (``up``), the dashboard link that logs a browser in."""
    if login:
        sys.stdout.write(f"dashboard (this link logs the browser in): {login_link(settings, web)}\n")
        sys.stdout.write(f"API: {web}/api (admin token in {settings.data_dir / LOCAL_TOKEN_FILE}; docs: {web}/docs)\n")
    else:
        sys.stdout.write(f"dashboard and API: {web}  (API docs: {web}/docs)\n")
    sys.stdout.flush()


async def exec_command(bus: Bus, args: argparse.Namespace, plan: Plan | None) -> int:
    """``exec start|wait|pause|resume|cancel`` against running services."""
    if args.exec_command == "start":
        assert plan is not None
        sys.stdout.write(await start_execution(bus, plan) + "\n")
        return EXIT_OK
    if args.exec_command == "wait":
        if not await execution_known(bus, args.execution_id):
            raise ConfigError(f"no execution {args.execution_id} on the bus (check the id, or PLANEXE_NAMESPACE)")
        try:
            outcome = await follow(bus, args.execution_id, None, args.timeout)
        except TimeoutError:
            return EXIT_TIMEOUT
        if outcome.skipped:
            sys.stderr.write(f"skipped {outcome.skipped} message(s) on the execution's subjects that are not events\n")
        await _wait_read_model(bus.settings, args.execution_id, outcome.status)
        return EXIT_OK if outcome.status == ExecutionStatus.COMPLETED else EXIT_FAILED
    if args.exec_command in ("pause-task", "resume-task", "cancel-task", "reassign"):
        await control_task(bus, args)
        return EXIT_OK
    await control(bus, args.execution_id, args.exec_command, args.reason)
    return EXIT_OK


async def _wait_read_model(settings: Settings, execution_id: str, status: ExecutionStatus | None) -> None:
    """Give the projector a moment to show the final status, so `exec status` after `exec wait` agrees."""
    if status is None:
        return
    for _ in range(100):
        try:
            report = await read_report(settings, execution_id)
        except ConfigError:  # no read model to wait for (no projector runs against it)
            return
        if report and report.status == status.value:
            return
        await asyncio.sleep(0.1)


async def audit_verify(settings: Settings, execution_id: str, as_json: bool) -> int:
    """``audit verify``: compare the stream's and the read model's history; exit 1 when they differ."""
    from planexe_ax.cli.services import resolve_nats_url
    from planexe_ax.readmodel import read_model
    from planexe_ax.readmodel.audit import verify

    bus = await connect(settings, resolve_nats_url(settings), "planexe-ax-audit", provision=False, role="operator")
    try:
        async with read_model(settings.effective_database_url) as sessions:
            report = await verify(bus, sessions, execution_id)
    finally:
        await bus.close()
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        verdict = "ok" if report.ok else f"{len(report.problems)} difference(s)"
        sys.stdout.write(f"{execution_id}: {report.events} events in the stream, chain head {report.head}: {verdict}\n")
        for p in report.problems:
            sys.stdout.write(f"  seq {p.seq} event {p.event_id}: {p.problem}\n")
    return EXIT_OK if report.ok else 1


async def audit_export(settings: Settings, execution_id: str, out: Path | None) -> int:
    """``audit export``: the read model's history of the execution as JSON Lines (exit 2 when it has none)."""
    from planexe_ax.readmodel import read_model
    from planexe_ax.readmodel.audit import export_lines
    from planexe_ax.readmodel.events import stored_events

    async with read_model(settings.effective_database_url) as sessions:
        events = await stored_events(sessions, execution_id)
    if not events:
        raise ConfigError(f"no events of execution {execution_id} in the read model (check the id)")
    text = "".join(line + "\n" for line in export_lines(events))
    if out is None:
        sys.stdout.write(text)
    else:
        await asyncio.to_thread(out.write_text, text, encoding="utf-8")
    return EXIT_OK
