"""The ``planexe-ax plan ...`` subcommands: validate, schema (and, as they come, import, show, decompose)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from planexe_ax.bus import Plan
from planexe_ax.errors import PlanValidationError

EXIT_OK = 0


def load_plan(path: Path, strict: bool = False, siblings: str = "parallel") -> Plan:
    """Load a plan from a JSON file, a PlanExe run folder or its zip.

    Raises:
        PlanValidationError: naming the problem.
    """
    if path.is_dir() or path.suffix.lower() == ".zip":
        from planexe_ax.coordinator.importers import load_plan_source

        return load_plan_source(path, strict=strict, siblings=siblings).plan  # type: ignore[arg-type]
    if not path.exists():
        raise PlanValidationError(f"{path}: no such file or folder")
    from planexe_ax.coordinator import load_plan_file

    return load_plan_file(path)


def add_plan_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``plan ...`` to the top-level parser."""
    plan = sub.add_parser("plan", help="check and inspect plans").add_subparsers(dest="plan_command", required=True)
    validate = plan.add_parser("validate", help="exit 0 when the plan is valid, 2 with the problem otherwise")
    validate.add_argument("plan", type=Path)
    plan.add_parser("schema", help="print the JSON Schema of the plan format")


async def run_plan_command(args: argparse.Namespace) -> int:
    """Carry out a ``plan ...`` subcommand; errors are raised as PlanValidationError (exit 2)."""
    if args.plan_command == "schema":
        sys.stdout.write(json.dumps(Plan.model_json_schema(by_alias=True), indent=2) + "\n")
        return EXIT_OK
    plan = load_plan(args.plan)
    sys.stderr.write(f"valid: {plan.plan_id}: {len(plan.tasks())} tasks\n")
    return EXIT_OK
