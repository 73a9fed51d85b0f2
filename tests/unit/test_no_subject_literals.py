"""Rule N1: only ``bus/subjects.py`` spells out subjects; everything else calls its builders."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import planexe_ax

PACKAGE = Path(planexe_ax.__file__).resolve().parent
ALLOWED = {PACKAGE / "bus" / "subjects.py"}
# "ax.evt.", "ax.task.web", "ns.ax.cmd" and f-string pieces such as ".ax.dlq." all count.
SUBJECT_LITERAL = re.compile(r"(?:^|\.)ax\.(?:task|direct|evt|cmd|dlq)(?:\.|$)")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are docstrings: prose may name a subject, code may not."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def subject_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in ``source`` that looks like an ``ax.`` subject."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and SUBJECT_LITERAL.search(node.value)
    ]


@pytest.mark.parametrize(
    "source",
    [
        'S = "ax.task.web_search"',
        "S = 'ax.evt.>'",
        'def f(e):\n    return f"ax.evt.{e}.x"',
        'def f(ns, e):\n    return f"{ns}.ax.cmd.{e}"',
        'X = ["ax.dlq.coordinator"]',
        'X = "ax.direct"',
    ],
)
def test_detector_finds_subject_literals(source: str) -> None:
    assert subject_literals(source)


@pytest.mark.parametrize(
    "source",
    [
        '"""Events go to ``ax.evt.<execution_id>.<kind>``."""',
        'def f():\n    """ax.task.<capability> offers."""\n    return 1',
        'X = "ax.agents"',
        'X = "max.evt"',
        'X = "tax.task"',
    ],
)
def test_detector_ignores_docstrings_and_other_strings(source: str) -> None:
    assert subject_literals(source) == []


def test_no_subject_literals_outside_bus_subjects() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "bus" / "subjects.py" in files, "the scan must look at the real package"
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}"
        for path in files
        if path not in ALLOWED
        for line, text in subject_literals(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "build subjects with planexe_ax.bus.Subjects instead:\n" + "\n".join(offenders)


def test_subjects_module_is_where_the_templates_live() -> None:
    found = subject_literals((PACKAGE / "bus" / "subjects.py").read_text(encoding="utf-8"))
    assert {"ax.task.{capability}", "ax.evt.{execution_id}.{kind}"} <= {text for _, text in found}
