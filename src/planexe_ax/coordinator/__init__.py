"""The coordinator: the pure state machine over a plan's DAG, and the service that runs it."""

from planexe_ax.coordinator.core import CoordinatorCore
from planexe_ax.coordinator.decide import decide
from planexe_ax.coordinator.partitions import PartitionedCoordinator
from planexe_ax.coordinator.service import Coordinator
from planexe_ax.coordinator.state import CoreConfig, Effect, Emit, ExecutionRun, GoOn, Offer, WakeAt, apply

__all__ = [
    "Coordinator",
    "CoordinatorCore",
    "CoreConfig",
    "Effect",
    "Emit",
    "ExecutionRun",
    "GoOn",
    "Offer",
    "PartitionedCoordinator",
    "WakeAt",
    "apply",
    "decide",
]
