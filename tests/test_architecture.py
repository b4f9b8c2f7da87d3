"""The shape of the package: the pure packages (the sans-IO core, auth and the node
layer) never import I/O (also an import-linter contract), and no import cycle exists
anywhere in it, counting imports under ``TYPE_CHECKING`` and inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
FORBIDDEN = {"trio", "trio_websocket", "socket", "asyncio", "selectors", "time", "coredis"}
PURE_PACKAGES = ["protocol", "auth", "node", "rpc"]
#: no module of the package grows past this many lines (one concern per module), and
#: none is excepted
MAX_LINES = 650


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


def _module_names(root: Path) -> dict[str, Path]:
    """``cableway.x.y`` -> file, for every module under ``root`` (mapped to ``cableway``)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(["cableway", *parts])] = path
    return modules


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports: every ``import``, at module level,
    inside functions and under ``TYPE_CHECKING`` alike (a cycle hidden there is still a
    cycle: the modules cannot be understood, tested or moved apart)."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    prefix = package[: len(package) - (node.level - 1)]
                    base = ".".join(prefix + ([base] if base else []))
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a module importing its own package's __init__ (or itself) is no edge
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                child = pending.pop()
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, sorted(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(SRC)) == []


def test_the_cycle_check_sees_type_checking_and_function_imports(tmp_path: Path) -> None:
    """A cycle closed only under TYPE_CHECKING or inside a function is still found."""
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n"
    )
    (tmp_path / "c.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "d.py").write_text("from . import a\n")  # depends on the cycle, not in it
    assert cycles(import_graph(tmp_path)) == [["cableway.a", "cableway.b", "cableway.c"]]
    (tmp_path / "c.py").write_text("def f():\n    return 1\n")
    assert cycles(import_graph(tmp_path)) == []


def oversized(root: Path) -> list[str]:
    """Every module under ``root`` longer than :data:`MAX_LINES`."""
    return [
        f"{path.relative_to(root)}: {lines} lines"
        for path in sorted(root.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    ]


def test_no_module_is_over_the_size_limit() -> None:
    assert oversized(SRC) == []


def test_the_size_check_sees_every_package(tmp_path: Path) -> None:
    """Any folder, however deep, the state machine's too; a module at the cap passes."""
    (tmp_path / "tools" / "check").mkdir(parents=True)
    (tmp_path / "tools" / "check" / "suite.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "protocol").mkdir()
    (tmp_path / "protocol" / "connection.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "cli.py").write_text("x = 1\n" * MAX_LINES)
    assert oversized(tmp_path) == [
        f"protocol/connection.py: {MAX_LINES + 1} lines",
        f"tools/check/suite.py: {MAX_LINES + 1} lines",
    ]


def test_every_package_is_listed_for_installation() -> None:
    """A non-editable install ships only what pyproject lists: every folder of src/ with an
    ``__init__.py`` must be there (a package missing from the list works in the editable
    install the tests use, and is absent for users)."""
    import tomllib

    listed = set(
        tomllib.loads((SRC.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(("cableway", *path.parent.relative_to(SRC).parts))
        for path in SRC.rglob("__init__.py")
    }
    assert found - listed == set()
    assert listed - found == set()
