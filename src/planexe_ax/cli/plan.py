"""The ``planexe-ax plan ...`` subcommands: validate, schema, import, show and decompose.

Every command that takes a PLAN reads a PlanExe-AX JSON plan, a PlanExe run folder or a ``.zip`` of
one. Problems are raised as :class:`~planexe_ax.errors.PlanValidationError` (or ``ConfigError``);
``cli.main`` prints them as one line on stderr and exits 2. Output goes to stdout on purpose.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from planexe_ax.bus import Plan
from planexe_ax.cli.exit_codes import EXIT_OK
from planexe_ax.config import Settings
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.params import ParamsSchema
from planexe_ax.plans.validation import CheckedPlan

Siblings = Literal["parallel", "sequential"]


def load_plan(
    path: Path,
    strict: bool = False,
    siblings: str = "parallel",
    schemas: Mapping[str, ParamsSchema] | None = None,
) -> Plan:
    """The plan of :func:`load_checked` (warnings left out)."""
    return load_checked(path, strict, siblings, schemas).plan


def load_checked(
    path: Path,
    strict: bool = False,
    siblings: str = "parallel",
    schemas: Mapping[str, ParamsSchema] | None = None,
) -> CheckedPlan:
    """Load and check a plan from a JSON file, a PlanExe run folder or its zip.

    Args:
        path: The plan.
        strict: For a PlanExe run: refuse repairs instead of making them.
        siblings: For a PlanExe run: how level-3 siblings relate (``parallel`` or ``sequential``).
        schemas: Action -> params schema to check every subtask's params with; ``None``: not checked.

    Returns:
        The plan (a PlanExe run comes decomposed by the rule-based decomposer) and its warnings.

    Raises:
        PlanValidationError: naming every problem, one per line.
    """
    from planexe_ax.plans.validation import check_plan

    if path.is_dir() or path.suffix.lower() == ".zip":
        plan, _ = _load(path, strict=strict, siblings=siblings, decompose=True)
        return check_plan(plan, str(path), schemas)
    if not path.exists():
        raise PlanValidationError(f"{path}: no such file or folder")
    from planexe_ax.plans import load_plan_file

    return load_plan_file(path, schemas)


def warn(checked: CheckedPlan, source: str) -> None:
    """Print the plan's warnings on stderr, one line each."""
    for problem in checked.warnings:
        sys.stderr.write(f"warning: {source}: {problem.line()}\n")


def _load(path: Path, *, strict: bool, siblings: str, decompose: bool) -> tuple[Plan, dict[str, Any] | None]:
    """The plan and, for a PlanExe run, its import report."""
    if path.is_dir() or path.suffix.lower() == ".zip":
        from planexe_ax.plans.importers import import_planexe_run
        from planexe_ax.plans.validation import validate_plan

        if siblings not in ("parallel", "sequential"):
            raise PlanValidationError(f"--siblings must be parallel or sequential, not {siblings!r}")
        mode: Siblings = "sequential" if siblings == "sequential" else "parallel"
        result = import_planexe_run(path, strict=strict, siblings=mode, decompose=decompose)
        validate_plan(result.plan, str(path))
        return result.plan, result.report
    if not path.exists():
        raise PlanValidationError(f"{path}: no such file or folder")
    from planexe_ax.plans import load_plan_file

    return load_plan_file(path).plan, None


