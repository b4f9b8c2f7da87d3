"""What the broadcast endpoint answers before it reads a body, and for a bad one, for both
drivers."""

from __future__ import annotations

from cableway.node.intake import TOO_LARGE, Invalid, invalid_answer, judge, screen


def test_only_post_is_read() -> None:
    assert screen("GET", None, None) == (422, b"Unprocessable Entity")
    assert screen("POST", None, None) is None


def test_with_a_broadcast_key_only_its_bearer_is_read() -> None:
    assert screen("POST", None, "k") == (401, b"Unauthorized")
    assert screen("POST", "Bearer other", "k") == (401, b"Unauthorized")
    assert screen("POST", "Bearer k", "k") is None


def test_an_invalid_body_is_answered_400_with_what_is_wrong() -> None:
    verdict = judge(b'{"stream":"s"}')
    assert isinstance(verdict, Invalid)
    status, body = invalid_answer(verdict)
    assert status == 400
    assert body == f"Bad Request: {verdict.detail}".encode()
    assert verdict.detail
    assert TOO_LARGE == (413, b"Payload Too Large")
