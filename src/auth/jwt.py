"""JWT identification (spec §9, security.md §D1).

A token is accepted when it is an HMAC-signed JWS (HS256/HS384/HS512) whose payload carries
``ext``: a string holding the JSON-encoded connection identifiers (a JSON object). ``exp``
and ``nbf`` are checked against the caller-supplied ``now`` (no leeway, no wall clock);
``iat``, ``sub``, ``jti``, ``aud`` and ``iss`` are deliberately not validated.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import TYPE_CHECKING, Any

import jwt as pyjwt

from .errors import TOKEN_EXPIRED, UNAUTHORIZED, AuthError

if TYPE_CHECKING:
    from jwt.types import Options

__all__ = ["DEFAULT_MAX_TOKEN_LENGTH", "JWT_ALGORITHMS", "decode_identifiers", "encode_token"]

#: The only algorithms ever accepted (or produced).
JWT_ALGORITHMS: tuple[str, ...] = ("HS256", "HS384", "HS512")
#: Default upper bound on token length (characters), checked before any parsing.
DEFAULT_MAX_TOKEN_LENGTH = 8192

# PyJWT checks exp/nbf/iat against its own clock and validates sub/jti/aud/iss types;
# we switch all of that off and check exp/nbf ourselves against `now`.
_DECODE_OPTIONS: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}

# Everything PyJWT or the stdlib parsers may raise on hostile input.
_DECODE_FAILURES: tuple[type[BaseException], ...] = (
    pyjwt.PyJWTError,
    ValueError,
    TypeError,
    RecursionError,
    OverflowError,
    KeyError,
    IndexError,
    AttributeError,
)


def _numeric_date(value: object) -> float | None:
    """A JSON NumericDate, or None if it is not a finite number (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # PyJWT's json.loads accepts NaN/Infinity literals
    return value  # ints of any size compare exactly against `now`


def decode_identifiers(
    token: str,
    secret: str | bytes,
    *,
    now: float,
    max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
) -> str:
    """Verify ``token`` and return its ``ext`` claim (the identifiers JSON string).

    Raises :class:`AuthError` with reason ``"token_expired"`` for a correctly signed token
    whose ``exp`` is at or before ``now``, and ``"unauthorized"`` for everything else.
    No other exception escapes.
    """
    if not isinstance(secret, str | bytes) or len(secret) == 0:
        raise AuthError(UNAUTHORIZED, "no secret configured")
    if not isinstance(token, str):
        raise AuthError(UNAUTHORIZED, "token is not a string")
    if len(token) > max_token_length:
        raise AuthError(UNAUTHORIZED, "token too long")
    if not token.isascii():
        raise AuthError(UNAUTHORIZED, "token is not ASCII")

    try:
        with warnings.catch_warnings():
            # Users run with short secrets (`qwerty`); that is a config-time concern.
            warnings.simplefilter("ignore", pyjwt.InsecureKeyLengthWarning)
            claims = pyjwt.decode(
                token,
                secret,
                algorithms=list(JWT_ALGORITHMS),
                options=_DECODE_OPTIONS,
            )
    except _DECODE_FAILURES as exc:
        raise AuthError(UNAUTHORIZED, f"invalid token ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise AuthError(UNAUTHORIZED, "claims are not an object")

    # The signature is valid from here on.
    if "exp" in claims:
        exp = _numeric_date(claims["exp"])
        if exp is None:
            raise AuthError(UNAUTHORIZED, "exp is not a number")
        if exp <= now:
            raise AuthError(TOKEN_EXPIRED, "token expired")
    if "nbf" in claims:
        nbf = _numeric_date(claims["nbf"])
        if nbf is None:
            raise AuthError(UNAUTHORIZED, "nbf is not a number")
        if nbf > now:
            raise AuthError(UNAUTHORIZED, "token not yet valid")

    ext = claims.get("ext")
    if not isinstance(ext, str):
        raise AuthError(UNAUTHORIZED, "ext claim missing or not a string")
    try:
        identifiers = json.loads(ext)
    except (ValueError, RecursionError):
        raise AuthError(UNAUTHORIZED, "ext is not JSON") from None
    if not isinstance(identifiers, dict):
        raise AuthError(UNAUTHORIZED, "ext is not a JSON object")
    return ext


def encode_token(
    identifiers: dict[str, object] | str,
    secret: str | bytes,
    *,
    exp: float | None = None,
    algorithm: str = "HS256",
) -> str:
    """Build an identification token (for tests and the app toolkit).

    ``ext`` = ``identifiers`` if it is already a string, else its compact JSON encoding;
    ``exp`` (unix seconds) is truncated to an int. Raises ``ValueError`` for a non-HMAC
    algorithm or an empty secret.
    """
    if algorithm not in JWT_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}; use one of {JWT_ALGORITHMS}")
    if len(secret) == 0:
        raise ValueError("refusing to sign with an empty secret")
    ext = (
        identifiers
        if isinstance(identifiers, str)
        else json.dumps(identifiers, separators=(",", ":"))
    )
    claims: dict[str, Any] = {"ext": ext}
    if exp is not None:
        claims["exp"] = int(exp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pyjwt.InsecureKeyLengthWarning)
        return pyjwt.encode(claims, secret, algorithm=algorithm)
