"""The paths the docs show (``from cableway.streams import ...``) keep working after the
toolkit moved to ``cableway.toolkit``: the same objects, every public name."""

from __future__ import annotations

import importlib

import pytest

NAMES = ["streams", "tokens", "broadcaster", "turbo_stream", "integration"]


@pytest.mark.parametrize("name", NAMES)
def test_the_documented_path_re_exports_every_public_name(name: str) -> None:
    old = importlib.import_module(f"cableway.{name}")
    new = importlib.import_module(f"cableway.toolkit.{name}")
    assert old.__all__ == new.__all__
    for attribute in new.__all__:
        assert getattr(old, attribute) is getattr(new, attribute)
