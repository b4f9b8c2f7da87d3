"""Replay every committed fuzz corpus file through its harness (no atheris needed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = {path.stem.removeprefix("fuzz_"): path for path in FUZZ.glob("fuzz_*.py")}


def _load(name: str) -> Callable[[bytes], None]:
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", HARNESSES[name])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.test_one_input  # type: ignore[no-any-return]


CASES = [
    pytest.param(name, path, id=f"{name}/{path.name}")
    for name in sorted(HARNESSES)
    for path in sorted((FUZZ / "corpus" / name).glob("*"))
]


def test_every_harness_has_a_seed_corpus() -> None:
    assert HARNESSES
    for name in HARNESSES:
        assert any((FUZZ / "corpus" / name).glob("*")), name


@pytest.mark.parametrize(("name", "path"), CASES)
def test_corpus_file_holds_the_invariant(name: str, path: Path) -> None:
    _load(name)(path.read_bytes())
