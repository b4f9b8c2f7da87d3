"""Pure authentication helpers: signed stream names, JWT identification, derived keys.

No I/O, no clocks: callers pass ``now`` explicitly.
"""

from __future__ import annotations

from .errors import TOKEN_EXPIRED, UNAUTHORIZED, AuthError, InvalidSignature
from .jwt import JWT_ALGORITHMS, decode_identifiers, encode_token
from .keys import check_bearer, derive_api_key, derive_broadcast_key, derive_key
from .signed_streams import sign_stream_name, verify_signed_stream_name

__all__ = [
    "JWT_ALGORITHMS",
    "TOKEN_EXPIRED",
    "UNAUTHORIZED",
    "AuthError",
    "InvalidSignature",
    "check_bearer",
    "decode_identifiers",
    "derive_api_key",
    "derive_broadcast_key",
    "derive_key",
    "encode_token",
    "sign_stream_name",
    "verify_signed_stream_name",
]
