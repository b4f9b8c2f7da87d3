"""The sans-IO core and the auth package never import I/O (also an import-linter contract)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
FORBIDDEN = {"trio", "trio_websocket", "socket", "asyncio", "selectors", "time", "coredis"}
PURE_PACKAGES = ["protocol", "auth", "rpc"]


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_packages_import_no_io(package: str) -> None:
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        for line, module, level in _imports(path):
            top = module.split(".")[0]
            if level == 0 and (top in FORBIDDEN or module.startswith("cableway.transport")):
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {module}")
            if level >= 2 and top == "transport":
                offenders.append(f"{path.relative_to(SRC)}:{line} imports the transport")
    assert offenders == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nfrom ..transport import server\n")
    modules = [(m, lvl) for _, m, lvl in _imports(bad)]
    assert ("trio", 0) in modules
    assert ("transport", 2) in modules


def test_package_ships_py_typed() -> None:
    assert (SRC / "py.typed").is_file()
