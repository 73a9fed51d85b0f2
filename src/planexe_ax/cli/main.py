"""The ``planexe-ax`` command. Exit codes: 0 success, 1 execution FAILED/CANCELLED, 2 bad input, 3 timeout."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from planexe_ax.bus import connect
from planexe_ax.cli.auth_http import add_auth_http_parsers
from planexe_ax.cli.auth_nats import add_nats_auth_parsers
from planexe_ax.cli.exit_codes import EXIT_USAGE
from planexe_ax.cli.plan import add_plan_parsers, load_checked, load_plan, run_plan_command, warn
from planexe_ax.cli.services import SERVICES
from planexe_ax.common import eventloop
from planexe_ax.common.logs import setup_logging
from planexe_ax.common.telemetry import Telemetry, service_name, setup_tracing
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError, PlanValidationError


def example_plan_path() -> Path:
    """The prospecting plan of the seed documents, shipped with the package."""
    return Path(str(resources.files("planexe_ax") / "examples" / "prospecting.json"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planexe-ax", description="Execute PlanExe plans with agents and people.")
    sub = parser.add_subparsers(dest="command", required=True)

    add_plan_parsers(sub)

    run = sub.add_parser("run", help="import, validate and run a plan to the end with the built-in agents")
    run.add_argument("plan", type=Path)
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    run.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 3)")
    run.add_argument(
        "--people",
        choices=["inbox", "auto"],
        default="inbox",
        help="inbox: people's work waits in the inbox (default); auto: answer it automatically (demos, tests)",
    )

    demo = sub.add_parser("demo", help="run the prospecting example with a live progress bar and its dashboard")
    demo.add_argument(
        "--linger",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the dashboard up after the run until Ctrl-C (default: when run in a terminal)",
    )
    _http_args(demo)
    up = sub.add_parser("up", help="run every service and the dashboard (embedded NATS without PLANEXE_NATS_URL)")
    _http_args(up)
    serve = sub.add_parser("serve", help="run one service in the foreground; SIGTERM drains and exits 0")
    serve.add_argument("service", choices=list(SERVICES))
    _http_args(serve)

    audit = sub.add_parser("audit", help="verify an execution's history")
    aud = audit.add_subparsers(dest="audit_command", required=True)
    check = aud.add_parser("verify", help="the stream's events against the read model's; exit 1 naming each difference")
    check.add_argument("execution_id")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    export = aud.add_parser("export", help="the history as JSON Lines: each event, who did it, the chain head")
    export.add_argument("execution_id")
    export.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    exe = sub.add_parser("exec", help="talk to running services").add_subparsers(dest="exec_command", required=True)
    start = exe.add_parser("start", help="start an execution of PLAN and print its id")
    start.add_argument("plan", type=Path)
    status = exe.add_parser("status", help="print the execution as the read model has it")
    status.add_argument("execution_id")
    status.add_argument("--json", action="store_true")
    listing = exe.add_parser("list", help="the newest executions as the read model has them")
    listing.add_argument("--status", default=None, help="only this status (RUNNING, COMPLETED, FAILED, ...)")
    listing.add_argument("--plan", default=None, help="only executions of this plan id")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true")
    wait = exe.add_parser("wait", help="wait for the end: exit 0 COMPLETED, 1 FAILED/CANCELLED, 3 timeout")
    wait.add_argument("execution_id")
    wait.add_argument("--timeout", type=float, default=None)
    for action in ("pause", "resume", "cancel"):
        control = exe.add_parser(action, help=f"{action} an execution")
        control.add_argument("execution_id")
        control.add_argument("--reason", default="")
    for action in ("pause-task", "resume-task", "cancel-task"):
        control = exe.add_parser(action, help=f"{action.replace('-task', '')} one task of an execution")
        control.add_argument("execution_id")
        control.add_argument("task_id")
        control.add_argument("--reason", default="")
    reassign = exe.add_parser("reassign", help="move a task's open and future work to one agent")
    reassign.add_argument("execution_id")
    reassign.add_argument("task_id")
    reassign.add_argument("agent_id")
    _add_inbox_parsers(sub)
    auth = sub.add_parser(
        "auth", help="identities: API tokens for the HTTP gateway, NATS .creds for agents, an external NATS"
    ).add_subparsers(dest="auth_command", required=True)
    add_auth_http_parsers(auth)
    add_nats_auth_parsers(auth)
    return parser


def _http_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="HTTP listen address (PLANEXE_HTTP_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (PLANEXE_HTTP_PORT, default 8000)")


def _add_inbox_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inbox = sub.add_parser("inbox", help="people's work: list it and answer it").add_subparsers(
        dest="inbox_command", required=True
    )
    listing = inbox.add_parser("list", help="open items (oldest first)")
    listing.add_argument("--execution", default=None, help="only this execution")
    listing.add_argument("--all", action="store_true", help="closed items too")
    listing.add_argument("--json", action="store_true")
    answers = {
        "approve": "approve an approval gate",
        "reject": "reject an approval, a reviewed result (retry) or a task (fails it)",
        "complete": "say a human task or escalation is done (--output JSON)",
        "accept": "accept a result under review as it is",
        "edit": "accept a result under review with a corrected --output JSON",
        "retry": "try an escalated subtask again, a fresh round of attempts (--params JSON replaces its params)",
        "skip": "skip an escalated subtask: it counts as done for what depends on it and shows SKIPPED",
        "fail": "give up on an escalated subtask: its task and the execution fail",
        "acknowledge": "say you have seen a notice (a webhook disabled); it changes nothing else",
    }
    for action, text in answers.items():
        answer = inbox.add_parser(action, help=text)
        answer.add_argument("item_id")
        answer.add_argument("--comment", default="")
        if action in ("complete", "edit"):
            answer.add_argument("--output", default=None, help="a JSON object")
        if action == "retry":
            answer.add_argument("--params", default=None, help="a JSON object: the params from now on")
        answer.add_argument("--by", default=None, help="who answers (default: the login name)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``planexe-ax``."""
    args = _parser().parse_args(argv)
    flags = {"http_host": getattr(args, "host", None), "http_port": getattr(args, "port", None)}
    try:
        settings = Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValueError as exc:
        sys.stderr.write(f"planexe-ax: bad setting: {_first_line(exc)}\n")
        return EXIT_USAGE
    quiet = args.command in ("run", "demo", "plan", "exec", "auth", "audit")
    setup_logging("WARNING" if quiet else settings.log_level)
    telemetry = Telemetry()
    try:
        telemetry = setup_tracing(service_name(args.command, getattr(args, "service", None)))
        eventloop.tune_gc()
        return eventloop.run(_dispatch(args, settings))
    except (PlanValidationError, ConfigError) as exc:
        sys.stderr.write("".join(f"planexe-ax: {line}\n" for line in str(exc).splitlines()))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    finally:
        telemetry.shutdown()  # after the services stopped (SIGTERM ends the loop): every span is sent


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from planexe_ax.cli import commands

    if args.command == "plan":
        return await run_plan_command(args, settings)
    if args.command == "auth":
        return int(await args.auth_handler(settings, args))
    if args.command == "run":
        from planexe_ax.cli.schemas import builtin_schemas

        checked = load_checked(args.plan, schemas=builtin_schemas())
        warn(checked, str(args.plan))
        plan = checked.plan
        return await commands.run_plan(settings, plan, as_json=args.json, timeout_s=args.timeout, people=args.people)
    if args.command == "demo":
        plan = load_plan(example_plan_path())
        linger = sys.stdin.isatty() and sys.stdout.isatty() if args.linger is None else args.linger
        return await commands.run_plan(
            settings,
            plan,
            as_json=False,
            timeout_s=None,
            people="auto",
            dashboard=True,
            linger=_stop_on_signals() if linger else None,
        )
    if args.command == "inbox":
        from planexe_ax.cli import inbox as inbox_cli

        return await inbox_cli.run_inbox_command(settings, args)
    if args.command == "audit":
        if args.audit_command == "export":
            return await commands.audit_export(settings, args.execution_id, args.out)
        return await commands.audit_verify(settings, args.execution_id, args.json)
    if args.command in ("up", "serve"):
        names = SERVICES if args.command == "up" else (args.service,)
        return await commands.serve(settings, names, _stop_on_signals())
    return await _exec(args, settings)


async def _exec(args: argparse.Namespace, settings: Settings) -> int:
    from planexe_ax.cli import commands, reports
    from planexe_ax.cli.services import resolve_nats_url

    if args.exec_command == "status":
        return await reports.show_status(settings, args.execution_id, args.json)
    if args.exec_command == "list":
        return await reports.show_list(settings, args.status, args.plan, args.json, args.limit)
    bus = await connect(settings, resolve_nats_url(settings), "planexe-ax-cli", role="operator")
    try:
        plan = None
        if args.exec_command == "start":
            from planexe_ax.cli.schemas import bus_schemas

            checked = load_checked(args.plan, schemas=await bus_schemas(bus))
            warn(checked, str(args.plan))
            plan = checked.plan
        return await commands.exec_command(bus, args, plan)
    finally:
        await bus.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _first_line(exc: ValueError) -> str:
    lines = str(exc).splitlines()
    return " ".join(line.strip() for line in lines[:3]) if len(lines) > 1 else lines[0]


if __name__ == "__main__":
    raise SystemExit(main())
