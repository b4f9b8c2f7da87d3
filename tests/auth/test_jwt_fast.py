"""The JWT fast path (``_fast_claims``) accepts only what PyJWT accepts, with the same claims.

A token it does not accept goes to PyJWT, so every refusal (and its error kind) stays
PyJWT's; ``fuzz/fuzz_jwt_fast.py`` checks the same on random input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import jwt as pyjwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cableway.auth.errors import UNAUTHORIZED, AuthError
from cableway.auth.jwt import JWT_ALGORITHMS, _fast_claims, decode_identifiers, encode_token

KEY = "test-jwt-secret"
_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header: str, payload: str, key: str, alg: str) -> str:
    mac = hmac.new(key.encode(), f"{header}.{payload}".encode(), _HASHES[alg]).digest()
    return b64url(mac)


def pyjwt_claims(token: str, key: str | bytes) -> Any:
    """PyJWT's verdict with the options ``decode_identifiers`` uses (None: refused)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pyjwt.decode(
                token,
                key,
                algorithms=list(JWT_ALGORITHMS),
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": [],
                },
            )
    except Exception:
        return None


def test_common_tokens_take_the_fast_path_with_pyjwts_claims() -> None:
    for alg in JWT_ALGORITHMS:
        token = encode_token({"user_id": 7}, KEY, exp=2_000_000_000, algorithm=alg)
        claims = _fast_claims(token, KEY)
        assert claims is not None
        assert claims == pyjwt_claims(token, KEY)
        assert decode_identifiers(token, KEY, now=1_000) == '{"user_id":7}'
    # ruby-jwt's header has no "typ"
    header = b64url(b'{"alg":"HS256"}')
    payload = b64url(b'{"ext":"{\\"id\\":1}"}')
    token = f"{header}.{payload}.{sign(header, payload, KEY, 'HS256')}"
    assert _fast_claims(token, KEY) == {"ext": '{"id":1}'} == pyjwt_claims(token, KEY)


def test_refusals_keep_pyjwts_error_kind() -> None:
    token = encode_token({"user_id": 7}, KEY)
    header, payload, signature = token.split(".")
    bad = f"{header}.{payload}.{signature[:-2]}AA"
    assert _fast_claims(bad, KEY) is None
    with pytest.raises(AuthError) as caught:
        decode_identifiers(bad, KEY, now=0)
    assert caught.value.reason == UNAUTHORIZED
    assert "InvalidSignatureError" in caught.value.detail
    # a PEM key is never an HMAC secret (PyJWT refuses it, so does the fast path)
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(b'{"ext":"{}"}')
    token = f"{header}.{payload}.{sign(header, payload, pem, 'HS256')}"
    assert _fast_claims(token, pem) is None
    assert pyjwt_claims(token, pem) is None


_HEADER = st.sampled_from(
    [
        b'{"alg":"HS256","typ":"JWT"}',
        b'{"typ":"JWT","alg":"HS384"}',
        b'{"alg":"HS512"}',
        b'{"alg":"none"}',
        b'{"alg":"HS256","kid":1}',
        b'{"alg":"HS256","b64":false,"crit":["b64"]}',
        b"[]",
        b"",
    ]
)
_PAYLOAD = st.one_of(
    st.sampled_from([b'{"ext":"{}"}', b"{}", b"[1]", b"", b"\xff", b'"x"', b'{"a":NaN}']),
    st.binary(max_size=40),
    st.dictionaries(st.sampled_from(["ext", "exp", "nbf", "sub"]), st.integers() | st.text()).map(
        lambda d: json.dumps(d).encode()
    ),
)
_MUTATION = st.sampled_from(["", "pad-payload", "pad-sig", "dot", "junk", "truncate", "utf16"])


@given(
    header=_HEADER,
    payload=_PAYLOAD,
    alg=st.sampled_from(list(JWT_ALGORITHMS)),
    key=st.sampled_from([KEY, "other-key", "k"]),
    mutation=_MUTATION,
)
def test_the_fast_path_never_accepts_what_pyjwt_refuses(
    header: bytes, payload: bytes, alg: str, key: str, mutation: str
) -> None:
    if mutation == "utf16":
        payload = payload.decode("latin-1").encode("utf-16")
    h, p = b64url(header), b64url(payload)
    if mutation == "pad-payload":
        p += "=" * (-len(p) % 4 or 4)
    if mutation == "junk":
        p += "!"
    if mutation == "dot":
        p += ".x"
    if mutation == "truncate":
        p = p[:-1]
    s = sign(h, p, KEY, alg)
    if mutation == "pad-sig":
        s += "=" * (-len(s) % 4 or 4)
    token = f"{h}.{p}.{s}"
    fast = _fast_claims(token, key)
    if fast is not None:
        assert fast == pyjwt_claims(token, key)
