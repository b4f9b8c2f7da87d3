"""Derived keys (AnyCable ``HMAC(secret, purpose)``) and bearer-token checks.

Every comparison against a key is :func:`hmac.compare_digest` on bytes (security.md §D3 B2).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "API_PURPOSE",
    "BROADCAST_PURPOSE",
    "check_bearer",
    "derive_api_key",
    "derive_broadcast_key",
    "derive_key",
]

#: Purpose string AnyCable uses to derive the HTTP broadcast key from ``--secret``.
BROADCAST_PURPOSE = "broadcast-cable"
#: Purpose string AnyCable uses to derive the REST API key from ``--secret``.
API_PURPOSE = "api-cable"

_PREFIX = b"Bearer "


def derive_key(secret: str, purpose: str) -> str:
    """Lowercase hex HMAC-SHA256 with key = ``secret`` and message = ``purpose`` (UTF-8)."""
    return hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).hexdigest()


def derive_broadcast_key(secret: str) -> str:
    """The broadcast key AnyCable derives from the application secret."""
    return derive_key(secret, BROADCAST_PURPOSE)


def derive_api_key(secret: str) -> str:
    """The REST API key AnyCable-Go 1.6 derives from the application secret when
    ``--api_secret`` is not set (``api/config.go``: ``DeriveSecret``)."""
    return derive_key(secret, API_PURPOSE)


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            # surrogateescape restores raw header bytes a transport may have smuggled in.
            return value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return None
    return None


def check_bearer(authorization: str | bytes | None, key: str) -> bool:
    """True only if ``authorization`` is exactly ``"Bearer " + key``.

    Case-sensitive scheme, exactly one space, no surrounding whitespace. An empty key never
    authenticates. Never raises.
    """
    given = _as_bytes(authorization)
    key_bytes = _as_bytes(key)
    if given is None or not key_bytes:
        return False
    return hmac.compare_digest(given, _PREFIX + key_bytes)
