"""Signed stream names: spec §8.2, security.md §D2 (S1–S5)."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cableway.auth.signed_streams as signed_streams_module
from cableway.auth import InvalidSignature, sign_stream_name, verify_signed_stream_name

VECTORS = [
    (
        "s3Krit",
        "chat/2023",
        "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c",
    ),
    (
        "secret",
        "notifications/17",
        "Im5vdGlmaWNhdGlvbnMvMTci--05577ac2d36b12b90805c977b8cc0141521f14a0b4e5a0df4a1ac0fc4165370a",
    ),
    (
        "s3Krit",
        "chat:2021",
        "ImNoYXQ6MjAyMSI=--f9ee45dbccb1da04d8ceb99cc820207804370ba0d06b46fc3b8b373af1315628",
    ),
]
LIST_PAYLOAD = (
    "WyJjaGF0LzIwMjMiLDE2ODUwMjQwMTdd--"
    "5b6661024d4c463c4936cd1542bc9a7672dd8039ac407d0b6c901697190e8aeb"
)
SECRET = "s3Krit"


def sign_raw(data: bytes, secret: str = SECRET) -> str:
    """Validly sign arbitrary payload bytes (independently of the module under test)."""
    encoded = base64.b64encode(data)
    digest = hmac.new(secret.encode(), encoded, hashlib.sha256).hexdigest()
    return f"{encoded.decode()}--{digest}"


@pytest.mark.parametrize(("secret", "stream", "signed"), VECTORS)
def test_sign_known_answers(secret: str, stream: str, signed: str) -> None:
    assert sign_stream_name(stream, secret) == signed
    assert sign_stream_name(stream, secret.encode()) == signed


@pytest.mark.parametrize(("secret", "stream", "signed"), VECTORS)
def test_verify_known_answers(secret: str, stream: str, signed: str) -> None:
    assert verify_signed_stream_name(signed, secret) == stream
    assert verify_signed_stream_name(signed, secret.encode()) == stream


@pytest.mark.parametrize(("secret", "stream", "signed"), VECTORS)
def test_known_answers_fail_with_other_secret(secret: str, stream: str, signed: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_signed_stream_name(signed, secret + "x")


def test_valid_signature_over_list_is_rejected() -> None:
    # The signature itself is genuine: flipping the secret changes the failure reason.
    with pytest.raises(InvalidSignature, match="not a string"):
        verify_signed_stream_name(LIST_PAYLOAD, SECRET)
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify_signed_stream_name(LIST_PAYLOAD, "other")


def test_non_ascii_stream_is_not_escaped() -> None:
    signed = sign_stream_name("комната/1", SECRET)
    data = signed.split("--")[0]
    assert base64.b64decode(data) == '"комната/1"'.encode()
    assert verify_signed_stream_name(signed, SECRET) == "комната/1"


def test_verify_accepts_other_encoders_output() -> None:
    # Verification never re-encodes: an ASCII-escaped payload verifies too.
    assert verify_signed_stream_name(sign_raw(b'"\\u043a/1"'), SECRET) == "к/1"


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_is_refused(secret: str | bytes) -> None:
    signed = sign_stream_name("chat/2023", secret)  # signing with "" is allowed...
    with pytest.raises(InvalidSignature, match="no secret configured"):
        verify_signed_stream_name(signed, secret)  # ...verifying never is


GOOD = VECTORS[0][2]
DATA, DIGEST = GOOD.split("--")

S2_CASES = {
    "empty": "",
    "separator only": "--",
    "no separator": "abc",
    "empty digest": "x--",
    "empty data": "--" + DIGEST,
    "three parts": "a--b--c",
    "extra part after valid": GOOD + "--" + DIGEST,
    "digest too short": DATA + "--" + DIGEST[:-1],
    "digest too long": DATA + "--" + DIGEST + "0",
    "uppercase hex": DATA + "--" + DIGEST.upper(),
    "first digest char flipped": DATA + "--" + ("0" if DIGEST[0] != "0" else "1") + DIGEST[1:],
    "last digest char flipped": DATA + "--" + DIGEST[:-1] + ("0" if DIGEST[-1] != "0" else "1"),
    "non-ascii digest": DATA + "--" + "é" * 64,
    "non-ascii digest same length": DATA + "--" + DIGEST[:-1] + "é",
    "lone surrogate digest": DATA + "--" + DIGEST[:-1] + "\ud800",
    "non-ascii data": "ImNoYXQvMjAyMyI=é--" + DIGEST,
    "whitespace around": " " + GOOD + " ",
    "trailing newline": GOOD + "\n",
    "data tampered": "ImNoYXQvMjAyNCI=--" + DIGEST,
    "single dash separator": DATA + "-" + DIGEST,
}

S3_CASES = {
    "not json": sign_raw(b"{not json"),
    "invalid utf-8": sign_raw(b'"\xff\xfe"'),
    "deep nesting": sign_raw(b"[" * 100_000),
    "deep object nesting": sign_raw(b'{"a":' * 50_000),
    "json number": sign_raw(b"42"),
    "json null": sign_raw(b"null"),
    "json object": sign_raw(b'{"stream":"x"}'),
    "json NaN": sign_raw(b"NaN"),
    "huge integer": sign_raw(b"1" * 5000),
    "empty payload": sign_raw(b""),
    "lone surrogate escape": sign_raw(b'"\\ud800"'),
    "trailing garbage": sign_raw(b'"chat" x'),
}


def _resign_data(data: str) -> str:
    digest = hmac.new(SECRET.encode(), data.encode(), hashlib.sha256).hexdigest()
    return f"{data}--{digest}"


S3_CASES["non-base64 text"] = _resign_data("ImNo!!YXQvMjAyMyI=")
S3_CASES["base64 without padding"] = _resign_data("ImNoYXQvMjAyMyI")
S3_CASES["base64 urlsafe alphabet"] = _resign_data(base64.urlsafe_b64encode(b'"a>?~"').decode())
S3_CASES["base64 with inner whitespace"] = _resign_data("ImNo YXQvMjAyMyI=")


@pytest.mark.parametrize("signed", S2_CASES.values(), ids=S2_CASES.keys())
def test_s2_malformed_rejected(signed: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_signed_stream_name(signed, SECRET)


@pytest.mark.parametrize("signed", S3_CASES.values(), ids=S3_CASES.keys())
def test_s3_valid_hmac_bad_payload_rejected(signed: str) -> None:
    data = signed.split("--")[0]
    expected = hmac.new(SECRET.encode(), data.encode(), hashlib.sha256).hexdigest()
    assert signed.endswith("--" + expected)  # the signature really is valid
    with pytest.raises(InvalidSignature):
        verify_signed_stream_name(signed, SECRET, max_length=1_000_000)


def test_base64_urlsafe_case_is_distinct_from_standard() -> None:
    # Guard for the case above: the urlsafe encoding must actually contain - or _.
    assert set(base64.urlsafe_b64encode(b'"a>?~"').decode()) & {"-", "_"}


def test_surrogate_stream_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        sign_stream_name("a\ud800", SECRET)


@pytest.mark.parametrize("value", [5, None, b"ImNoYXQvMjAyMyI=--00", ["x"], {"a": 1}])
def test_non_string_input_rejected(value: object) -> None:
    with pytest.raises(InvalidSignature):
        verify_signed_stream_name(value, SECRET)  # type: ignore[arg-type]


def test_s4_length_checked_before_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real_new = hmac.new

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real_new(*args, **kwargs)  # type: ignore[arg-type]

    huge = sign_raw(('"' + "a" * 1_000_000 + '"').encode())
    monkeypatch.setattr(signed_streams_module.hmac, "new", spy)
    with pytest.raises(InvalidSignature, match="too long"):
        verify_signed_stream_name(huge, SECRET)
    assert calls == []
    # Boundary: exactly max_length is verified, one more is not.
    assert verify_signed_stream_name(GOOD, SECRET, max_length=len(GOOD)) == "chat/2023"
    assert len(calls) == 1
    with pytest.raises(InvalidSignature, match="too long"):
        verify_signed_stream_name(GOOD, SECRET, max_length=len(GOOD) - 1)
    assert len(calls) == 1


def test_s5_first_and_last_byte_mismatch_use_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        assert isinstance(a, bytes)
        assert isinstance(b, bytes)
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signed_streams_module.hmac, "compare_digest", spy)
    for case in ("first digest char flipped", "last digest char flipped", "non-ascii digest"):
        with pytest.raises(InvalidSignature, match="bad signature"):
            verify_signed_stream_name(S2_CASES[case], SECRET)
    assert len(seen) == 3
    assert verify_signed_stream_name(GOOD, SECRET) == "chat/2023"
    assert len(seen) == 4


def test_s5_no_equality_on_digests() -> None:
    tree = ast.parse(inspect.getsource(signed_streams_module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & {"expected", "given", "given_bytes", "digest"}, ast.unparse(node)
    assert "hmac.compare_digest(" in inspect.getsource(signed_streams_module)


@given(st.text())
def test_round_trip(stream: str) -> None:
    assert verify_signed_stream_name(sign_stream_name(stream, SECRET), SECRET) == stream


@given(st.text(min_size=1), st.text(min_size=1))
def test_round_trip_any_secret(stream: str, secret: str) -> None:
    signed = sign_stream_name(stream, secret)
    assert verify_signed_stream_name(signed, secret, max_length=1_000_000) == stream


@given(st.text(), st.text())
def test_wrong_secret_never_verifies(stream: str, suffix: str) -> None:
    signed = sign_stream_name(stream, SECRET)
    with pytest.raises(InvalidSignature):
        verify_signed_stream_name(signed, SECRET + "!" + suffix, max_length=1_000_000)


@given(st.text())
def test_garbage_only_raises_invalid_signature(garbage: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_signed_stream_name(garbage, SECRET)


@given(st.binary())
def test_validly_signed_garbage_only_raises_invalid_signature(payload: bytes) -> None:
    signed = sign_raw(payload)
    try:
        result = verify_signed_stream_name(signed, SECRET, max_length=1_000_000)
    except InvalidSignature:
        return
    assert isinstance(result, str)
