"""cableway.rpc.http: the key, headers and URLs of RPC over HTTP (rpc.md §3)."""

from __future__ import annotations

import pytest

from cableway.rpc import (
    authorized,
    derive_rpc_key,
    endpoint_url,
    header,
    request_headers,
    rpc_key,
)

KEY = "f07cae1c1e872f121cf4b7d3063cf9e53464f52cd944522d045ba5eee35a7912"


def test_key_derived_from_secret_is_the_spec_vector() -> None:
    assert derive_rpc_key("secret") == KEY


def test_http_rpc_secret_wins_over_secret_and_none_means_no_key() -> None:
    assert rpc_key("explicit", "secret") == "explicit"
    assert rpc_key(None, "secret") == KEY
    assert rpc_key(None, None) is None
    assert rpc_key("", "") is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Bearer " + KEY, True),
        ("Bearer wrong", False),  # V12
        ("bearer " + KEY, False),
        ("Bearer  " + KEY, False),
        (KEY, False),
        ("", False),
        (None, False),
        (("Bearer " + KEY).encode(), True),
    ],
)
def test_authorization_must_be_exactly_bearer_key(value: str | bytes | None, ok: bool) -> None:
    assert authorized(value, KEY) is ok


def test_no_key_means_no_check() -> None:
    assert authorized(None, None)
    assert authorized("anything", None)


def test_request_headers_are_the_spec_headers() -> None:
    assert request_headers(KEY, "s1d-test") == [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer " + KEY),
        ("X-Anycable-Meta-Sid", "s1d-test"),
        ("X-Anycable-Meta-Protov", "v1"),
    ]
    assert request_headers(None, None) == [
        ("Content-Type", "application/json"),
        ("X-Anycable-Meta-Protov", "v1"),
    ]


def test_header_lookup_is_case_insensitive() -> None:
    assert (
        header([("X-AnyCable-Meta-Sid", "a"), ("x-anycable-meta-sid", "b")], "x-anycable-meta-sid")
        == "a"
    )
    assert header({"Authorization": "x"}, "authorization") == "x"
    assert header([], "x") is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("http://app:3000/_anycable", "http://app:3000/_anycable/connect"),
        ("http://app:3000/_anycable/", "http://app:3000/_anycable/connect"),
        ("http://app:3000", "http://app:3000/connect"),
        ("http://app:3000/_anycable?x=1", "http://app:3000/_anycable/connect?x=1"),
        ("https://app//a/./b/../c", "https://app/a/c/connect"),
    ],
)
def test_endpoint_url_joins_like_go(host: str, url: str) -> None:
    assert endpoint_url(host, "connect") == url


def test_endpoint_url_refuses_unknown_calls() -> None:
    with pytest.raises(ValueError, match="unknown RPC call"):
        endpoint_url("http://app", "ping")
