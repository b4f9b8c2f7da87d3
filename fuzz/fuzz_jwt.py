# Invariant: decode_identifiers returns the ext claim (a JSON object) or raises AuthError only.
"""Fuzz JWT identification (``cableway.auth.jwt.decode_identifiers``).

The first byte picks the mode:

* ``0x00``-``0x7F``: the rest (UTF-8, invalid bytes as lone surrogates) is the token;
* ``0x80``-``0xFF``: the rest is split on ``0xFF`` into a header and a payload that
  are base64url-encoded and **correctly signed** with the key (HS256/384/512 from the
  mode byte), so the fuzzer gets past the signature into the claims handling.

Invariant: the result is a ``str`` holding a JSON object (the ``ext`` claim), or
``AuthError`` with reason ``unauthorized`` / ``token_expired``; ``token_expired`` only
for a correctly signed token; a token signed with another key never passes.

Run: ``python fuzz/fuzz_jwt.py -runs=100000 -max_len=2048 fuzz/corpus/jwt/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cableway.auth.errors import TOKEN_EXPIRED, UNAUTHORIZED, AuthError
from cableway.auth.jwt import decode_identifiers

KEY = "fuzz-jwt-secret-of-at-least-32-bytes!!"
OTHER_KEY = "another-secret-of-at-least-32-bytes!!!"
NOW = 1_700_000_000.0
_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signed_token(header: bytes, payload: bytes, key: str, alg: str) -> str:
    signing_input = b64url(header) + b"." + b64url(payload)
    digest = hmac.new(key.encode(), signing_input, _HASHES[alg]).digest()
    return (signing_input + b"." + b64url(digest)).decode("ascii")


def decode(token: str, key: str) -> str | AuthError:
    try:
        result: str | AuthError = decode_identifiers(token, key, now=NOW)
    except AuthError as exc:
        result = exc
    if isinstance(result, AuthError):
        assert result.reason in (UNAUTHORIZED, TOKEN_EXPIRED), result.reason
        assert KEY not in str(result), "the secret in an error message"
        assert KEY not in result.detail, "the secret in an error detail"
        return result
    assert isinstance(result, str), type(result)
    assert isinstance(json.loads(result), dict), result
    return result


def test_one_input(data: bytes) -> None:
    mode, rest = (data[0], data[1:]) if data else (0, b"")
    if mode < 0x80:
        token = rest.decode("utf-8", "surrogateescape")
        decode(token, KEY)
        return
    alg = ("HS256", "HS384", "HS512")[mode % 3]
    header, _, payload = rest.partition(b"\xff")
    token = signed_token(header, payload, KEY, alg)
    outcome = decode(token, KEY)
    forged = decode(signed_token(header, payload, OTHER_KEY, alg), KEY)
    assert isinstance(forged, AuthError), "a token signed with another key passed"
    assert forged.reason == UNAUTHORIZED, "token_expired for a forged token"
    if isinstance(outcome, str):
        claims = json.loads(payload)
        assert outcome == claims["ext"], (outcome, claims)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "jwt"])
