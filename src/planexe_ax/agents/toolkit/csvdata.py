"""``manage_csv``: write, append to, import into and filter CSV files in the output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import csv_text, inside, read_csv, rel, write_text
from planexe_ax.agents.toolkit.maps import RESULTS_FILE
from planexe_ax.errors import PermanentError

PROSPECT_COLUMNS = ["business_name", "contact_name", "phone", "email", "town", "state", "website_url", "place_id"]


Operation = Literal["write", "append", "update", "delete", "read", "filter", "import_json"]
OPERATION_WORDS: dict[str, tuple[str, ...]] = {
    "write": ("write", "create", "new", "overwrite", "replace", "save", "export", "store", "generate", "build"),
    "append": ("append", "add", "add_rows", "add_row", "insert", "extend", "log", "record"),
    "update": ("update", "upsert", "merge", "edit", "modify", "set", "enrich"),
    "delete": ("delete", "remove", "delete_rows", "remove_rows", "purge", "exclude"),
    "read": ("read", "get", "load", "view", "list", "show", "open", "fetch", "query", "select", "lookup", "count"),
    "filter": ("filter", "where", "subset", "qualify", "shortlist", "extract"),
    "import_json": ("import_json", "import", "import_results", "from_json", "ingest"),
}
_OPERATION_OF = {word: op for op, words in OPERATION_WORDS.items() for word in words}
ACCEPTED_OPERATIONS = tuple(_OPERATION_OF)
OPERATION_WORD: Any = Literal.__getitem__(ACCEPTED_OPERATIONS)
"""The words ``operation`` accepts, for the JSON schema (agent cards, ``plan schema --actions``)."""
READ_LIMIT = 20


def operation_name(word: str) -> str:
    """The operation a word names (``"Add rows"`` -> ``append``), else the word as given."""
    return _OPERATION_OF.get("_".join(word.strip().lower().replace("-", " ").split()), word)


class ManageCsvParams(BaseModel):
    """Parameters of ``manage_csv``.

    ``write`` replaces the file with ``data``; ``append`` adds ``data`` (new columns are added);
    ``update`` changes the rows whose ``key`` matches a row of ``data`` and appends the others;
    ``delete`` removes the rows that match ``where`` (or whose ``key`` is in ``data``); ``read`` returns
    the rows that match ``where`` (the first 20); ``import_json`` builds the file from the ``results`` of a
    JSON file (default: the Maps search results), skipping rows whose ``key`` is already there;
    ``filter`` writes the rows of ``file_path`` that match ``where`` (equality) and ``min_values``
    (numeric lower bounds) to ``output_path``.
    """

    operation: Operation = Field(
        description="What to do; everyday words name the operations too (create, add, insert, upsert, merge, "
        "remove, get, list, import...), in any case.",
        examples=["write", "create", "append", "update", "delete", "read", "filter", "import_json"],
    )
    file_path: str = Field(default="PROSPECTS.csv", description="CSV file, relative to the output folder.")
    data: list[dict[str, Any]] = Field(
        default_factory=list, description="Rows for write, append, update and delete (one object is one row)."
    )
    columns: list[str] | None = Field(default=None, description="Column order; default: keys in order of appearance.")
    source: str = Field(default=RESULTS_FILE, description="JSON file for import_json: a list, or {'results': [...]}.")
    key: str | None = Field(
        default=None,
        description="Column that identifies a row (import_json, update, delete); default place_id for import_json, "
        "else the first column of data.",
    )
    where: dict[str, str] = Field(default_factory=dict, description="filter, read, delete: column -> exact value.")
    min_values: dict[str, float] = Field(default_factory=dict, description="filter: column -> lowest number kept.")
    output_path: str | None = Field(default=None, description="filter: target file; default <name>_filtered.csv.")

    @field_validator("operation", mode="before", json_schema_input_type=OPERATION_WORD)
    @classmethod
    def _word(cls, value: Any) -> Any:
        return operation_name(value) if isinstance(value, str) else value

    @field_validator("data", mode="before", json_schema_input_type=list[dict[str, Any]] | dict[str, Any] | None)
    @classmethod
    def _one_row(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, dict) else value

    @field_validator("where", mode="before", json_schema_input_type=dict[str, Any] | None)
    @classmethod
    def _text_values(cls, value: Any) -> Any:
        if value is None:
            return {}
        return (
            {k: v if isinstance(v, str) else _cell(v) for k, v in value.items()} if isinstance(value, dict) else value
        )


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


def _key(params: ManageCsvParams, rows: list[dict[str, str]], columns: list[str]) -> str:
    """The column that identifies a row: ``key``, else the first column of ``data`` (or of the file)."""
    if params.key:
        return params.key
    return next(iter(rows[0]), "") if rows else (columns[0] if columns else "")


def _update(target: Path, params: ManageCsvParams) -> tuple[Path, list[str], list[dict[str, str]], int]:
    columns, rows = _load(target)
    new = _clean(params.data)
    key = _key(params, new, columns)
    by_key = {row.get(key, ""): row for row in new}
    merged = [{**row, **by_key.pop(row.get(key, ""), {})} for row in rows]
    added = list(by_key.values())
    return target, _columns(params.columns, columns, new), merged + added, len(new)


def _delete(target: Path, params: ManageCsvParams) -> tuple[Path, list[str], list[dict[str, str]], int]:
    columns, rows = _existing(target, params, "delete")
    if not params.where and not params.data:
        raise PermanentError("delete needs where (column -> value) or data (rows whose key to delete)")
    new = _clean(params.data)
    key = _key(params, new, columns)
    doomed = {row.get(key, "") for row in new} - {""}

    def goes(row: dict[str, str]) -> bool:
        matched = bool(params.where) and all(row.get(c, "") == v for c, v in params.where.items())
        return matched or row.get(key, "") in doomed

    kept = [row for row in rows if not goes(row)]
    return target, params.columns or columns, kept, len(rows) - len(kept)


def _existing(target: Path, params: ManageCsvParams, what: str) -> tuple[list[str], list[dict[str, str]]]:
    if not target.exists():
        raise PermanentError(f"{params.file_path} does not exist; nothing to {what}")
    return _load(target)


def _plan(root: Path, target: Path, params: ManageCsvParams) -> tuple[Path, list[str], list[dict[str, str]], int]:
    """The file to write, its columns and rows, and how many rows the operation added, changed or kept."""
    if params.operation == "update":
        return _update(target, params)
    if params.operation == "delete":
        return _delete(target, params)
    columns, rows = _load(target)
    if params.operation == "write":
        new = _clean(params.data)
        return target, _columns(params.columns, [], new), new, len(new)
    if params.operation == "append":
        new = _clean(params.data)
        return target, _columns(params.columns, columns, new), rows + new, len(new)
    if params.operation == "import_json":
        key = params.key or "place_id"
        known = {r.get(key, "") for r in rows} - {""}
        new = [r for r in _clean(_import_rows(root, params)) if r.get(key, "") not in known]
        cols = _columns(params.columns or (columns or PROSPECT_COLUMNS), columns, [])
        return target, cols, rows + new, len(new)
    columns, rows = _existing(target, params, "filter")
    kept = [r for r in rows if _keep(r, params)]
    out = inside(root, params.output_path or f"{Path(params.file_path).stem}_filtered.csv")
    return out, params.columns or columns, kept, len(kept)


@capability("manage_csv")
async def manage_csv(params: ManageCsvParams, ctx: TaskContext) -> dict[str, Any]:
    """Write, append to, update, delete from, read, import JSON results into, or filter a CSV file."""
    root = ctx.output_dir
    target = inside(root, params.file_path)
    if params.operation == "read":
        columns, rows = _existing(target, params, "read")
        found = [r for r in rows if _keep(r, params)]
        await ctx.progress(100, f"read: {len(found)} of {len(rows)} rows in {target.name}")
        result = {"operation": "read", "file": rel(root, target), "rows": len(found), "columns": columns}
        return {**result, "data": found[:READ_LIMIT], "truncated": len(found) > READ_LIMIT}
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
