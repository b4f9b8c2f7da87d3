# Invariant: the JWT fast path accepts only what PyJWT accepts, with the same claims.
"""Fuzz the JWT fast path (``cableway.auth.jwt._fast_claims``) against PyJWT.

The first byte picks the mode:

* ``0x00``-``0x7F``: the rest (UTF-8, invalid bytes replaced) is the token;
* ``0x80``-``0xFF``: the rest is split on ``0xFF`` into a header, a payload and a
  suffix; the header and payload are base64url-encoded and **correctly signed** with the
  key (HS256/384/512 from the mode byte), then the suffix is appended to the payload
  segment (junk, padding, dots), so the fuzzer gets past the signature into the segments'
  and the claims' handling.

Invariant: when the fast path returns claims, PyJWT (with the options
``decode_identifiers`` uses) accepts the token with the same claims; and
``decode_identifiers`` returns the ``ext`` claim or raises ``AuthError`` only.

Run: ``python fuzz/fuzz_jwt_fast.py -runs=100000 -max_len=2048 fuzz/corpus/jwt_fast/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from typing import Any

import jwt as pyjwt

from cableway.auth.errors import AuthError
from cableway.auth.jwt import _DECODE_OPTIONS, JWT_ALGORITHMS, _fast_claims, decode_identifiers

KEY = "fuzz-jwt-secret-of-at-least-32-bytes!!"
_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pyjwt_claims(token: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pyjwt.decode(
                token, KEY, algorithms=list(JWT_ALGORITHMS), options=_DECODE_OPTIONS
            )
    except Exception:
        return None


def token_of(data: bytes) -> str:
    if not data or data[0] < 0x80:
        return data[1:].decode("utf-8", "replace")
    alg = JWT_ALGORITHMS[(data[0] - 0x80) % 3]
    header, _, rest = data[1:].partition(b"\xff")
    payload, _, suffix = rest.partition(b"\xff")
    h = b64url(header)
    p = b64url(payload) + suffix.decode("latin-1")
    mac = hmac.new(KEY.encode(), f"{h}.{p}".encode("utf-8", "replace"), _HASHES[alg]).digest()
    return f"{h}.{p}.{b64url(mac)}"


def test_one_input(data: bytes) -> None:
    token = token_of(data)
    if token.isascii():
        fast = _fast_claims(token, KEY)
        if fast is not None:
            assert fast == pyjwt_claims(token), token
    try:
        result = decode_identifiers(token, KEY, now=1_700_000_000.0)
    except AuthError:
        return
    assert isinstance(result, str)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "jwt"])
