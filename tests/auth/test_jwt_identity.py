"""JWT identification: spec §9, security.md §D1 (J1–J8)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cableway.auth import AuthError, decode_identifiers, encode_token

SECRET = "qwerty"  # short on purpose: PyJWT's InsecureKeyLengthWarning must not surface
NOW = 1_700_000_000.0
EXT = '{"user_id":42}'
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

# Signature computed with `openssl dgst -sha256 -hmac qwerty` (independent of PyJWT).
KNOWN_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxNzAwMDAwMzAwfQ."
    "qgsI7X-MgOS68kAVjCeaa0UnrqIC6AQCvx101yBr1gI"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    claims: Any,
    *,
    secret: str = SECRET,
    alg: str = "HS256",
    header: dict[str, Any] | None = None,
    sign_with: str = "HS256",
) -> str:
    """Hand-build a compact JWS; `sign_with` picks the real HMAC regardless of the header."""
    hdr = {"alg": alg, "typ": "JWT"} if header is None else header
    payload = claims if isinstance(claims, bytes) else json.dumps(claims, separators=(",", ":"))
    signing_input = (
        b64url(json.dumps(hdr, separators=(",", ":")).encode())
        + "."
        + b64url(payload if isinstance(payload, bytes) else payload.encode())
    )
    sig = hmac.new(secret.encode(), signing_input.encode(), HASHES[sign_with]).digest()
    return signing_input + "." + b64url(sig)


def reason_of(token: str, *, secret: str | bytes = SECRET, now: float = NOW, **kw: Any) -> str:
    with pytest.raises(AuthError) as info:
        decode_identifiers(token, secret, now=now, **kw)
    return info.value.reason


# --- valid tokens ---------------------------------------------------------------------------


def test_known_answer_token() -> None:
    assert forge({"ext": EXT, "exp": 1_700_000_300}) == KNOWN_TOKEN
    assert encode_token({"user_id": 42}, SECRET, exp=1_700_000_300) == KNOWN_TOKEN
    assert decode_identifiers(KNOWN_TOKEN, SECRET, now=NOW) == EXT
    assert decode_identifiers(KNOWN_TOKEN, SECRET.encode(), now=NOW) == EXT


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms_accepted(alg: str) -> None:
    token = encode_token({"user_id": 42}, SECRET, exp=NOW + 60, algorithm=alg)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == alg
    assert decode_identifiers(token, SECRET, now=NOW) == EXT
    assert decode_identifiers(forge({"ext": EXT}, alg=alg, sign_with=alg), SECRET, now=NOW) == EXT


def test_ext_string_returned_verbatim() -> None:
    ext = '{ "b": 1,  "a":"é" }'
    assert decode_identifiers(encode_token(ext, SECRET), SECRET, now=NOW) == ext


def test_no_exp_accepted() -> None:
    assert decode_identifiers(forge({"ext": EXT}), SECRET, now=NOW) == EXT


@pytest.mark.parametrize(
    "extra",
    [
        {"iat": NOW + 86_400},  # future iat
        {"iat": "yesterday"},
        {"sub": 42},  # non-string sub
        {"jti": 7},
        {"aud": "someone-else"},
        {"iss": ["x"]},
        {"nbf": NOW},  # nbf == now is valid
        {"nbf": NOW - 10},
    ],
    ids=repr,
)
def test_unvalidated_claims_do_not_reject(extra: dict[str, Any]) -> None:
    assert decode_identifiers(forge({"ext": EXT, **extra}), SECRET, now=NOW) == EXT


# --- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exp", "expected"),
    [
        (NOW - 1, "token_expired"),
        (NOW, "token_expired"),  # exp <= now, no leeway
        (NOW - 0.5, "token_expired"),
        (0, "token_expired"),
        (-(10**30), "token_expired"),
    ],
)
def test_expired(exp: float, expected: str) -> None:
    assert reason_of(forge({"ext": EXT, "exp": exp})) == expected


@pytest.mark.parametrize("exp", [NOW + 1, NOW + 0.001, 10**30])
def test_not_expired(exp: float) -> None:
    assert decode_identifiers(forge({"ext": EXT, "exp": exp}), SECRET, now=NOW) == EXT


def test_exp_uses_now_argument_not_wall_clock() -> None:
    token = forge({"ext": EXT, "exp": 1_000})  # 1970: long expired by the wall clock
    assert decode_identifiers(token, SECRET, now=999) == EXT
    assert reason_of(token, now=1_000) == "token_expired"
    future = forge({"ext": EXT, "exp": 4_000_000_000})  # 2096: valid by the wall clock
    assert reason_of(future, now=4_000_000_001) == "token_expired"


def test_nbf_uses_now_argument() -> None:
    token = forge({"ext": EXT, "nbf": 4_000_000_000})
    assert reason_of(token) == "unauthorized"
    assert decode_identifiers(token, SECRET, now=4_000_000_000) == EXT


def test_encode_token_exp_is_int() -> None:
    token = encode_token({"user_id": 42}, SECRET, exp=NOW + 10.9)
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload == {"ext": EXT, "exp": int(NOW) + 10}
    assert type(payload["exp"]) is int


@pytest.mark.parametrize(
    "exp",
    ["1700000300", "soon", None, True, [1], {"t": 1}],
    ids=repr,
)
def test_non_numeric_exp_unauthorized(exp: object) -> None:
    # PyJWT itself would accept "1700000300" (it calls int()) and True (== 1).
    assert reason_of(forge({"ext": EXT, "exp": exp})) == "unauthorized"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_exp_unauthorized(literal: bytes) -> None:
    # Python's json (used by PyJWT) accepts these non-standard literals.
    payload = b'{"ext":"{\\"user_id\\":42}","exp":' + literal + b"}"
    assert reason_of(forge(payload)) == "unauthorized"


@pytest.mark.parametrize("nbf", ["0", None, False], ids=repr)
def test_non_numeric_nbf_unauthorized(nbf: object) -> None:
    assert reason_of(forge({"ext": EXT, "nbf": nbf})) == "unauthorized"


# --- signature / algorithm ------------------------------------------------------------------


def test_bad_signature_unauthorized() -> None:
    assert reason_of(forge({"ext": EXT}, secret="other")) == "unauthorized"


def test_expired_with_bad_signature_is_unauthorized() -> None:
    token = forge({"ext": EXT, "exp": NOW - 1}, secret="other")
    assert reason_of(token) == "unauthorized"
    assert reason_of(forge({"ext": EXT, "exp": NOW - 1})) == "token_expired"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_unauthorized(alg: str) -> None:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"ext": EXT}).encode())
    assert reason_of(f"{header}.{payload}.") == "unauthorized"


def test_missing_alg_unauthorized() -> None:
    assert reason_of(forge({"ext": EXT}, header={"typ": "JWT"})) == "unauthorized"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA", "HS1", "hs256"])
def test_non_hmac_alg_unauthorized(alg: str) -> None:
    # Signed with the right secret via HMAC-SHA256; only the header lies.
    assert reason_of(forge({"ext": EXT}, alg=alg)) == "unauthorized"


def test_header_alg_mismatch_with_signature_unauthorized() -> None:
    assert reason_of(forge({"ext": EXT}, alg="HS512", sign_with="HS256")) == "unauthorized"


PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\n"
    "q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n"
    "-----END PUBLIC KEY-----\n"
)


def test_pem_secret_fails_closed() -> None:
    # J2 algorithm confusion: a token HMAC'd with public-key text as the secret.
    token = forge({"ext": EXT}, secret=PEM)
    assert reason_of(token, secret=PEM) == "unauthorized"


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_refused(secret: str | bytes) -> None:
    assert reason_of(forge({"ext": EXT}, secret=""), secret=secret) == "unauthorized"


# --- ext claim --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"exp": NOW + 60},
        {"ext": 42},
        {"ext": None},
        {"ext": {"user_id": 42}},
        {"ext": "not json"},
        {"ext": "[1]"},
        {"ext": '"user"'},
        {"ext": "null"},
        {"ext": ""},
        {"ext": "[" * 100_000},
        {"ext": '{"a":1} trailing'},
        {"EXT": EXT},
    ],
    ids=lambda c: repr(c)[:40],
)
def test_bad_ext_unauthorized(claims: dict[str, Any]) -> None:
    assert reason_of(forge(claims), max_token_length=10**6) == "unauthorized"


@pytest.mark.parametrize(
    "payload",
    [b"[]", b'"ext"', b"42", b"null", b"not json", b"\xff\xfe", b"[" * 100_000],
    ids=lambda p: repr(p)[:20],
)
def test_payload_not_an_object_unauthorized(payload: bytes) -> None:
    assert reason_of(forge(payload), max_token_length=10**6) == "unauthorized"


# --- malformed --------------------------------------------------------------------------------

VALID = forge({"ext": EXT})

MALFORMED = {
    "empty": "",
    "one segment": "abc",
    "two segments": VALID.rsplit(".", 1)[0],
    "four segments": VALID + ".AAAA",
    "dots only": "..",
    "bad base64 chars": VALID.replace(".", ".!!", 1),
    "padding junk": VALID + "===",
    "whitespace": " " + VALID,
    "non-ascii": VALID + "é",
    "lone surrogate": VALID[:-2] + "\ud800",
    "nul byte": VALID + "\x00",
    "header not json": b64url(b"{oops") + "." + VALID.split(".", 1)[1],
    "header is list": b64url(b"[]") + "." + VALID.split(".", 1)[1],
    "bearer prefix": "Bearer " + VALID,
    "10000 segments": ".".join(["eyJ"] * 10_000),
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_unauthorized(token: str) -> None:
    assert reason_of(token, max_token_length=10**6) == "unauthorized"


def test_100kb_token_unauthorized_by_default() -> None:
    big = forge({"ext": EXT, "pad": "a" * 100_000})
    assert len(big) > 100_000
    with pytest.raises(AuthError) as info:
        decode_identifiers(big, SECRET, now=NOW)
    assert info.value.reason == "unauthorized"
    assert "too long" in info.value.detail
    # The same token is otherwise valid: only the length limit rejected it.
    assert decode_identifiers(big, SECRET, now=NOW, max_token_length=len(big)) == EXT


@pytest.mark.parametrize("value", [None, 5, b"abc", ["x"]], ids=repr)
def test_non_string_token_unauthorized(value: object) -> None:
    assert reason_of(value) == "unauthorized"  # type: ignore[arg-type]


def test_error_never_contains_token_or_secret() -> None:
    secret = "super-secret-value"
    tokens = [
        forge({"ext": EXT}, secret=secret + "x"),
        forge({"ext": EXT, "exp": NOW - 1}, secret=secret),
        forge({"ext": "not json"}, secret=secret),
        *MALFORMED.values(),
    ]
    for token in tokens:
        with pytest.raises(AuthError) as info:
            decode_identifiers(token, secret, now=NOW)
        text = str(info.value) + info.value.detail + repr(info.value)
        assert secret not in text
        for segment in token.split("."):
            if len(segment) > 8:
                assert segment not in text


def test_auth_error_shape() -> None:
    err = AuthError("token_expired", "exp passed")
    assert err.reason == "token_expired"
    assert err.detail == "exp passed"
    assert AuthError("unauthorized").detail == ""
    assert isinstance(err, Exception)


# --- encode_token -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "RS256", "hs256"])
def test_encode_token_refuses_non_hmac(alg: str) -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        encode_token({"user_id": 1}, SECRET, algorithm=alg)


def test_encode_token_refuses_empty_secret() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        encode_token({"user_id": 1}, "")


# --- properties -------------------------------------------------------------------------------


@given(st.text(max_size=300))
def test_garbage_only_raises_auth_error(garbage: str) -> None:
    with pytest.raises(AuthError):
        decode_identifiers(garbage, SECRET, now=NOW)


_b64_segment = st.binary(max_size=64).map(b64url) | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=64
)


@given(_b64_segment, _b64_segment, _b64_segment)
def test_three_segment_garbage_only_raises_auth_error(h: str, p: str, s: str) -> None:
    with pytest.raises(AuthError):
        decode_identifiers(f"{h}.{p}.{s}", SECRET, now=NOW)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["ext", "exp", "nbf", "iat", "sub", "aud", "jti", "iss", "x"]), _json
    ),
    st.sampled_from(["HS256", "HS384", "HS512"]),
)
def test_validly_signed_random_claims(claims: dict[str, Any], alg: str) -> None:
    """After a good signature, only AuthError escapes, and success implies an object ext."""
    token = forge(claims, alg=alg, sign_with=alg)
    reason = None
    try:
        ext = decode_identifiers(token, SECRET, now=NOW, max_token_length=10**6)
    except AuthError as err:
        reason = err.reason
    if reason is not None:
        assert reason in {"unauthorized", "token_expired"}
        if reason == "token_expired":
            assert claims["exp"] <= NOW
        return
    assert ext == claims["ext"]
    assert isinstance(json.loads(ext), dict)


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4))
def test_encode_decode_round_trip(identifiers: dict[str, object]) -> None:
    token = encode_token(identifiers, SECRET, exp=NOW + 1)
    assert json.loads(decode_identifiers(token, SECRET, now=NOW)) == identifiers
    with pytest.raises(AuthError) as info:
        decode_identifiers(token, SECRET, now=NOW + 1)
    assert info.value.reason == "token_expired"
