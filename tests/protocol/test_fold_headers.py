"""One header view for both drivers: repeated names joined in order, Latin-1 values."""

from __future__ import annotations

from cableway.protocol.httphead import fold_headers


def test_repeated_headers_are_joined_in_order_and_values_read_as_latin_1() -> None:
    raw = [
        (b"connection", b"keep-alive"),
        (b"origin", b"https://a.test"),
        (b"connection", b"Upgrade"),
        (b"x-name", b"caf\xe9"),
    ]
    assert fold_headers(raw) == {
        "connection": "keep-alive, Upgrade",
        "origin": "https://a.test",
        "x-name": "caf\u00e9",
    }
