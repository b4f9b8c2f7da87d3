"""The documented path of :mod:`cableway.toolkit.streams` (re-exported; no code here)."""

from __future__ import annotations

from .toolkit.streams import (
    InvalidSignature,
    gid_param,
    sign_stream_name,
    signed_stream_name,
    stream_name_from,
    verify_signed_stream_name,
)

__all__ = [
    "InvalidSignature",
    "gid_param",
    "sign_stream_name",
    "signed_stream_name",
    "stream_name_from",
    "verify_signed_stream_name",
]
