"""The layout's import rules.

Rule 1: only ``bus/`` knows NATS: no module outside it imports ``nats`` or uses ``Bus.js`` / ``Bus.nc``.
The gateway holds no SQL: ``ws_gateway/`` reads through ``readmodel/``'s query modules and schemas, never
SQLAlchemy or the read model's tables, engines and shared internals.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import planexe_ax

PACKAGE = Path(planexe_ax.__file__).resolve().parent
BUS = PACKAGE / "bus"
RAW_CLIENT = frozenset({"js", "nc"})
GATEWAY = PACKAGE / "ws_gateway"
READ_SIDE_INTERNALS = (
    "sqlalchemy",
    "planexe_ax.readmodel.models",
    "planexe_ax.readmodel.db",
    "planexe_ax.readmodel.queries",
)


def nats_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) of every import of ``nats`` and every ``.js`` / ``.nc`` attribute in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] == "nats"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "nats":
            found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Attribute) and node.attr in RAW_CLIENT:
            found.append((node.lineno, f".{node.attr} (the raw NATS client of a Bus)"))
    return sorted(found)


@pytest.mark.parametrize(
    "source",
    [
        "import nats",
        "import nats.errors as e",
        "from nats.aio.msg import Msg",
        "from nats import errors",
        "def f(bus):\n    return bus.js.stream_info('s')",
        "async def f(gw):\n    await gw.bus.nc.flush()",
    ],
)
def test_the_check_finds_nats_and_the_raw_client(source: str) -> None:
    assert nats_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "from planexe_ax.bus import Bus",
        "import natsort",
        "from .nats import x",
        "TYPES = {'.js': 'text/javascript'}",
        "def f(bus):\n    return bus.subjects.events_stream",
    ],
)
def test_the_check_leaves_everything_else(source: str) -> None:
    assert nats_uses(source) == []


def test_only_bus_knows_nats() -> None:
    outside = [path for path in sorted(PACKAGE.rglob("*.py")) if BUS not in path.parents]
    assert len(outside) > 50, "the package was not found where expected"
    offences = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in outside
        for line, what in nats_uses(path.read_text(encoding="utf-8"))
    ]
    assert offences == [], "NATS used outside planexe_ax/bus (add what is needed to bus/):\n" + "\n".join(offences)


def sql_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) of every import of SQLAlchemy or of the read model's tables, engines or shared internals."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        bad = [n for n in names if any(n == x or n.startswith(f"{x}.") for x in READ_SIDE_INTERNALS)]
        if bad:
            found.append((node.lineno, f"imports {bad[0]}"))
    return sorted(found)


@pytest.mark.parametrize(
    "source",
    [
        "import sqlalchemy",
        "from sqlalchemy.ext.asyncio import AsyncSession",
        "from planexe_ax.readmodel.models import AgentRow",
        "from planexe_ax.readmodel import models",
        "from planexe_ax.readmodel.queries import read_checkpoint",
    ],
)
def test_the_check_finds_sql_in_the_gateway(source: str) -> None:
    assert sql_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "from planexe_ax.readmodel import Sessions, read_model",
        "from planexe_ax.readmodel import catalog, executions",
        "from planexe_ax.readmodel.schemas import ExecutionDetail",
        "import sqlalchemyish",
    ],
)
def test_the_check_leaves_the_query_modules(source: str) -> None:
    assert sql_uses(source) == []


def test_the_gateway_holds_no_sql() -> None:
    modules = sorted(GATEWAY.rglob("*.py"))
    assert len(modules) > 5, "the gateway was not found where expected"
    offences = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in modules
        for line, what in sql_uses(path.read_text(encoding="utf-8"))
    ]
    assert offences == [], "SQL in the gateway (add a query to readmodel/):\n" + "\n".join(offences)


# Which packages each package may import (the import rules of AGENTS.md). Services share libraries, never
# each other: bus (the wire), plans (plan tooling), readmodel (tables, projection, queries), common (what
# several need and none owns), the agent SDK (agents) and webhooks' target check; cli composes them all.
BASICS = frozenset({"config", "errors"})
ALLOWED: dict[str, frozenset[str]] = {
    "bus": BASICS,
    "common": BASICS | {"bus"},
    "plans": BASICS | {"bus"},
    "readmodel": BASICS | {"bus", "plans", "common"},
    "coordinator": BASICS | {"bus", "plans", "common"},
    "agents": BASICS | {"bus", "common"},
    "projector": BASICS | {"bus", "readmodel", "common"},
    "notifier": BASICS | {"bus", "readmodel", "common"},
    "webhooks": BASICS | {"bus", "readmodel", "common"},
    "ws_gateway": BASICS | {"bus", "readmodel", "plans", "common", "agents", "webhooks"},
    "cli": BASICS
    | {
        "bus",
        "readmodel",
        "plans",
        "common",
        "agents",
        "coordinator",
        "projector",
        "notifier",
        "webhooks",
        "ws_gateway",
    },
}


def package_imports(path: Path) -> list[tuple[int, str]]:
    """(line, package) of every ``planexe_ax.<package>`` the module at ``path`` imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "planexe_ax":
            names = [f"planexe_ax.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[1]) for name in names if name.startswith("planexe_ax.")]
    return found


def test_every_package_has_a_rule() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), "add the new package to ALLOWED (and to AGENTS.md's import rules)"


def test_packages_import_only_what_the_layout_allows() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / package).rglob("*.py")):
            wrong += [
                f"{path.relative_to(PACKAGE.parent)}:{line}: {package} imports {target}"
                for line, target in package_imports(path)
                if target != package and target not in allowed and target != "__version__"
            ]
    assert not wrong, "\n".join(wrong)
