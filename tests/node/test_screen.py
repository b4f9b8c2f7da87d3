"""What the broadcast endpoint answers before it reads a body, for both drivers."""

from __future__ import annotations

from cableway.node.intake import screen


def test_only_post_is_read() -> None:
    assert screen("GET", None, None) == (422, b"Unprocessable Entity")
    assert screen("POST", None, None) is None


def test_with_a_broadcast_key_only_its_bearer_is_read() -> None:
    assert screen("POST", None, "k") == (401, b"Unauthorized")
    assert screen("POST", "Bearer other", "k") == (401, b"Unauthorized")
    assert screen("POST", "Bearer k", "k") is None
