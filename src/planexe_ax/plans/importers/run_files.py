"""The files of a PlanExe run folder or zip, found by the name after their numeric prefix.

PlanExe wrote ``018-5-wbs_level2.json`` until April 2026 and ``wbs_level2.json`` after; older runs used
other prefixes again. :func:`canonical_name` strips any ``<digits>(-<digits>)*-`` prefix so that all of
them match the same name. A zip may hold the run inside a folder; ``__MACOSX/`` and dot files are ignored.
When two files share a canonical name, the one nearest the top (then the first by path) wins.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from planexe_ax.errors import PlanValidationError

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^\d+(?:-\d+)*-")
MAX_FILE_BYTES = 64 * 1024 * 1024


class PlanImportError(PlanValidationError):
    """A PlanExe run cannot be imported: required files are missing, or a file is corrupt.

    The message names the files and the problem (for JSON, the line and column).
    """


def canonical_name(filename: str) -> str:
    """The file name without PlanExe's numeric prefix (``018-5-wbs_level2.json`` -> ``wbs_level2.json``)."""
    return _PREFIX.sub("", filename, count=1)


def _ignored(parts: tuple[str, ...]) -> bool:
    return any(part == "__MACOSX" or part.startswith(".") for part in parts)


@dataclass(frozen=True)
class RunFiles:
    """The readable files of one run, by canonical name.

    Attributes:
        source: The folder or zip path, for messages.
        entries: Canonical name -> (path shown in messages, content).
        used: Canonical names read so far (filled as files are read).
    """

    source: str
    entries: dict[str, tuple[str, bytes]]
    used: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> RunFiles:
        """Read a run folder or a ``.zip`` of one.

        Args:
            path: The folder or zip file.

        Returns:
            The files found.

        Raises:
            PlanImportError: when the path does not exist or the zip cannot be read.
        """
        if path.is_dir():
            found = [
                (p.relative_to(path).parts, p.read_bytes())
                for p in sorted(path.rglob("*"))
                if p.is_file() and not _ignored(p.relative_to(path).parts)
            ]
        elif path.is_file() and zipfile.is_zipfile(path):
            found = _read_zip(path)
        elif path.exists():
            raise PlanImportError(f"{path}: not a PlanExe run folder or a .zip of one")
        else:
            raise PlanImportError(f"{path}: no such file or folder")
        entries: dict[str, tuple[str, bytes]] = {}
        for parts, data in sorted(found, key=lambda item: (len(item[0]), item[0])):
            entries.setdefault(canonical_name(parts[-1]), (str(PurePosixPath(*parts)), data))
        log.debug("%s: %d files", path, len(entries))
        return cls(source=str(path), entries=entries)

    def has(self, name: str) -> bool:
        """Whether a file with this canonical name exists."""
        return name in self.entries

    def names(self, prefix: str) -> list[str]:
        """Canonical names that start with ``prefix``, sorted."""
        return sorted(n for n in self.entries if n.startswith(prefix))

    def display(self, name: str) -> str:
        """The path of the file in the run, as shown in messages."""
        return self.entries[name][0]

    def text(self, name: str) -> str:
        """The file as UTF-8 text.

        Raises:
            PlanImportError: when the file is not UTF-8.
        """
        shown, data = self.entries[name]
        if name not in self.used:
            self.used.append(name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlanImportError(f"{self.source}: {shown}: not UTF-8 text at byte {exc.start}") from exc

    def json(self, name: str) -> Any:
        """The file parsed as JSON.

        Raises:
            PlanImportError: naming the file, line and column when the JSON is broken.
        """
        text = self.text(name)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            shown = self.display(name)
            raise PlanImportError(
                f"{self.source}: {shown}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc

    def corrupt(self, name: str, problem: str) -> PlanImportError:
        """An error that names the file and what is wrong with its content."""
        return PlanImportError(f"{self.source}: {self.display(name)}: {problem}")


def _read_zip(path: Path) -> list[tuple[tuple[str, ...], bytes]]:
    found: list[tuple[tuple[str, ...], bytes]] = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                parts = PurePosixPath(info.filename).parts
                if info.is_dir() or not parts or _ignored(parts):
                    continue
                if info.file_size > MAX_FILE_BYTES:
                    raise PlanImportError(f"{path}: {info.filename}: larger than {MAX_FILE_BYTES} bytes")
                found.append((parts, archive.read(info)))
    except (zipfile.BadZipFile, OSError) as exc:
        raise PlanImportError(f"{path}: cannot read the zip: {exc}") from exc
    return found
