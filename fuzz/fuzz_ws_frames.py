# Invariant: any bytes after an upgrade get valid frames back; close codes 1000/1002/1007/1009.
"""Fuzz WebSocket frames after a valid upgrade, through the real front door and driver.

Each input is the raw byte stream a client sends after a valid ``/cable`` upgrade
(frames must be masked; the seeds use the all-zero mask key, so their payloads read
as plain text); an input starting with ``FF FF`` is sent in the same read as the
upgrade request instead (a client that does not wait for the 101); one starting with
``FF FE`` goes to a server with ``--enable_ws_compression`` after an upgrade that offers
``permessage-deflate`` (its frames may be compressed: RSV1). It is served by
``handle_connection`` through a scripted in-memory stream under a virtual clock (pings
and close deadlines cost nothing), with a 512-byte message limit; the frames are sent
once the 101 is out, then EOF.
Then:

* ``handle_connection`` returns by itself and closes the connection, nothing is
  logged at ERROR level;
* the server's answer is the 101 head followed by well-formed server frames: final,
  no RSV bits (but RSV1 on the data frames of a compressing session, whose payloads
  inflate on their own, as ``server_no_context_takeover`` promises), unmasked, minimal
  length encoding, known opcodes, control payloads of at most 125 bytes, and nothing
  after a close frame;
* every text frame is a JSON object (a protocol message), valid UTF-8;
* a close frame carries 1000, 1002, 1007 or 1009 (normal, protocol error, invalid
  UTF-8, message too big), or echoes the code of the client's own close frame, and a
  UTF-8 reason;
* while it runs, the session never buffers more than the message limit plus one read
  of an unfinished message.

Run: ``python fuzz/fuzz_ws_frames.py -runs=100000 -max_len=4096 fuzz/corpus/ws_frames/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import struct
import zlib
from collections.abc import Iterator

import trio
import trio.lowlevel
import trio.testing

from cableway.config import Config
from cableway.transport.http import handle_connection
from cableway.transport.server import Server

MESSAGE_LIMIT = 512
READ_SIZE = 65536
CONFIG = Config(
    host="127.0.0.1",
    port=0,
    turbo_streams=True,
    turbo_streams_secret="fuzz-turbo-key",
    streams_secret="fuzz-streams-key",
    public_streams=True,
    max_message_size=MESSAGE_LIMIT,
    enable_native_pings=True,
)
UPGRADE = (
    b"GET /cable HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: actioncable-v1-json\r\nX-Request-ID: fuzz\r\n\r\n"
)
DEFLATE_CONFIG = dataclasses.replace(CONFIG, enable_ws_compression=True)
#: the upgrade of a browser, which offers compression
DEFLATE_UPGRADE = UPGRADE.replace(
    b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)
CLOSE_CODES = {1000, 1002, 1007, 1009}
#: an input starting with this sends its frames in the same read as the upgrade request
PIPELINED = b"\xff\xff"
#: an input starting with this offers compression to a server that has it on
DEFLATE = b"\xff\xfe"
SERVER_OPCODES = {0x1, 0x2, 0x8, 0x9, 0xA}


class ErrorLog(logging.Handler):
    """Collects ERROR records: the session logs bugs it caught there."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = ErrorLog()


@contextlib.contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """Collect the ERROR records of ``cableway`` loggers while the block runs."""
    logger = logging.getLogger("cableway")
    ERRORS.records.clear()
    logger.addHandler(ERRORS)
    try:
        yield ERRORS.records
    finally:
        logger.removeHandler(ERRORS)


class ScriptedClient(trio.abc.Stream):
    """The server's end of a connection whose client sends the upgrade, then (once the
    server has answered it, as RFC 6455 §4.1 asks) ``data``, then EOF. Records what the
    server writes and checks the session's buffer before every read."""

    def __init__(self, server: Server, data: bytes) -> None:
        self.server = server
        if data.startswith(PIPELINED):  # frames in the same read as the request
            self.pending = [UPGRADE + data[len(PIPELINED) :]]
        elif data.startswith(DEFLATE):
            self.pending = [DEFLATE_UPGRADE, data[len(DEFLATE) :]]
        else:
            self.pending = [UPGRADE, data]
        self.output = bytearray()
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        for session in self.server.sessions:
            buffered = getattr(session, "_parts_size", 0)
            assert buffered <= MESSAGE_LIMIT + READ_SIZE, buffered
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        while self.pending and not self.pending[0]:
            self.pending.pop(0)
        if not self.pending:
            return b""
        if not self.pending[0].startswith((UPGRADE, DEFLATE_UPGRADE)):
            assert b"\r\n\r\n" in self.output, "the server read frames before answering"
        size = max_bytes or 65536
        piece, self.pending[0] = self.pending[0][:size], self.pending[0][size:]
        return piece

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        self.output += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


