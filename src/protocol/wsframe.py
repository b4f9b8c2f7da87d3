"""WebSocket frames on the fast path, both ways, pure.

Server frames are never masked (RFC 6455 §5.1), so the bytes of a text frame depend
only on its payload: a broadcast is framed once and the same ``bytes`` object is queued
for each subscriber (:func:`text_frame`). Control frames and closes still go through
wsproto.

Compression (permessage-deflate, RFC 7692) keeps that property: the server always
negotiates ``server_no_context_takeover``, so every message is compressed on its own
(:class:`Deflater`) and its compressed frame depends only on the payload and the
negotiated window; one broadcast is compressed once per window size. Clients are asked
for ``client_no_context_takeover`` too, so each compressed client message is inflated on
its own (:func:`inflate_message`, :class:`Inflater`), bounded by the message size limit.

Client frames of the common kind (a whole, final, masked text or binary frame with a
minimal length under the message size limit, valid UTF-8 for text) are parsed by
:func:`parse_client_frame`; the driver hands anything else (a partial or fragmented
frame, a control frame, an invalid one) to wsproto from that frame on. The parser is a
plain function of bytes, so ``fuzz/fuzz_ws_client_frames.py`` compares it with wsproto
without a server or an event loop.
"""

from __future__ import annotations

import struct
import zlib

__all__ = [
    "COMPRESS_MIN_SIZE",
    "Deflater",
    "FrameRefused",
    "Inflater",
    "data_frame",
    "deflater",
    "inflate_message",
    "parse_client_frame",
    "text_frame",
    "unmask",
]

_U16 = struct.Struct("!H")

#: The empty stored block a sync or full flush ends with; RFC 7692 §7.2.1 removes it
#: from a compressed message and §7.2.2 appends it again before inflating.
_TAIL = b"\x00\x00\xff\xff"
#: Payloads shorter than this go out uncompressed (RSV1 off, allowed by RFC 7692 §6):
#: deflate saves a few bytes at most there and costs more than the frame (bench/compression.py).
COMPRESS_MIN_SIZE = 128
#: zlib's default level. AnyCable-Go's gorilla/websocket uses 1; on a Turbo Stream message
#: compressed on its own, 6 is a few percent smaller and no slower (bench/compression.py).
_LEVEL = 6


class FrameRefused(Exception):
    """A whole client frame that ends the connection with close ``code`` (``reason``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def data_frame(payload: bytes, *, binary: bool = False, compressed: bool = False) -> bytes:
    """One final, unmasked data frame carrying ``payload`` as it is (``compressed`` sets
    RSV1: the payload is already deflated)."""
    b0 = (0x82 if binary else 0x81) | (0x40 if compressed else 0)
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Deflater:
    """Compressed frames for the clients that negotiated one server window size.

    No context is carried from one message to the next: each message ends with a full
    flush, which empties zlib's history (no later message refers back into it) and ends
    on a byte boundary with the empty stored block, so one zlib stream serves every
    message, and the frame of a message depends only on its payload. This is what
    ``server_no_context_takeover`` promises the client, and what lets a broadcast be
    compressed once for all its subscribers.
    """

    __slots__ = ("_zlib", "window_bits")

    def __init__(self, window_bits: int = 15) -> None:
        #: the server's LZ77 window, 2**window_bits bytes (9..15; zlib has no 8 for raw
        #: deflate, so an offer of 8 is declined: :mod:`cableway.protocol.handshake`)
        self.window_bits = window_bits
        self._zlib = zlib.compressobj(_LEVEL, zlib.DEFLATED, -window_bits)

    def compress(self, payload: bytes) -> bytes:
        """``payload`` as one independent compressed message (RFC 7692 §7.2.1)."""
        z = self._zlib
        return (z.compress(payload) + z.flush(zlib.Z_FULL_FLUSH))[:-4]

    def frame(self, payload: bytes, *, binary: bool = False) -> bytes:
        """One final data frame carrying ``payload``: compressed (RSV1) unless it is
        shorter than :data:`COMPRESS_MIN_SIZE`."""
        if len(payload) < COMPRESS_MIN_SIZE:
            return data_frame(payload, binary=binary)
        return data_frame(self.compress(payload), binary=binary, compressed=True)


_DEFLATERS: dict[int, Deflater] = {}


def deflater(window_bits: int = 15) -> Deflater:
    """The shared :class:`Deflater` of a window size (its output depends on nothing
    else, so one per window size serves every session)."""
    found = _DEFLATERS.get(window_bits)
    if found is None:
        found = _DEFLATERS[window_bits] = Deflater(window_bits)
    return found


class Inflater:
    """One compressed client message, inflated as its frames arrive, bounded.

    Raises :class:`FrameRefused` with 1009 as soon as the output would exceed ``limit``
    bytes (so a small "zip bomb" never grows past the limit in memory) and with 1007
    when the data is not valid deflate. A fresh inflater per message: the client was
    asked for ``client_no_context_takeover``.
    """

    __slots__ = ("_size", "_zlib", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._size = 0
        # 15 bits: the largest window, so any window the client used is covered
        self._zlib = zlib.decompressobj(-15)

    def feed(self, data: bytes) -> bytes:
        """Inflate the next compressed bytes of the message."""
        z = self._zlib
        if z.eof:  # a final deflate block ended the message (RFC 7692 §7.2.3.4)
            return b""
        room = self.limit - self._size
        try:
            out = z.decompress(data, room + 1)
        except zlib.error:
            raise FrameRefused(1007, "invalid compressed data") from None
        self._size += len(out)
        if self._size > self.limit:
            raise FrameRefused(1009, "message too big")
        return out

    def finish(self) -> bytes:
        """The rest of the message, after its last frame."""
        return self.feed(_TAIL)


def inflate_message(payload: bytes, limit: int) -> bytes:
    """A whole compressed message (the payload of one final RSV1 frame), inflated;
    :class:`FrameRefused` as for :class:`Inflater`."""
    inflater = Inflater(limit)
    return inflater.feed(payload) + inflater.finish()


def unmask(mask: bytes, payload: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``mask`` repeated (RFC 6455 §5.3)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def parse_client_frame(
    data: bytes, i: int, limit: int, *, deflate: bool = False
) -> tuple[str | bytes, int] | None:
    """The message of the client frame at ``data[i:]`` and the offset after it.

    ``None`` when the frame there is not a whole, simple one (see the module docstring):
    not enough bytes yet, not final, a control or continuation frame, RSV bits, not
    masked, a 64-bit or non-minimal length, a payload over ``limit`` bytes, or text that
    is not UTF-8. The caller then hands ``data[i:]`` to a full parser.

    With ``deflate`` (permessage-deflate was negotiated) a final frame with RSV1 is a
    whole compressed message: it is inflated here, and since that cannot be undone, a
    result that is not a message raises :class:`FrameRefused` (1009 when it inflates past
    ``limit`` bytes, 1007 for bad deflate data or text that is not UTF-8) instead of
    returning ``None``.
    """
    end = len(data)
    if end - i < 6:
        return None
    b0, b1 = data[i], data[i + 1]
    n = b1 & 0x7F
    compressed = False
    if deflate and b0 in (0xC1, 0xC2):
        compressed = True
        b0 &= 0xBF
    elif b0 not in (0x81, 0x82):
        return None
    if not b1 & 0x80 or n == 127:
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
    if compressed:
        payload = inflate_message(payload, limit)
    if b0 == 0x82:
        return payload, stop
    try:
        return payload.decode("utf-8"), stop
    except UnicodeDecodeError:
        if compressed:
            raise FrameRefused(1007, "invalid UTF-8") from None
        return None