def add_plan_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``plan ...`` to the top-level parser."""
    plan = sub.add_parser("plan", help="check, import and inspect plans").add_subparsers(
        dest="plan_command", required=True
    )
    validate = plan.add_parser("validate", help="exit 0 when the plan is valid, 2 with the problem otherwise")
    _source_args(validate)
    schema = plan.add_parser("schema", help="print the JSON Schema of the plan format")
    schema.add_argument(
        "--actions",
        action="store_true",
        help="print the params schema of each built-in action instead, with the forms each field accepts",
    )
    imp = plan.add_parser("import", help="import a PlanExe run folder or zip and summarise it")
    _source_args(imp)
    _decomposer_args(imp)
    imp.add_argument("--json", action="store_true", help="print the plan JSON (with its import report)")
    imp.add_argument(
        "--save",
        action="store_true",
        help="put the plan into the catalog of the running services (PLANEXE_NATS_URL or `planexe-ax up`)",
    )
    show = plan.add_parser("show", help="print the whole plan: phases, tasks, subtasks, risks, roles")
    _source_args(show)
    show.add_argument("--json", action="store_true", help="print the plan JSON")
    dec = plan.add_parser("decompose", help="show how each task splits into agent and people work")
    _source_args(dec)
    _decomposer_args(dec)
    dec.add_argument("--redo", action="store_true", help="decompose again tasks that already have subtasks")
    dec.add_argument("--json", action="store_true", help="print the decomposition as JSON")


def _source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", type=Path, help="a JSON plan, a PlanExe run folder or its .zip")
    parser.add_argument("--strict", action="store_true", help="PlanExe run: fail (exit 2) instead of repairing")
    parser.add_argument(
        "--siblings",
        choices=["parallel", "sequential"],
        default="parallel",
        help="PlanExe run: level-3 siblings run in parallel (default) or one after the other",
    )


def _decomposer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--decomposer",
        choices=["rules", "llm"],
        default="rules",
        help="rules (deterministic, default) or llm (OpenAI-compatible API; needs PLANEXE_LLM_BASE_URL)",
    )
    parser.add_argument(
        "--capabilities",
        default=None,
        help="comma-separated actions the agents offer (default: the built-in agents')",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="least confidence of an agent step (0..1)")


async def run_plan_command(args: argparse.Namespace, settings: Settings) -> int:
    """Carry out a ``plan ...`` subcommand; errors are raised as PlanValidationError (exit 2)."""
    if args.plan_command == "schema":
        _write(json.dumps(_actions_schema() if args.actions else Plan.model_json_schema(by_alias=True), indent=2))
        return EXIT_OK
    if args.plan_command == "validate":
        from planexe_ax.cli.schemas import running_schemas

        schemas = await running_schemas(settings)
        checked = load_checked(args.plan, strict=args.strict, siblings=args.siblings, schemas=schemas)
        warn(checked, str(args.plan))
        plan = checked.plan
        sys.stderr.write(f"valid: {plan.plan_id}: {len(plan.tasks())} tasks\n")
        return EXIT_OK
    if args.plan_command == "show":
        plan = load_plan(args.plan, strict=args.strict, siblings=args.siblings)
        return _show(plan, as_json=args.json)
    if args.plan_command == "import":
        return await _import(args, settings)
    return await _decompose(args)


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    from planexe_ax.cli import plan_views

    plan, report = _load(args.plan, strict=args.strict, siblings=args.siblings, decompose=False)
    plan = await _decomposed(plan, args, redo=False)
    if report is not None:
        report = {**report, "decomposition": _summary(plan), "decomposer": args.decomposer}
        plan = plan.model_copy(update={"metadata": {**plan.metadata, "import_report": report}})
    if args.save:
        await _save(plan, str(args.plan), settings)
    if args.json:
        _write(json.dumps(plan.model_dump(by_alias=True, mode="json"), indent=2, ensure_ascii=False))
    else:
        _write("\n".join(plan_views.import_summary(plan, report, str(args.plan))))
    return EXIT_OK


async def _save(plan: Plan, source: str, settings: Settings) -> None:
    """Check the plan as `plan validate` does, then put it into the running catalog."""
    from planexe_ax.cli.catalog import save_plan
    from planexe_ax.cli.schemas import running_schemas
    from planexe_ax.plans.validation import check_plan

    warn(check_plan(plan, source, await running_schemas(settings)), source)
    url = await save_plan(settings, plan)
    sys.stderr.write(f"saved: {plan.plan_id} is in the catalog of {url}\n")


async def _decompose(args: argparse.Namespace) -> int:
    from planexe_ax.cli import plan_views

    plan, _ = _load(args.plan, strict=args.strict, siblings=args.siblings, decompose=False)
    plan = await _decomposed(plan, args, redo=args.redo)
    if args.json:
        _write(json.dumps(plan_views.decomposition_json(plan), indent=2, ensure_ascii=False))
    else:
        plan_views.print_decomposition(plan, plan_views.console())
    return EXIT_OK


def _show(plan: Plan, *, as_json: bool) -> int:
    from planexe_ax.cli import plan_views

    if as_json:
        _write(json.dumps(plan.model_dump(by_alias=True, mode="json"), indent=2, ensure_ascii=False))
    else:
        plan_views.print_plan(plan, plan_views.console())
    return EXIT_OK


async def _decomposed(plan: Plan, args: argparse.Namespace, *, redo: bool) -> Plan:
    """``plan`` with every executable task decomposed by the chosen decomposer and capabilities."""
    from planexe_ax.plans.decompose import decompose_plan, decompose_plan_async, executable_tasks

    if not 0 <= args.threshold <= 1:
        raise PlanValidationError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if redo:
        leaves = {t.task_id for t in executable_tasks(plan)}
        plan = _without_subtasks(plan, leaves)
    capabilities = _capabilities(args.capabilities)
    if args.decomposer == "rules":
        return decompose_plan(plan, capabilities=capabilities, threshold=args.threshold)
    return await decompose_plan_async(
        plan, _llm_decomposer(capabilities, args.threshold), capabilities=capabilities, threshold=args.threshold
    )


def _without_subtasks(plan: Plan, task_ids: set[str]) -> Plan:
    phases = [
        phase.model_copy(
            update={
                "tasks": [
                    t.model_copy(update={"subtasks": [], "human_required": False}) if t.task_id in task_ids else t
                    for t in phase.tasks
                ]
            }
        )
        for phase in plan.phases
    ]
    return plan.model_copy(update={"phases": phases})


def _actions_schema() -> dict[str, Any]:
    """Action -> the JSON schema of its params, as the built-in agents' cards carry it."""
    from planexe_ax.agents.toolkit import params_models

    return {action: model.model_json_schema() for action, model in sorted(params_models().items())}


