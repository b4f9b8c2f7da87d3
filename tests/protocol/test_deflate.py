"""permessage-deflate (RFC 7692), pure: what is negotiated, what goes on the wire, and how a
compressed client message is inflated (bounded)."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from cableway.protocol.handshake import Deflate, negotiate_deflate, websocket_open
from cableway.protocol.wsframe import (
    COMPRESS_MIN_SIZE,
    Deflater,
    FrameRefused,
    Inflater,
    deflater,
    inflate_message,
    parse_client_frame,
    text_frame,
)

BASE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
HTML = (
    '<turbo-stream action="append" target="messages"><template>'
    + "".join(
        f'<div id="message_{i}" class="message"><p class="author">user {i}</p>'
        f'<p class="body">Message number {i} in the room.</p></div>'
        for i in range(12)
    )
    + "</template></turbo-stream>"
).encode()


def client_deflate(payload: bytes, bits: int = 15) -> bytes:
    """What a client sends: raw deflate, sync-flushed, without the 4-byte tail."""
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def client_frame(payload: bytes, *, opcode: int = 0x1, rsv1: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def client_inflate(data: bytes, bits: int = 15) -> bytes:
    """What a client does with a compressed message (a fresh context each time)."""
    return zlib.decompressobj(-bits).decompress(data + b"\x00\x00\xff\xff")


# -- negotiation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; client_max_window_bits",  # Chromium, Firefox, Safari
        "permessage-deflate",
        "Permessage-Deflate ; Client_No_Context_Takeover",
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
        "x-webkit-deflate-frame, permessage-deflate",
        "permessage-deflate; server_max_window_bits=15",
    ],
)
def test_common_offers_are_accepted_without_context_takeover(offer: str) -> None:
    deflate = negotiate_deflate(offer)
    assert deflate is not None
    assert deflate.server_max_window_bits == 15
    assert deflate.response.startswith(BASE)
    assert deflate.wire_kind == "ws+deflate"


def test_a_smaller_server_window_is_honoured_and_echoed() -> None:
    deflate = negotiate_deflate('permessage-deflate; server_max_window_bits="10"')
    assert deflate == Deflate(server_max_window_bits=10, window_requested=True)
    assert deflate.response == BASE + "; server_max_window_bits=10"
    assert deflate.wire_kind == "ws+deflate10"


@pytest.mark.parametrize(
    "offer",
    [
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8",  # zlib has no 256-byte raw window
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; mystery_param",
    ],
)
def test_offers_the_server_cannot_honour_are_declined(offer: str) -> None:
    assert negotiate_deflate(offer) is None


def test_a_declined_offer_falls_back_to_the_next_one() -> None:
    offer = "permessage-deflate; server_max_window_bits=8, permessage-deflate; bogus, permessage-deflate"
    assert negotiate_deflate(offer) == Deflate()


@pytest.mark.parametrize("compression", [False, True])
def test_websocket_open_negotiates_only_when_enabled(compression: bool) -> None:
    opening = websocket_open(
        headers={"sec-websocket-extensions": "permessage-deflate; client_max_window_bits"},
        query="",
        subprotocols=["actioncable-v1-json"],
        fresh_sid="s",
        jwt_param="jid",
        ping_interval=3.0,
        ping_precision="s",
        compression=compression,
    )
    assert (opening.deflate is not None) is compression


# -- server frames ---------------------------------------------------------------------


def test_each_message_is_compressed_on_its_own() -> None:
    shared = deflater()
    first = shared.compress(HTML)
    second = shared.compress(HTML.replace(b"room", b"hall"))
    # the same bytes whatever was compressed before (what lets a broadcast be shared) ...
    assert shared.compress(HTML) == first == Deflater().compress(HTML)
    # ... and each inflates with a fresh context (server_no_context_takeover)
    assert client_inflate(first) == HTML
    assert client_inflate(second) == HTML.replace(b"room", b"hall")
    assert len(first) * 3 <= len(HTML)


def test_a_small_window_is_kept_to() -> None:
    payload = b"".join(b"%05d-" % (i % 700) for i in range(5000))  # repeats 3500 bytes apart
    data = Deflater(9).compress(payload)
    # a 512-byte inflater fails on any distance beyond its window
    assert client_inflate(data, bits=9) == payload


def test_frames_set_rsv1_only_on_compressed_payloads() -> None:
    shared = deflater()
    small = b"x" * (COMPRESS_MIN_SIZE - 1)
    assert shared.frame(small) == text_frame(small)
    frame = shared.frame(HTML)
    assert frame[0] == 0xC1  # FIN, RSV1, text
    length = frame[1] if frame[1] < 126 else int.from_bytes(frame[2:4], "big")
    body = frame[-length:]
    assert client_inflate(body) == HTML
    assert shared.frame(HTML, binary=True)[0] == 0xC2


# -- client frames ---------------------------------------------------------------------


def test_a_compressed_client_frame_is_inflated() -> None:
    data = client_frame(client_deflate(b'{"command":"ping"}')) + client_frame(b"x", rsv1=False)
    message, i = parse_client_frame(data, 0, 65536, deflate=True) or ("", 0)
    assert message == '{"command":"ping"}'
    assert parse_client_frame(data, i, 65536, deflate=True) == ("x", len(data))


def test_rsv1_is_left_to_the_full_parser_without_compression() -> None:
    assert parse_client_frame(client_frame(client_deflate(b"ping")), 0, 65536) is None


def test_compressed_text_that_is_not_utf8_closes_1007() -> None:
    with pytest.raises(FrameRefused) as refused:
        parse_client_frame(client_frame(client_deflate(b"\xff\xfe")), 0, 65536, deflate=True)
    assert refused.value.code == 1007


def test_garbage_deflate_data_closes_1007() -> None:
    with pytest.raises(FrameRefused) as refused:
        inflate_message(b"\xff\xff\xff\xff", 65536)
    assert refused.value.code == 1007


def test_a_message_at_the_limit_passes_and_one_byte_more_closes_1009() -> None:
    assert inflate_message(client_deflate(b"a" * 1000), 1000) == b"a" * 1000
    with pytest.raises(FrameRefused) as refused:
        inflate_message(client_deflate(b"a" * 1001), 1000)
    assert refused.value.code == 1009


def test_a_zip_bomb_closes_1009_without_inflating_it() -> None:
    bomb = client_deflate(b"\x00" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 70_000
    tracemalloc.start()
    try:
        with pytest.raises(FrameRefused) as refused:
            parse_client_frame(client_frame(bomb, opcode=0x2), 0, 1 << 20, deflate=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code == 1009
    # the limit (1 MiB) and the frame, never the 64 MiB
    assert peak < 4 * 1024 * 1024


def test_an_inflater_fed_in_pieces_is_bounded_across_them() -> None:
    data = client_deflate(b"z" * 5000)
    inflater = Inflater(4000)
    pieces = [data[i : i + 3] for i in range(0, len(data), 3)]
    fed = 0

    def feed_all() -> None:
        nonlocal fed
        for piece in pieces:
            fed += len(inflater.feed(piece))
        inflater.finish()

    with pytest.raises(FrameRefused) as refused:
        feed_all()
    assert refused.value.code == 1009
    assert fed <= 4000
