"""The coordinator: plan model checks, the pure DAG and state machine, and the service that runs them."""

from planexe_ax.coordinator.dag import PlanGraph, find_cycle, topological_order
from planexe_ax.coordinator.decide import decide
from planexe_ax.coordinator.engine import Engine
from planexe_ax.coordinator.service import Coordinator
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, ExecutionRun, Offer, WakeAt, apply
from planexe_ax.coordinator.validation import load_plan_file, parse_plan_text, validate_plan

__all__ = [
    "Coordinator",
    "CoreConfig",
    "Effect",
    "Emit",
    "Engine",
    "ExecutionRun",
    "Offer",
    "PlanGraph",
    "WakeAt",
    "apply",
    "decide",
    "find_cycle",
    "load_plan_file",
    "parse_plan_text",
    "topological_order",
    "validate_plan",
]
