"""Identification tokens, decoded by the server's own verifier."""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest

from cableway.auth.errors import TOKEN_EXPIRED, AuthError
from cableway.auth.jwt import decode_identifiers
from cableway.toolkit.tokens import identification_token, identifiers_json

SECRET = "jwt-secret-of-at-least-thirty-two-bytes!"


def test_token_round_trips_through_the_server_verifier() -> None:
    token = identification_token({"user_id": 42, "name": "Ann"}, SECRET, now=1_000_000)
    ext = decode_identifiers(token, SECRET, now=1_000_000)
    assert ext == '{"user_id":42,"name":"Ann"}'
    assert json.loads(ext) == {"user_id": 42, "name": "Ann"}


def test_claims_are_hs256_with_ext_and_exp() -> None:
    token = identification_token({"user_id": 42}, SECRET, expires_in=300, now=1_000_000.7)
    assert pyjwt.get_unverified_header(token)["alg"] == "HS256"
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"ext": '{"user_id":42}', "exp": 1_000_300}


def test_expiry_is_enforced_by_the_server_verifier() -> None:
    token = identification_token({"user_id": 1}, SECRET, expires_in=60, now=1000)
    assert decode_identifiers(token, SECRET, now=1059)
    with pytest.raises(AuthError) as info:
        decode_identifiers(token, SECRET, now=1060)
    assert info.value.reason == TOKEN_EXPIRED


def test_without_expiry_there_is_no_exp_claim() -> None:
    token = identification_token({"user_id": 1}, SECRET, expires_in=None)
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims == {"ext": '{"user_id":1}'}
    assert decode_identifiers(token, SECRET, now=10**12) == '{"user_id":1}'


def test_now_defaults_to_the_wall_clock() -> None:
    import time

    before = int(time.time())
    token = identification_token({"u": 1}, SECRET, expires_in=3600)
    exp = pyjwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    assert before + 3600 <= exp <= int(time.time()) + 3600


def test_wrong_secret_is_refused_by_the_server() -> None:
    token = identification_token({"user_id": 1}, SECRET)
    with pytest.raises(AuthError):
        decode_identifiers(token, "another-secret-of-at-least-32-bytes!!", now=0)


def test_identifiers_json_is_the_exact_ext_text() -> None:
    assert identifiers_json({"b": 1, "a": "é"}) == '{"b":1,"a":"\\u00e9"}'
    token = identification_token({"b": 1, "a": "é"}, SECRET, expires_in=None)
    assert decode_identifiers(token, SECRET, now=0) == identifiers_json({"b": 1, "a": "é"})


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        identification_token({"u": 1}, "")
    with pytest.raises(TypeError, match="mapping"):
        identification_token(["u"], SECRET)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="strings"):
        identification_token({1: "u"}, SECRET)  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        identification_token({"u": object()}, SECRET)