async def exchange(data: bytes) -> bytes:
    server = Server(DEFLATE_CONFIG if data.startswith(DEFLATE) else CONFIG)
    server.random.seed(0)
    stream = ScriptedClient(server, data)
    with trio.fail_after(3600):  # virtual time: only a real hang gets here
        await handle_connection(server, stream, main=True)
    assert stream.closed, "the connection was left open"
    return bytes(stream.output)


def server_frames(data: bytes, *, deflate: bool = False) -> list[tuple[int, bytes]]:
    """Parse server frames strictly; (opcode, payload) for each, inflated when compressed
    (only with ``deflate``, only data frames)."""
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated frame header"
        first, second = data[pos], data[pos + 1]
        assert first & 0x80, "server frames are never fragmented"
        opcode = first & 0x0F
        compressed = deflate and opcode in (0x1, 0x2) and bool(first & 0x40)
        assert first & 0x70 == (0x40 if compressed else 0), "RSV bits set"
        assert opcode in SERVER_OPCODES, opcode
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            assert length >= 126, "non-minimal length"
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            assert length >= 65536, "non-minimal length"
            pos += 8
        payload = data[pos : pos + length]
        assert len(payload) == length, "truncated payload"
        pos += length
        if opcode >= 0x8:
            assert length <= 125, "control frame too long"
        if compressed:  # a fresh inflater: no context from earlier messages
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        frames.append((opcode, payload))
    return frames


def client_close_codes(data: bytes) -> set[int]:
    """The code of the first close frame the client sent (the one a server echoes), read
    by a plain walk over the client's frames. Close frames are never compressed, so the
    walk needs no inflater; it does not use wsproto's, which loses a fragmented message's
    compression when a control frame comes between its fragments (RFC 7692 allows that;
    wsproto 1.3 resets its per-message state on the ping and reads the next fragment as
    plain text)."""
    data = data.removeprefix(DEFLATE).removeprefix(PIPELINED)
    pos = 0
    while len(data) - pos >= 2:
        first, second = data[pos], data[pos + 1]
        length = second & 0x7F
        pos += 2
        if length == 126:
            if len(data) - pos < 2:
                break
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            if len(data) - pos < 8:
                break
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        key = data[pos : pos + 4] if second & 0x80 else b"\x00\x00\x00\x00"
        pos += 4 if second & 0x80 else 0
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos : pos + min(length, 2)]))
        pos += length
        if first & 0x0F == 0x8:
            return {struct.unpack("!H", payload)[0]} if len(payload) == 2 else set()
    return set()


def test_one_input(data: bytes) -> None:
    with errors_logged() as errors:
        output = trio.run(exchange, data, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not errors, [r.getMessage() for r in errors]
    head, sep, rest = output.partition(b"\r\n\r\n")
    assert sep, output[:200]
    assert head.startswith(b"HTTP/1.1 101 "), output[:200]
    deflate = data.startswith(DEFLATE)
    assert (b"permessage-deflate" in head.lower()) is deflate, head
    closed = False
    for opcode, payload in server_frames(rest, deflate=deflate):
        assert not closed, "a frame after the close frame"
        if opcode == 0x1:
            assert isinstance(json.loads(payload.decode("utf-8")), dict), payload
        elif opcode == 0x8:
            closed = True
            if payload:
                assert len(payload) >= 2, payload
                (code,) = struct.unpack_from("!H", payload)
                # or the client's own (valid) code, echoed in the close handshake
                assert code in CLOSE_CODES or code in client_close_codes(data), code
                payload[2:].decode("utf-8")


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "h11", "wsproto"])
