"""Start atheris on a harness, instrumenting only the code under test (fast start-up).

``atheris.instrument_all()`` instruments every loaded function, trio included, which
costs tens of seconds per start. A harness ends with::

    if __name__ == "__main__":
        from atheris_main import fuzz

        fuzz(__file__, ["cableway", "h11"])

and :func:`fuzz` re-imports the listed packages and the harness itself under
``atheris.instrument_imports``, then fuzzes the harness's ``test_one_input``. (The
script's folder is on ``sys.path`` when run as ``python fuzz/fuzz_x.py``.)
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import NoReturn


def fuzz(harness_file: str, packages: Sequence[str]) -> NoReturn:
    import atheris

    roots = set(packages)
    for name in list(sys.modules):
        if name.split(".")[0] in roots:
            del sys.modules[name]
    with atheris.instrument_imports(include=list(packages)):
        spec = importlib.util.spec_from_file_location("harness_under_fuzz", harness_file)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    atheris.Setup(sys.argv, module.test_one_input)
    atheris.Fuzz()
    raise SystemExit(0)
