"""Server-to-client WebSocket frames built once and shared by every recipient.

Server frames are never masked (RFC 6455 §5.1), so the bytes of a text frame depend
only on its payload: a broadcast is framed once and the same ``bytes`` object is queued
for each subscriber. Control frames and closes still go through wsproto.
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload
