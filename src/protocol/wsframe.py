"""WebSocket frames on the fast path, both ways, pure.

Server frames are never masked (RFC 6455 §5.1), so the bytes of a text frame depend
only on its payload: a broadcast is framed once and the same ``bytes`` object is queued
for each subscriber (:func:`text_frame`). Control frames and closes still go through
wsproto.

Client frames of the common kind (a whole, final, masked text or binary frame with a
minimal length under the message size limit, valid UTF-8 for text) are parsed by
:func:`parse_client_frame`; the driver hands anything else (a partial or fragmented
frame, a control frame, an invalid one) to wsproto from that frame on. The parser is a
plain function of bytes, so ``fuzz/fuzz_ws_client_frames.py`` compares it with wsproto
without a server or an event loop.
"""

from __future__ import annotations

import struct

__all__ = ["parse_client_frame", "text_frame", "unmask"]

_U16 = struct.Struct("!H")


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def unmask(mask: bytes, payload: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``mask`` repeated (RFC 6455 §5.3)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def parse_client_frame(data: bytes, i: int, limit: int) -> tuple[str | bytes, int] | None:
    """The message of the client frame at ``data[i:]`` and the offset after it.

    ``None`` when the frame there is not a whole, simple one (see the module docstring):
    not enough bytes yet, not final, a control or continuation frame, RSV bits, not
    masked, a 64-bit or non-minimal length, a payload over ``limit`` bytes, or text that
    is not UTF-8. The caller then hands ``data[i:]`` to a full parser.
    """
    end = len(data)
    if end - i < 6:
        return None
    b0, b1 = data[i], data[i + 1]
    n = b1 & 0x7F
    if b0 not in (0x81, 0x82) or not b1 & 0x80 or n == 127:
        return None
    head = i + 2
    if n == 126:
        if end - i < 8:
            return None
        n = _U16.unpack_from(data, head)[0]
        if n < 126:
            return None
        head += 2
    start = head + 4
    stop = start + n
    if stop > end or n > limit:
        return None
    payload = unmask(data[head:start], data[start:stop])
    if b0 == 0x82:
        return payload, stop
    try:
        return payload.decode("utf-8"), stop
    except UnicodeDecodeError:
        return None
