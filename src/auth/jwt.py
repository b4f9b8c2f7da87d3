"""JWT identification (spec §9, security.md §D1).

A token is accepted when it is an HMAC-signed JWS (HS256/HS384/HS512) whose payload carries
``ext``: a string holding the JSON-encoded connection identifiers (a JSON object). ``exp``
and ``nbf`` are checked against the caller-supplied ``now`` (no leeway, no wall clock);
``iat``, ``sub``, ``jti``, ``aud`` and ``iss`` are deliberately not validated.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jwt as pyjwt
from jwt.algorithms import HMACAlgorithm

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


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


#: the header segments of the common tokens (PyJWT's, ruby-jwt's, jsonwebtoken's) and
#: their hash: a token with another header goes through PyJWT
_HEADERS: dict[str, Callable[[], Any]] = {
    _b64url(template.replace("ALG", alg).encode()).decode(): digest
    for alg, digest in zip(
        JWT_ALGORITHMS, (hashlib.sha256, hashlib.sha384, hashlib.sha512), strict=True
    )
    for template in ('{"alg":"ALG","typ":"JWT"}', '{"typ":"JWT","alg":"ALG"}', '{"alg":"ALG"}')
}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


@functools.lru_cache(maxsize=8)
def _hmac_key(secret: str | bytes) -> bytes | None:
    """``secret`` as PyJWT's HMAC takes it, or ``None`` when PyJWT refuses it (a PEM or
    SSH key, say): then every token goes through PyJWT, which refuses it."""
    try:
        key: bytes = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except pyjwt.PyJWTError:
        return None
    return key


def _fast_claims(token: str, secret: str | bytes) -> dict[str, Any] | None:
    """The claims of an ASCII ``token`` of the common shape that PyJWT accepts, without
    PyJWT's generic machinery; ``None`` for anything else (then PyJWT decides, so every
    refusal and its error kind stay PyJWT's).

    The common shape: exactly three segments, a header of :data:`_HEADERS`, a signature
    that is the canonical (unpadded) base64url of the right HMAC, a canonical base64url
    payload holding a JSON object. ``tests/auth/test_jwt_fast.py`` and
    ``fuzz/fuzz_jwt_fast.py`` check that PyJWT returns the same claims for it.
    """
    header, _, rest = token.partition(".")
    digest = _HEADERS.get(header)
    if digest is None:
        return None
    payload, dot, signature = rest.partition(".")
    if not dot or "." in signature:
        return None
    key = _hmac_key(secret)
    if key is None:
        return None
    mac = hmac.new(key, f"{header}.{payload}".encode("ascii"), digest).digest()
    if not hmac.compare_digest(_b64url(mac), signature.encode("ascii")):
        return None  # PyJWT says why (a bad signature, a malformed segment...)
    if len(payload) % 4 == 1 or not _B64URL.fullmatch(payload):
        return None
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if _b64url(raw) != payload.encode("ascii"):
        return None  # not canonical: PyJWT refuses it
    try:
        claims = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


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

    claims = _fast_claims(token, secret)
    if claims is None:
        claims = _decode(token, secret)
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


def _decode(token: str, secret: str | bytes) -> Any:
    """The claims of ``token`` by PyJWT; :class:`AuthError` for whatever it refuses."""
    try:
        with warnings.catch_warnings():
            # Users run with short secrets (`qwerty`); that is a config-time concern.
            warnings.simplefilter("ignore", pyjwt.InsecureKeyLengthWarning)
            return pyjwt.decode(
                token,
                secret,
                algorithms=list(JWT_ALGORITHMS),
                options=_DECODE_OPTIONS,
            )
    except _DECODE_FAILURES as exc:
        raise AuthError(UNAUTHORIZED, f"invalid token ({type(exc).__name__})") from None


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
