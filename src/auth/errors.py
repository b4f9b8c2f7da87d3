"""Exceptions raised by :mod:`cableway.auth`.

Neither exception ever carries a token, a signed value or a secret: ``detail`` and the
messages are short, fixed reasons meant for logs.
"""

from __future__ import annotations

__all__ = ["TOKEN_EXPIRED", "UNAUTHORIZED", "AuthError", "InvalidSignature"]

#: AnyCable disconnect reason for any authentication failure other than expiry.
UNAUTHORIZED = "unauthorized"
#: AnyCable disconnect reason for a correctly signed token whose ``exp`` has passed.
TOKEN_EXPIRED = "token_expired"


class AuthError(Exception):
    """A connection failed JWT identification.

    ``reason`` is the AnyCable disconnect reason (``"unauthorized"`` or
    ``"token_expired"``); ``detail`` is a log-only hint that never contains the token or
    the secret.
    """

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidSignature(Exception):
    """A signed stream name failed verification (message = short reason, never the secret)."""
