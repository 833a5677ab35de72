"""The package graph points one way (docs/architecture.md, "Package graph").

Every ``.py`` file under the package roots is parsed with ``ast``; every import, at module level or inside
a function, of one of Dormant's packages is checked against ``ALLOWED``. A function-level import of a
Dormant module (its own package's included) must say why it is lazy with a ``# lazy:`` comment on its
line: imports are not hidden inside functions to dodge a cycle, only deferred for start-up time.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")

ALLOWED: dict[str, frozenset[str]] = {
    "dormant": frozenset(),
    "dormant_layers": frozenset(),
    "dormant_local": frozenset(),
    "dormant_telemetry": frozenset(),
    "dormant_auth": frozenset({"dormant"}),
    "dormant_codegen": frozenset({"dormant", "dormant_catalog", "dormant_layers"}),
    "dormant_catalog": frozenset({"dormant"}),
    "dormant_secrets": frozenset({"dormant", "dormant_catalog"}),
    "dormant_runtime": frozenset(
        {"dormant", "dormant_auth", "dormant_catalog", "dormant_secrets", "dormant_telemetry"}
    ),
    "dormant_sidecar": frozenset(
        {"dormant", "dormant_catalog", "dormant_layers", "dormant_secrets", "dormant_telemetry"}
    ),
    "dormant_controller": frozenset({"dormant", "dormant_catalog", "dormant_telemetry"}),
    "dormant_gateway": frozenset(
        {
            "dormant",
            "dormant_auth",
            "dormant_catalog",
            "dormant_codegen",
            "dormant_layers",
            "dormant_secrets",
            "dormant_telemetry",
        }
    ),
    "dormant_cli": frozenset(
        {
            "dormant",
            "dormant_layers",
            "dormant_local",
            "dormant_auth",
            "dormant_codegen",
            "dormant_catalog",
            "dormant_secrets",
            "dormant_telemetry",
            "dormant_runtime",
            "dormant_sidecar",
            "dormant_controller",
            "dormant_gateway",
        }
    ),
}
"""Which of Dormant's packages each package may import."""

ENTRY_POINTS_ONLY = frozenset({"dormant_gateway", "dormant_sidecar", "dormant_runtime", "dormant_controller"})
"""Processes, not libraries: only the CLI imports them."""

LAZY_MARK = "# lazy:"


@dataclass(frozen=True)
class Import:
    path: str
    line: int
    source: str
    """The importing package."""
    target: str
    """The imported top-level package (after resolving relative imports)."""
    in_function: bool
    text: str


def _package_of(path: Path) -> str | None:
    for root in SOURCE_ROOTS:
        base = ROOT / root
        if base in path.parents:
            top = path.relative_to(base).parts[0]
            return top.removesuffix(".py")
    return None


def imports_of(source: str, package: str, path: str = "<string>", module_depth: int = 1) -> list[Import]:
    """Every import in ``source`` (a module of ``package``, ``module_depth`` levels below the top)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    in_function.add(id(inner))
    found: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                targets = [node.module or ""]
            elif node.level <= module_depth:
                targets = [package]  # a relative import stays inside the package
            else:
                targets = ["<outside the package>"]
        for target in targets:
            top = target.split(".")[0]
            text = lines[node.lineno - 1] if node.lineno - 1 < len(lines) else ""
            found.append(Import(path, node.lineno, package, top, id(node) in in_function, text))
    return found


def _depth(path: Path) -> int:
    for root in SOURCE_ROOTS:
        base = ROOT / root
        if base in path.parents:
            parts = path.relative_to(base).parts
            return len(parts) - (1 if parts[-1] == "__init__.py" else 0)
    return 1


def problems(found: list[Import]) -> list[str]:
    """What is wrong with these imports; empty when they follow the graph."""
    out: list[str] = []
    for imp in found:
        if imp.target == "<outside the package>":
            out.append(f"{imp.path}:{imp.line}: a relative import reaches outside {imp.source}")
            continue
        if imp.target not in ALLOWED:
            continue  # the standard library or a third-party package
        where = f"{imp.path}:{imp.line}: {imp.source} imports {imp.target}"
        if imp.target != imp.source and imp.target not in ALLOWED.get(imp.source, frozenset()):
            out.append(f"{where}, against the package graph (docs/architecture.md)")
        if imp.target in ENTRY_POINTS_ONLY and imp.source not in (imp.target, "dormant_cli"):
            out.append(f"{where}: only dormant_cli may import {imp.target}")
        if imp.in_function and LAZY_MARK not in imp.text:
            out.append(f"{where} inside a function without a '{LAZY_MARK} ...' comment saying why")
    return out


def tree_files() -> list[Path]:
    files: list[Path] = []
    for root in SOURCE_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "generated" in path.parts or "__pycache__" in path.parts:
                continue
            if _package_of(path) in ALLOWED:
                files.append(path)
    return files


def test_every_package_root_is_in_the_graph() -> None:
    packages = {
        p.name
        for root in SOURCE_ROOTS
        for p in (ROOT / root).iterdir()
        if p.is_dir() and p.name.startswith("dormant") and (p / "__init__.py").exists()
    }
    assert packages == set(ALLOWED)


def test_the_tree_follows_the_package_graph() -> None:
    found: list[Import] = []
    for path in tree_files():
        package = _package_of(path)
        assert package is not None
        found += imports_of(path.read_text(), package, str(path.relative_to(ROOT)), _depth(path))
    assert len(found) > 300  # the scan saw the tree
    assert problems(found) == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("dormant", "from dormant_catalog import open_catalog\n", "against the package graph"),
        ("dormant", "def f():\n    import dormant_codegen\n", "against the package graph"),
        ("dormant_catalog", "from dormant_runtime.server import Server\n", "only dormant_cli"),
        ("dormant_runtime", "import dormant_sidecar.runtime\n", "only dormant_cli"),
        ("dormant_sidecar", "from dormant_runtime import control\n", "only dormant_cli"),
        ("dormant_codegen", "from dormant_gateway.upload import publish_zip\n", "only dormant_cli"),
        ("dormant_gateway", "from dormant_cli.build_cmds import publish\n", "against the package graph"),
        ("dormant_catalog", "async def f():\n    from dormant_controller import Controller\n", "only"),
        ("dormant", "def f():\n    from .client import Client\n", "without a '# lazy:"),
        ("dormant_cli", "def f():\n    from dormant_codegen import build\n", "without a '# lazy:"),
        ("dormant", "from ..dormant_catalog import db\n", "reaches outside"),
    ],
)
def test_an_upward_or_hidden_import_fails(package: str, source: str, expected: str) -> None:
    found = problems(imports_of(source, package, f"{package}/synthetic.py"))
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("dormant_runtime", "from dormant import wire\nfrom dormant_catalog.calls import CallStore\n"),
        ("dormant_cli", "def f():\n    from dormant_gateway.main import run  # lazy: start-up time\n"),
        ("dormant_catalog", "import orjson\nimport psycopg\nfrom .db import Database\n"),
    ],
)
def test_allowed_imports_pass(package: str, source: str) -> None:
    assert problems(imports_of(source, package, f"{package}/synthetic.py")) == []
