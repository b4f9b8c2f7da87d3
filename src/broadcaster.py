"""The documented path of :mod:`cableway.toolkit.broadcaster` (re-exported; no code here)."""

from __future__ import annotations

from .toolkit.broadcaster import (
    BroadcastAuthError,
    Broadcaster,
    BroadcastError,
    BroadcastRejected,
    BroadcastUnavailable,
    check_answer,
    disconnect_body,
    encode_data,
    publication,
    publications_body,
    request_headers,
)

__all__ = [
    "BroadcastAuthError",
    "BroadcastError",
    "BroadcastRejected",
    "BroadcastUnavailable",
    "Broadcaster",
    "check_answer",
    "disconnect_body",
    "encode_data",
    "publication",
    "publications_body",
    "request_headers",
]
