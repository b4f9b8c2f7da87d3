"""Derived keys and bearer checks: security.md §D3 (B1, B2)."""

from __future__ import annotations

import ast
import inspect
import io
import tokenize

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cableway.auth.keys as keys_module
from cableway.auth import check_bearer, derive_api_key, derive_broadcast_key, derive_key

BROADCAST_QWERTY = "42923a28b760e667fc92f7c6123bb07a282822b329dd2ef48e7aee7830d98485"
API_QWERTY = "bdd0244b3664404d03b7d0c2f1b946dc4fc6c13fdcbfa2be62a4a28deb04d096"
KEY = BROADCAST_QWERTY


def test_derive_key_known_answers() -> None:
    assert derive_key("qwerty", "broadcast-cable") == BROADCAST_QWERTY
    assert derive_key("qwerty", "api-cable") == API_QWERTY
    assert derive_broadcast_key("qwerty") == BROADCAST_QWERTY
    # AnyCable-Go docs/api.md: echo -n 'api-cable' | openssl dgst -sha256 -hmac '<secret>'
    assert derive_api_key("qwerty") == API_QWERTY


def test_derive_key_depends_on_secret_and_purpose() -> None:
    assert derive_broadcast_key("qwertz") != BROADCAST_QWERTY
    assert derive_key("broadcast-cable", "qwerty") != BROADCAST_QWERTY  # key/msg not swapped
    assert derive_key("qwerty", "") != derive_key("qwerty", "broadcast-cable")


@given(st.text(), st.text())
def test_derive_key_is_lowercase_hex(secret: str, purpose: str) -> None:
    key = derive_key(secret, purpose)
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"Bearer {KEY}".encode()])
def test_exact_bearer_accepted(header: str | bytes) -> None:
    assert check_bearer(header, KEY) is True


B1_REJECTS = {
    "missing": None,
    "empty": "",
    "empty bytes": b"",
    "wrong key": "Bearer " + "0" * 64,
    "key prefix only": f"Bearer {KEY[:-1]}",
    "key plus char": f"Bearer {KEY}0",
    "uppercase key": f"Bearer {KEY.upper()}",
    "lowercase bearer": f"bearer {KEY}",
    "uppercase BEARER": f"BEARER {KEY}",
    "two spaces": f"Bearer  {KEY}",
    "tab separator": f"Bearer\t{KEY}",
    "no space": f"Bearer{KEY}",
    "leading space": f" Bearer {KEY}",
    "trailing space": f"Bearer {KEY} ",
    "trailing newline": f"Bearer {KEY}\n",
    "trailing crlf bytes": f"Bearer {KEY}\r\n".encode(),
    "no prefix": KEY,
    "basic scheme": f"Basic {KEY}",
    "token scheme": f"Token {KEY}",
    "prefix only": "Bearer ",
    "prefix no space": "Bearer",
    "non-ascii str": f"Bearer {KEY}é",
    "non-ascii bytes": f"Bearer {KEY}".encode() + b"\xff",
    "invalid utf-8 bytes": b"Bearer \xff\xfe",
    "lone surrogate": f"Bearer {KEY[:-1]}\ud800",
    "surrogateescape str": "Bearer \udcff",
    "nul": f"Bearer {KEY}\x00",
    "huge": "Bearer " + "a" * 10_000_000,
    "fullwidth B": f"Ｂearer {KEY}",
}


@pytest.mark.parametrize("header", B1_REJECTS.values(), ids=B1_REJECTS.keys())
def test_b1_rejects(header: str | bytes | None) -> None:
    assert check_bearer(header, KEY) is False


@pytest.mark.parametrize("value", [5, 1.0, ["Bearer x"], object(), bytearray(b"Bearer x")])
def test_non_string_header_never_raises(value: object) -> None:
    assert check_bearer(value, "x") is False  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Bearer", b"Bearer "])
def test_empty_key_never_authenticates(header: str | bytes | None) -> None:
    assert check_bearer(header, "") is False


def test_non_ascii_key_round_trips() -> None:
    key = "clé-ключ"
    assert check_bearer(f"Bearer {key}", key) is True
    assert check_bearer(f"Bearer {key}".encode(), key) is True
    assert check_bearer("Bearer cle-ключ", key) is False


def test_raw_header_bytes_via_surrogateescape() -> None:
    # A transport that decodes header bytes with surrogateescape must still match.
    key = "k\xe9y"  # configured key containing é
    raw = b"Bearer k\xc3\xa9y"
    assert check_bearer(raw.decode("utf-8", "surrogateescape"), key) is True
    assert check_bearer(b"Bearer k\xe9y".decode("utf-8", "surrogateescape"), key) is False
    # os.environ decodes non-UTF-8 bytes with surrogateescape: such a key matches raw bytes.
    env_key = b"k\xffy".decode("utf-8", "surrogateescape")
    assert check_bearer(b"Bearer k\xffy", env_key) is True
    assert check_bearer(b"Bearer k\xc3\xbfy", env_key) is False


@given(st.one_of(st.none(), st.text(), st.binary()), st.text())
def test_check_bearer_total(header: str | bytes | None, key: str) -> None:
    result = check_bearer(header, key)
    assert isinstance(result, bool)
    if result:
        expected = f"Bearer {key}"
        assert header in (expected, expected.encode())


@given(st.text(min_size=1))
def test_check_bearer_accepts_exactly_its_key(key: str) -> None:
    assert check_bearer(f"Bearer {key}", key) is True
    assert check_bearer(f"Bearer {key}x", key) is False


def _code_tokens(source: str) -> list[str]:
    return [
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.OP
    ]


def test_b2_no_equality_operator_in_keys_module() -> None:
    ops = _code_tokens(inspect.getsource(keys_module))
    assert "==" not in ops
    assert "!=" not in ops


def test_b2_check_bearer_uses_compare_digest() -> None:
    tree = ast.parse(inspect.getsource(keys_module.check_bearer))
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert "hmac.compare_digest" in calls
    value_compares = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops)
    ]
    assert value_compares == []


def test_b2_compare_digest_called_with_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[object, object]] = []
    real = keys_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    assert check_bearer(f"Bearer {KEY}", KEY) is True
    assert check_bearer(f"Bearer {KEY[:-1]}0", KEY) is False
    assert check_bearer(f"Bearer 0{KEY[1:]}", KEY) is False
    assert len(seen) == 3
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in seen)
