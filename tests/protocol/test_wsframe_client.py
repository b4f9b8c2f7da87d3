"""The client-frame fast parser, as the trio session uses it: what it takes and what it
leaves to wsproto."""

from __future__ import annotations

import struct

from cableway.protocol.wsframe import parse_client_frame

MASK = b"\x01\x02\x03\x04"


def _frame(b0: int, payload: bytes, *, n16: bool = False) -> bytes:
    n = len(payload)
    head = (
        bytes((b0, 0x80 | n)) if n < 126 and not n16 else bytes((b0, 0xFE)) + struct.pack("!H", n)
    )
    return head + MASK + bytes(c ^ MASK[k % 4] for k, c in enumerate(payload))


def test_back_to_back_frames_are_read_in_turn() -> None:
    data = _frame(0x81, "h\u00e9".encode()) + _frame(0x82, b"\x00\xff")
    first = parse_client_frame(data, 0, 512)
    assert first is not None
    assert first[0] == "h\u00e9"
    second = parse_client_frame(data, first[1], 512)
    assert second == (b"\x00\xff", len(data))


def test_a_16_bit_length_is_read_when_minimal() -> None:
    data = _frame(0x81, b"x" * 300)
    assert parse_client_frame(data, 0, 512) == ("x" * 300, len(data))
    assert parse_client_frame(_frame(0x81, b"short", n16=True), 0, 512) is None


def test_what_is_left_to_wsproto() -> None:
    whole = _frame(0x81, b"hello")
    assert parse_client_frame(whole[:-1], 0, 512) is None  # partial
    assert parse_client_frame(_frame(0x01, b"par"), 0, 512) is None  # not final
    assert parse_client_frame(_frame(0x89, b"p"), 0, 512) is None  # control (ping)
    assert parse_client_frame(b"\x81\x05hello", 0, 512) is None  # not masked
    assert parse_client_frame(_frame(0x81, b"\xc3\x28"), 0, 512) is None  # not UTF-8
    assert parse_client_frame(_frame(0x81, b"y" * 513), 0, 512) is None  # over the limit
