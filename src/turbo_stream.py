"""The documented path of :mod:`cableway.toolkit.turbo_stream` (re-exported; no code here)."""

from __future__ import annotations

from .toolkit.turbo_stream import (
    after,
    append,
    before,
    escape,
    prepend,
    refresh,
    remove,
    replace,
    turbo_stream,
    update,
)

__all__ = [
    "after",
    "append",
    "before",
    "escape",
    "prepend",
    "refresh",
    "remove",
    "replace",
    "turbo_stream",
    "update",
]
