"""Plan tooling: checks, the DAG, the CPM schedule, importers, decomposition and capability matching.

It runs in the CLI and the gateway; the coordinator uses only :mod:`planexe_ax.plans.dag`.
Heavier modules (importers, the LLM decomposer) are imported from their own modules.
"""

from planexe_ax.plans.dag import Edge, PlanGraph, find_cycle, topological_order
from planexe_ax.plans.validation import CheckedPlan, check_plan, load_plan_file, parse_plan_text, validate_plan

__all__ = [
    "CheckedPlan",
    "Edge",
    "PlanGraph",
    "check_plan",
    "find_cycle",
    "load_plan_file",
    "parse_plan_text",
    "topological_order",
    "validate_plan",
]
