"""``manage_csv``: write, append to, import into and filter CSV files in the output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import csv_text, inside, read_csv, rel, write_text
from planexe_ax.agents.toolkit.maps import RESULTS_FILE
from planexe_ax.errors import PermanentError

PROSPECT_COLUMNS = ["business_name", "contact_name", "phone", "email", "town", "state", "website_url", "place_id"]


class ManageCsvParams(BaseModel):
    """Parameters of ``manage_csv``.

    ``write`` replaces the file with ``data``; ``append`` adds ``data`` (new columns are added);
    ``import_json`` builds the file from the ``results`` of a JSON file (default: the Maps search
    results), skipping rows whose ``key`` is already there; ``filter`` writes the rows of ``file_path``
    that match ``where`` (equality) and ``min_values`` (numeric lower bounds) to ``output_path``.
    """

    operation: Literal["write", "append", "import_json", "filter"]
    file_path: str = Field(default="PROSPECTS.csv", description="CSV file, relative to the output folder.")
    data: list[dict[str, Any]] = Field(default_factory=list, description="Rows for write and append.")
    columns: list[str] | None = Field(default=None, description="Column order; default: keys in order of appearance.")
    source: str = Field(default=RESULTS_FILE, description="JSON file for import_json: a list, or {'results': [...]}.")
    key: str = Field(default="place_id", description="Column that identifies a row for import_json de-duplication.")
    where: dict[str, str] = Field(default_factory=dict, description="filter: column -> exact value.")
    min_values: dict[str, float] = Field(default_factory=dict, description="filter: column -> lowest number kept.")
    output_path: str | None = Field(default=None, description="filter: target file; default <name>_filtered.csv.")


def _columns(preferred: list[str] | None, existing: list[str], rows: list[dict[str, str]]) -> list[str]:
    if preferred:
        return list(preferred)
    found = dict.fromkeys(existing)
    for row in rows:
        found.update(dict.fromkeys(row))
    return list(found)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{str(k): _cell(v) for k, v in row.items()} for row in rows]


def _load(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    return read_csv(path) if path.exists() else ([], [])


def _import_rows(root: Path, params: ManageCsvParams) -> list[dict[str, Any]]:
    source = inside(root, params.source)
    if not source.exists():
        raise PermanentError(f"{params.source} is not in the output folder; run search_google_maps first")
    loaded = json.loads(source.read_text(encoding="utf-8"))
    rows = loaded.get("results", []) if isinstance(loaded, dict) else loaded
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PermanentError(f"{params.source} must hold a list of objects, or an object with a 'results' list")
    return rows


def _keep(row: dict[str, str], params: ManageCsvParams) -> bool:
    if any(row.get(col, "") != value for col, value in params.where.items()):
        return False
    for col, low in params.min_values.items():
        try:
            if float(row.get(col) or "nan") < low:
                return False
        except ValueError:
            return False
    return all(row.get(col) for col in params.min_values)


def _plan(root: Path, target: Path, params: ManageCsvParams) -> tuple[Path, list[str], list[dict[str, str]], int]:
    """The file to write, its columns and rows, and how many rows the operation added or kept."""
    columns, rows = _load(target)
    if params.operation == "write":
        new = _clean(params.data)
        return target, _columns(params.columns, [], new), new, len(new)
    if params.operation == "append":
        new = _clean(params.data)
        return target, _columns(params.columns, columns, new), rows + new, len(new)
    if params.operation == "import_json":
        known = {r.get(params.key, "") for r in rows} - {""}
        new = [r for r in _clean(_import_rows(root, params)) if r.get(params.key, "") not in known]
        cols = _columns(params.columns or (columns or PROSPECT_COLUMNS), columns, [])
        return target, cols, rows + new, len(new)
    if not target.exists():
        raise PermanentError(f"{params.file_path} does not exist; nothing to filter")
    kept = [r for r in rows if _keep(r, params)]
    out = inside(root, params.output_path or f"{Path(params.file_path).stem}_filtered.csv")
    return out, params.columns or columns, kept, len(kept)


@capability("manage_csv")
async def manage_csv(params: ManageCsvParams, ctx: TaskContext) -> dict[str, Any]:
    """Write, append to, import JSON results into, or filter a CSV file in the output folder."""
    root = ctx.output_dir
    target = inside(root, params.file_path)
    path, columns, rows, changed = _plan(root, target, params)
    write_text(path, csv_text(columns, rows), newline="")
    await ctx.progress(100, f"{params.operation}: {changed} rows, {len(rows)} in {path.name}")
    return {
        "operation": params.operation,
        "file": rel(root, path),
        "rows": len(rows),
        "changed": changed,
        "columns": columns,
    }
