"""Load a module that lives under ``fuzz/`` (outside the shipped package) by its path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def load_fuzz_module(relative: str) -> ModuleType:
    """Import ``fuzz/<relative>`` once (cached in ``sys.modules`` under a private name)."""
    path = FUZZ / relative
    name = "_cableway_fuzz_" + relative.removesuffix(".py").replace("/", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
