"""The documented path of :mod:`cableway.toolkit.tokens` (re-exported; no code here)."""

from __future__ import annotations

from .toolkit.tokens import (
    identification_token,
    identifiers_json,
)

__all__ = [
    "identification_token",
    "identifiers_json",
]
