"""Importers: turn a plan source (a PlanExe run folder or zip, or a PlanExe-AX JSON plan) into a Plan."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from planexe_ax.plans.importers.planexe_run import ImportResult, import_planexe_run
from planexe_ax.plans.importers.run_files import PlanImportError, canonical_name

__all__ = ["ImportResult", "PlanImportError", "canonical_name", "import_planexe_run", "load_plan_source"]


def load_plan_source(
    path: Path, *, strict: bool = False, siblings: Literal["parallel", "sequential"] = "parallel"
) -> ImportResult:
    """Import the plan at ``path``, whatever its form.

    Args:
        path: A PlanExe run folder, a ``.zip`` of one, or a ``.json`` plan.
        strict: Raise instead of repairing.
        siblings: How level-3 siblings of a PlanExe run relate (``parallel`` or ``sequential``).

    Returns:
        The plan, the repairs made and the import report.

    Raises:
        NotImplementedError: for a ``.json`` plan (read by ``plans.validation``).
        PlanImportError: when the folder or zip is incomplete or corrupt, or the path does not exist.
        PlanValidationError: in strict mode, when the run needs repairs.
    """
    if path.suffix.lower() == ".json" and not path.is_dir():
        raise NotImplementedError(f"{path}: JSON plans are read by planexe_ax.plans.validation.load_plan_file")
    return import_planexe_run(path, strict=strict, siblings=siblings)
