"""The gateway reads the read model only through its query modules: no SQL, no tables in ws_gateway/."""

from __future__ import annotations

import ast
from pathlib import Path

import planexe_ax.ws_gateway

GATEWAY = Path(planexe_ax.ws_gateway.__file__).parent
FORBIDDEN = ("sqlalchemy", "planexe_ax.readmodel.models", "planexe_ax.readmodel.db", "planexe_ax.readmodel.queries")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN)


def test_gateway_modules_import_no_sqlalchemy_and_no_tables() -> None:
    modules = sorted(GATEWAY.rglob("*.py"))
    assert len(modules) > 5
    offending = {
        str(path.relative_to(GATEWAY)): sorted(name for name in imported_modules(path) if forbidden(name))
        for path in modules
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from planexe_ax.readmodel import models\nimport sqlalchemy.ext.asyncio\n")
    assert {name for name in imported_modules(module) if forbidden(name)} == {
        "planexe_ax.readmodel.models",
        "sqlalchemy.ext.asyncio",
    }