def _builtin_cards() -> list[Any]:
    from planexe_ax.agents import builtin_agents
    from planexe_ax.config import Settings

    return builtin_agents(Settings(), "cli")


def _capabilities(option: str | None) -> frozenset[str]:
    """The actions named by ``--capabilities``, else those of the built-in agents' cards."""
    from planexe_ax.plans.capabilities import capabilities_from_cards

    if option is None:
        return frozenset(capabilities_from_cards(a.card() for a in _builtin_cards()))
    names = frozenset(p.strip() for p in option.split(",") if p.strip())
    if not names:
        raise PlanValidationError("--capabilities needs at least one action name")
    return names


def _llm_decomposer(capabilities: Collection[str], threshold: float) -> Any:
    from planexe_ax.plans.decompose import RuleBasedDecomposer
    from planexe_ax.plans.llm_decompose import CapabilitySpec, LLMDecomposer, LLMSettings

    settings = LLMSettings()
    settings.endpoint()  # a clear ConfigError (exit 2) before any work when the base URL is unset
    specs = {
        c.action: CapabilitySpec(c.action, c.description, c.params_model.model_json_schema(), c.params_model)
        for agent in _builtin_cards()
        for c in agent.capabilities
        if c.action in capabilities
    }
    specs.update({a: CapabilitySpec(a) for a in capabilities if a not in specs})
    fallback = RuleBasedDecomposer(frozenset(capabilities), threshold)
    return LLMDecomposer(settings, specs, fallback=fallback)


def _summary(plan: Plan) -> dict[str, Any]:
    from planexe_ax.plans.decompose import decomposition_summary

    return decomposition_summary(plan)


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
