"""PlanExe-AX: execute PlanExe plans with a mesh of AI agents and people."""

__version__ = "0.1.0"

__all__ = ["__version__"]
