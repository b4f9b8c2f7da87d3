"""Fuzz the inbound permessage-deflate path: the fast parser's inflating branch
(:func:`cableway.protocol.wsframe.parse_client_frame` with ``deflate=True``) against the
driver's wsproto extension (``cableway.transport.ws._InboundDeflate``), and the server's
:class:`~cableway.protocol.wsframe.Deflater` against the inflater.

The first input byte picks a mode (its low 7 bits modulo 3), the rest is the data:

* 0: raw client bytes after the upgrade;
* 1: the data as the payload of one masked, final, compressed (RSV1) frame, text or binary
  (bit 7 of the mode byte), so the fuzzer reaches the inflater with arbitrary deflate data;
* 2: the data compressed by the server's :class:`Deflater` and inflated back.

Invariants: the fast parser returns ``None``, a message, or raises ``FrameRefused`` with
1007 or 1009, nothing else; no inflated message exceeds the limit; for a compressed frame
it decides, wsproto with the driver's extension decides the same (the same message, or a
close with the same code), whether it gets the frame whole or split in two fragments at a
point the input picks; and (mode 2) what the server compresses inflates to the same bytes.

Run: ``python fuzz/fuzz_ws_deflate.py -runs=200000 -max_len=4096 fuzz/corpus/ws_deflate/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import struct

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from cableway.protocol.wsframe import (
    Deflater,
    FrameRefused,
    inflate_message,
    parse_client_frame,
    unmask,
)
from cableway.transport.ws import _InboundDeflate

MESSAGE_LIMIT = 2048


def frame(payload: bytes, *, opcode: int, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame masked with the all-zero key."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


def wsproto_reads(data: bytes) -> tuple[str, str | bytes] | None:
    """The first finished message or close a server wsproto with the driver's extension
    makes of ``data``; ``None`` when it needs more bytes."""
    peer = Connection(ConnectionType.SERVER, [_InboundDeflate(MESSAGE_LIMIT)])
    peer.receive_data(data)
    parts: list[str | bytes] = []
    for event in peer.events():
        if isinstance(event, TextMessage | BytesMessage):
            part = event.data if isinstance(event.data, str) else bytes(event.data)
            parts.append(part)
            if event.message_finished:
                if isinstance(part, str):
                    return "text", "".join(str(p) for p in parts)
                return "bytes", b"".join(p for p in parts if isinstance(p, bytes))
        elif isinstance(event, CloseConnection):
            return "close", str(event.code)
    return None


def fast_reads(data: bytes) -> tuple[str, str | bytes] | None:
    try:
        parsed = parse_client_frame(data, 0, MESSAGE_LIMIT, deflate=True)
    except FrameRefused as refused:
        code = refused.code
    else:
        code = 0
    if code:
        assert code in (1007, 1009), code
        return "close", str(code)
    if parsed is None:
        return None
    message, after = parsed
    assert 0 < after <= len(data), after
    size = len(message.encode("utf-8")) if isinstance(message, str) else len(message)
    assert size <= MESSAGE_LIMIT, size
    return ("text" if isinstance(message, str) else "bytes"), message


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    kind = (mode & 0x7F) % 3
    if kind == 2:
        compressed = Deflater().compress(rest)
        assert inflate_message(compressed, len(rest)) == rest
        return
    opcode = 0x2 if mode & 0x80 else 0x1
    stream = frame(rest, opcode=opcode, rsv1=True) if kind == 1 else rest
    fast = fast_reads(stream)
    if fast is None or not stream[0] & 0x40:
        return  # declined, or an uncompressed frame (fuzz_ws_client_frames covers it)
    # the frame the fast path took, as wsproto reads it whole and in two fragments
    assert wsproto_reads(stream) == fast, (stream, fast)
    n = stream[1] & 0x7F
    head = 8 if n == 126 else 6
    size = struct.unpack_from("!H", stream, 2)[0] if n == 126 else n
    payload = unmask(stream[head - 4 : head], stream[head : head + size])
    cut = rest[0] % (len(payload) + 1) if rest else 0
    split = frame(payload[:cut], opcode=stream[0] & 0x0F, fin=False, rsv1=True) + frame(
        payload[cut:], opcode=0x0
    )
    assert wsproto_reads(split) == fast, (split, fast)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "wsproto"])
