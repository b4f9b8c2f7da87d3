"""docs/backends.md runs as written; the recipes parse and use only names that exist."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

from cableway.toolkit.broadcaster import Broadcaster

DOCS = Path(__file__).resolve().parents[2] / "docs"
BACKENDS = DOCS / "backends.md"
RECIPES = sorted((DOCS / "recipes").glob("*.md"))


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


def test_backends_snippets_run(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str | None, object]] = []

    def record(self: Broadcaster, body: bytes) -> None:
        sent.append((self.url, self._key, json.loads(body)))

    monkeypatch.setattr(Broadcaster, "_send", record)
    blocks = python_blocks(BACKENDS)
    assert len(blocks) >= 5
    for block in blocks:
        exec(compile(block, str(BACKENDS), "exec"), {"__name__": "docs_snippet"})
    urls = {url for url, _, _ in sent}
    assert urls == {"http://localhost:8080/_broadcast"}
    bodies = [body for _, _, body in sent]
    assert {"stream": "chat/42", "data": '{"text":"Hi","user":42}'} in bodies
    assert {
        "command": "disconnect",
        "payload": {"identifier": '{"user_id":42}', "reconnect": False},
    } in bodies
    assert len(sent) == 7  # 4 sync calls and 3 async ones


def cableway_imports(tree: ast.AST) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cableway"):
            found.extend((node.module or "", alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("path", [BACKENDS, *RECIPES], ids=lambda p: p.name)
def test_doc_python_parses_and_imports_existing_names(path: Path) -> None:
    blocks = python_blocks(path)
    assert blocks
    names = []
    for block in blocks:
        names += cableway_imports(ast.parse(block, filename=str(path)))
    assert names
    for module, name in names:
        imported = importlib.import_module(module)
        assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (
            f"{path.name}: from {module} import {name}"
        )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipes_show_both_stream_sources_and_a_broadcast(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert '<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name=' in text
    assert '<meta name="action-cable-url"' in text
    assert "@hotwired/turbo-rails" in text
    assert "<turbo-stream-source src=" in text
    assert "turbo_signed_stream_name" in text
    # the recipes use the framework integrations (issue 15): the two page helpers and a
    # broadcast, not hand-made tokens and a Broadcaster
    assert "turbo_stream_from" in text
    assert "cable_meta_tag" in text
    assert "broadcast" in text
    assert "# cableway" in text
