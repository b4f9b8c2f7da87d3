"""Signed stream names (Rails ``ActiveSupport::MessageVerifier``, SHA256, JSON serializer).

Format (spec §8.2)::

    base64(json(stream)) + "--" + hex(hmac_sha256(secret, base64_text))

Verification is hardened per security.md §D2: length checked before any HMAC work,
constant-time comparison on bytes, strict Base64, strict UTF-8, JSON parsing guarded against
``RecursionError``, the payload must be a JSON string, and an empty secret is never used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from .errors import InvalidSignature

__all__ = ["DEFAULT_MAX_SIGNED_LENGTH", "sign_stream_name", "verify_signed_stream_name"]

#: Default upper bound on the length of a signed stream name (characters).
DEFAULT_MAX_SIGNED_LENGTH = 8192

_SEPARATOR = "--"


def _key_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    return secret.encode("utf-8")


def _hex_digest(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).hexdigest().encode("ascii")


def sign_stream_name(stream: str, secret: str | bytes) -> str:
    """Sign ``stream`` the way turbo-rails / AnyCable do.

    Raises ``ValueError`` if ``stream`` contains lone surrogates (it has no UTF-8 form; the
    verifier would reject such a payload anyway). Signing with an empty secret is allowed
    so that tests can prove the verifier refuses it.
    """
    payload = json.dumps(stream, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    encoded = base64.b64encode(payload)
    digest = _hex_digest(_key_bytes(secret), encoded)
    return f"{encoded.decode('ascii')}{_SEPARATOR}{digest.decode('ascii')}"


def verify_signed_stream_name(
    signed: str, secret: str | bytes, *, max_length: int = DEFAULT_MAX_SIGNED_LENGTH
) -> str:
    """Return the stream name carried by ``signed`` or raise :class:`InvalidSignature`.

    Never raises anything else, whatever ``signed`` contains.
    """
    if not isinstance(secret, str | bytes) or len(secret) == 0:
        raise InvalidSignature("no secret configured")
    if not isinstance(signed, str):
        raise InvalidSignature("not a string")
    if len(signed) > max_length:
        raise InvalidSignature("too long")
    parts = signed.split(_SEPARATOR)
    if len(parts) != 2:
        raise InvalidSignature("malformed")
    data, given = parts
    if not data or not given or not data.isascii():
        # Standard Base64 is ASCII; nothing secret-dependent has happened yet.
        raise InvalidSignature("malformed")

    data_bytes = data.encode("ascii")
    expected = _hex_digest(_key_bytes(secret), data_bytes)
    # Bytes on both sides: compare_digest raises TypeError on non-ASCII *str* input.
    given_bytes = given.encode("utf-8", "replace")
    if not hmac.compare_digest(expected, given_bytes):
        raise InvalidSignature("bad signature")

    try:
        raw = base64.b64decode(data_bytes, validate=True)
        text = raw.decode("utf-8")
        value = json.loads(text)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidSignature("undecodable payload") from None
    if not isinstance(value, str):
        raise InvalidSignature("payload is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A JSON "\ud800" escape: no legitimate signer produces lone surrogates.
        raise InvalidSignature("payload is not valid unicode") from None
    return value
