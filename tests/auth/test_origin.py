from __future__ import annotations

import pytest

from cableway.auth.origin import origin_allowed


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        # AnyCable's examples (spec §3.1): host including port
        ("http://my.localhost:8080", ["my.localhost:8080"], True),
        ("http://my.localhost:8080", ["*.localhost:8080"], True),
        ("http://my.localhost:8080", ["localhost:8080"], False),
        ("http://my.localhost:8080", ["my.localhost"], False),
        # security O2: only the configured origin passes
        ("https://app.example", ["https://app.example"], True),
        ("HTTPS://APP.EXAMPLE", ["https://app.example"], True),
        ("https://app.example:443", ["https://app.example"], True),
        ("https://app.example.evil.com", ["https://app.example"], False),
        ("https://evilapp.example", ["https://app.example"], False),
        ("https://app.example:8443", ["https://app.example"], False),
        ("http://app.example", ["https://app.example"], False),
        ("null", ["https://app.example"], False),
        (None, ["app.example"], False),
        ("https://app.example/path", ["app.example"], False),
        ("https://user@app.example", ["app.example"], False),
        ("not an origin", ["app.example"], False),
        ("https://app.example:99999", ["app.example"], False),
        # security O3: wildcard needs a dot boundary, apex not included
        ("https://a.example.com", ["*.example.com"], True),
        ("https://a.b.example.com", ["*.example.com"], True),
        ("https://evilexample.com", ["*.example.com"], False),
        ("https://example.com", ["*.example.com"], False),
        ("https://evilexample.com", ["*example.com"], False),
        ("https://a.example.com:8080", ["*.example.com"], False),
        # defaults and explicit allow-all
        ("https://anything", [], True),
        (None, [], True),
        ("https://anything", ["*"], True),
        ("https://[::1]:3000", ["[::1]:3000"], True),
    ],
)
def test_origin_matching(origin: str | None, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, allowed) is expected
