"""Files in an execution's output folder: safe relative paths, atomic writes, stable seeds."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from planexe_ax.errors import PermanentError

_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 48) -> str:
    """A lower-case file-name fragment of ``text`` (``"Marie's Yorkies!"`` -> ``"marie-s-yorkies"``)."""
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-") or "untitled"


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing paths that leave ``root``.

    Raises:
        PermanentError: For absolute paths or ``..`` that escape the folder.
    """
    candidate = (root / relative).resolve()
    base = root.resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(base):
        raise PermanentError(f"path {relative!r} is outside the output folder; give a path relative to it")
    return candidate


def rel(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, with forward slashes (what outputs report)."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def write_text(path: Path, text: str, newline: str = "\n") -> Path:
    """Write ``text`` atomically (temporary file, then rename), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline=newline) as fh:
        fh.write(text)
    tmp.replace(path)
    return path


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def seed(*parts: object) -> bytes:
    """A stable 32-byte digest of ``parts``: simulators derive everything from it, never from global random state."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


class Draw:
    """Deterministic choices drawn from a digest, extended with a counter as needed.

    Args:
        digest: The seed, e.g. from :func:`seed`.
    """

    def __init__(self, digest: bytes) -> None:
        self._digest = digest
        self._n = 0

    def number(self, upper: int) -> int:
        """An integer in ``[0, upper)``."""
        self._n += 1
        block = hashlib.sha256(self._digest + self._n.to_bytes(8, "big")).digest()
        return int.from_bytes(block[:8], "big") % max(1, upper)

    def pick(self, options: list[str] | tuple[str, ...]) -> str:
        """One of ``options``."""
        return options[self.number(len(options))]

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        return low + self.number(high - low + 1)


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """``rows`` as CSV text with a header of ``columns`` (keys not in ``columns`` are left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows
