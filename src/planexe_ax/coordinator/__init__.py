"""The coordinator: the pure state machine over a plan's DAG, and the service that runs it."""

from planexe_ax.coordinator.decide import decide
from planexe_ax.coordinator.engine import Engine
from planexe_ax.coordinator.service import Coordinator
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, ExecutionRun, Offer, WakeAt, apply

__all__ = [
    "Coordinator",
    "CoreConfig",
    "Effect",
    "Emit",
    "Engine",
    "ExecutionRun",
    "Offer",
    "WakeAt",
    "apply",
    "decide",
]
