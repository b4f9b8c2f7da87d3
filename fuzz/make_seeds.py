"""Write the hand-made seeds whose bytes are awkward to type (frames, tokens, signatures).

Run ``python fuzz/make_seeds.py`` from the repository root; it (re)writes the named
files below in ``fuzz/corpus/<harness>/`` and leaves every other file alone. The text
seeds of ``session`` and ``http_front`` are plain files edited by hand.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from cableway.auth.signed_streams import sign_stream_name

CORPUS = Path(__file__).resolve().parent / "corpus"


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, size: str = "") -> bytes:
    """A client frame masked with the all-zero key (so the payload stays readable)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    if size == "64" or n >= 65536:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    elif size == "16" or n >= 126:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | n])
    return head + b"\0\0\0\0" + payload


def text(data: str, **kw: object) -> bytes:
    return frame(0x1, data.encode(), **kw)  # type: ignore[arg-type]


def command(**fields: object) -> bytes:
    return text(json.dumps(fields))


def ws_frames() -> dict[str, bytes]:
    turbo = json.dumps(
        {
            "channel": "Turbo::StreamsChannel",
            "signed_stream_name": sign_stream_name("chat", "fuzz-turbo-key"),
        }
    )
    close = frame(0x8, struct.pack("!H", 1000) + b"bye")
    return {
        "subscribe_ping_close": command(command="subscribe", identifier=turbo)
        + command(command="ping")
        + frame(0x9, b"hello")
        + close,
        "fragmented_text": text('{"command":', fin=False)
        + frame(0x9, b"between")
        + frame(0x0, b'"ping"}', fin=True)
        + close,
        "binary_command": frame(0x2, b'{"command":"ping"}') + close,
        "too_big_1009": text("x" * 600) + close,
        "too_big_in_fragments": text("y" * 300, fin=False) + frame(0x0, b"z" * 300) + close,
        "invalid_utf8_1007": frame(0x1, b"\xff\xfe") + close,
        "rsv_bit_1002": text("{}", rsv=4),
        "reserved_opcode": frame(0x3, b"?"),
        "control_too_long": frame(0x9, b"p" * 126, size="16"),
        "fragmented_control": frame(0x9, b"p", fin=False),
        "continuation_without_start": frame(0x0, b"x"),
        "close_bad_code": frame(0x8, struct.pack("!H", 999)),
        "close_one_byte": frame(0x8, b"\x03"),
        "unmasked": b"\x81\x02{}",
        "non_minimal_length": text("{}", size="64") + close,
        "huge_declared_length": b"\x82\xff" + struct.pack("!Q", 1 << 62) + b"\0\0\0\0" + b"a" * 64,
        "pipelined_with_the_upgrade": b"\xff\xff" + command(command="ping") + close,
        # compression offered and on: compressed commands, a subscribe, a fragmented compressed
        # message with a ping inside, a compressed bomb (1009)
        "deflate_commands": b"\xff\xfe"
        + frame(0x1, _deflate(b'{"command":"ping"}'), rsv=4)
        + frame(
            0x1, _deflate(json.dumps({"command": "subscribe", "identifier": turbo}).encode()), rsv=4
        )
        + frame(0x1, _deflate(b'{"command":"ping"}')[:4], rsv=4, fin=False)
        + frame(0x9, b"between")
        + frame(0x0, _deflate(b'{"command":"ping"}')[4:])
        + close,
        "deflate_bomb_1009": b"\xff\xfe" + frame(0x2, _deflate(b" " * 100_000), rsv=4) + close,
        "garbage_commands": command(command="subscribe", identifier=42)
        + text("[1,2,3]")
        + text("null")
        + text('{"command":"unsubscribe","identifier":"nope"}')
        + close,
    }


def _deflate(data: bytes, *, final: bool = False) -> bytes:
    """Raw deflate as a client sends it: sync-flushed, the 4-byte tail removed (or one
    final block, RFC 7692 §7.2.3.4)."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    if final:
        return z.compress(data) + z.flush(zlib.Z_FINISH)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def ws_deflate() -> dict[str, bytes]:
    """Seeds of fuzz_ws_deflate.py: a mode byte (0 raw, 1 payload of an RSV1 frame,
    2 server round trip; bit 7: binary), then the data."""
    ping = b'{"command":"ping"}'
    return {
        "raw_compressed_ping": b"\x00" + frame(0x1, _deflate(ping), rsv=4),
        "raw_compressed_then_plain": b"\x00" + frame(0x2, _deflate(ping), rsv=4) + frame(0x1, ping),
        "payload_ping": b"\x01" + _deflate(ping),
        "payload_final_block": b"\x01" + _deflate(ping, final=True),
        "payload_binary_bomb_1009": b"\x81" + _deflate(b"\0" * 100_000),
        "payload_bad_utf8_1007": b"\x01" + _deflate(b"\xff\xfe"),
        "payload_garbage_1007": b"\x01\xff\xff\xff\xff",
        "payload_empty": b"\x01\x00",
        "roundtrip_html": b"\x02" + b'<turbo-stream action="append"><template>x</template>' * 8,
    }


def jwt() -> dict[str, bytes]:
    header = b'{"alg":"HS256","typ":"JWT"}'
    return {
        "valid": b"\x80" + header + b'\xff{"ext":"{\\"user\\":1}","exp":1900000000}',
        "expired": b"\x80" + header + b'\xff{"ext":"{\\"user\\":1}","exp":1600000000}',
        "ext_not_object": b"\x81" + b'{"alg":"HS384"}' + b'\xff{"ext":"[1]"}',
        "alg_none": b"\x82" + b'{"alg":"none"}' + b'\xff{"ext":"{}"}',
        "nbf_future": b"\x80" + header + b'\xff{"ext":"{}","nbf":1900000000}',
        "exp_nan": b"\x80" + header + b'\xff{"ext":"{}","exp":NaN}',
        "raw_garbage": b"\x00eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
        "raw_dots": b"\x00...",
    }


def signed_streams() -> dict[str, bytes]:
    good = sign_stream_name("chat/42", "fuzz-streams-key")
    data, _, digest = good.partition("--")
    return {
        "valid": b"\x00" + good.encode(),
        "bad_digest": b"\x00" + data.encode() + b"--" + b"0" * len(digest),
        "three_parts": b"\x00a--b--c",
        "roundtrip_unicode": '\x01chat/✓ "quoted"'.encode(),
        "payload_not_json": b"\x02bm90IGpzb24=",
        "payload_number": b"\x02NDI=",
        "payload_bad_base64": b"\x02!!!!",
        "identifier_turbo": b"\x03"
        + json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": good}).encode(),
        "identifier_public": b'\x03{"channel":"$pubsub","stream_name":"room"}',
        "identifier_deep": b"\x03" + b"[" * 5000,
    }


def main() -> None:
    for name, seeds in (
        ("ws_frames", ws_frames()),
        ("ws_deflate", ws_deflate()),
        ("jwt", jwt()),
        ("signed_streams", signed_streams()),
    ):
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed, data in seeds.items():
            (folder / seed).write_bytes(data)


if __name__ == "__main__":
    main()
