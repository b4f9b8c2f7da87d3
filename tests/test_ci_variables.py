"""The variables CI and the test suite set for themselves never draw the server's
"not read by Cableway" warning (a run under CI would otherwise log it at every start)."""

from __future__ import annotations

import re
from pathlib import Path

from cableway.config import unread_variables

ROOT = Path(__file__).resolve().parent.parent


def test_ci_variables_are_not_reported_as_typos() -> None:
    exported = re.findall(r"^export (CABLEWAY_[A-Z0-9_]+)=", (ROOT / ".ci/run").read_text(), re.M)
    assert exported  # .ci/run does export some: the pattern above still matches its lines
    assert unread_variables(dict.fromkeys(exported, "1")) == []


def test_a_misspelt_variable_is_still_reported() -> None:
    assert unread_variables({"CABLEWAY_REQUIRE_RAILZ": "1"}) != []
