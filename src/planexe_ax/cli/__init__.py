"""The ``planexe-ax`` command: argument parsing, the plan, exec and inbox commands, and the composition root."""

from planexe_ax.cli.main import example_plan_path, main
from planexe_ax.cli.plan import load_plan

__all__ = ["example_plan_path", "load_plan", "main"]
