"""Cableway: an AnyCable-compatible Action Cable / Turbo Streams server on trio."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
