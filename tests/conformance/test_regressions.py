"""Regression tests for bugs the conformance work found.

A bug reported but not fixed yet has a test here marked ``xfail(strict=True)`` (at the
end), which fails the suite once the fix lands so that the marker goes (and with it the
fuzz harness's ``known_bug`` tolerance; the input then becomes a corpus file).

The fuzz reproducers of the other bugs are corpus files, replayed by
``tests/test_fuzz_corpus.py``: ``fuzz/corpus/http_front/head_limit_depends_on_chunking``,
``fuzz/corpus/http_front/broadcast_lone_surrogate`` and
``fuzz/corpus/session/lone_surrogate_identifier`` and
``fuzz/corpus/http_front/head_ended_by_lf_crlf`` and
``fuzz/corpus/http_front/head_request_too_large_gets_431`` (see docs/conformance.md).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import struct
from collections.abc import Callable
from pathlib import Path

import trio
import trio.testing

from cableway.config import Config
from cableway.transport.http import handle_connection
from cableway.transport.server import Server

# -- WebSocket driver -------------------------------------------------------------------

CONFIG = Config(host="127.0.0.1", port=0, turbo_streams=True, turbo_streams_secret="k")
UPGRADE = (
    b"GET /cable HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
)


def _frame(opcode: int, payload: bytes, *, rsv: int = 0) -> bytes:
    """A client frame masked with the all-zero key."""
    assert len(payload) < 126
    return bytes([0x80 | rsv << 4 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def _read_until(stream: trio.abc.Stream, marker: bytes, buffer: bytearray) -> None:
    while marker not in buffer:
        data = await stream.receive_some(65536)
        assert data, f"EOF before {marker!r}"
        buffer += data


async def test_tcp_is_closed_promptly_after_a_protocol_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a frame wsproto cannot parse, its parser reports nothing more -- not even
    the client's close reply -- so the server must not wait for one (it used to keep
    the connection for 2 s: Autobahn's 113 'FAILED BY CLIENT' close results)."""
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: handle_connection(Server(CONFIG), server_end, main=True))
        buffer = bytearray()
        await client.send_all(UPGRADE)
        await _read_until(client, b"\r\n\r\n", buffer)
        await client.send_all(_frame(0x1, b"{}", rsv=4))  # RSV1 set: close 1002
        await _read_until(client, b"\x88", buffer)
        failed = trio.current_time()
        with contextlib.suppress(trio.BrokenResourceError):  # the server may be gone
            await client.send_all(_frame(0x8, struct.pack("!H", 1002)))  # the close reply
        with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
            while await client.receive_some(65536):
                pass
        assert trio.current_time() - failed < 0.5


async def test_frames_pipelined_with_the_upgrade_are_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Frames read together with the upgrade request (h11's trailing data) used to wait
    until the client sent more."""
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: handle_connection(Server(CONFIG), server_end, main=True))
        buffer = bytearray()
        await client.send_all(UPGRADE + _frame(0x1, json.dumps({"command": "ping"}).encode()))
        with trio.move_on_after(2):
            await _read_until(client, b'{"type":"pong"}', buffer)
        nursery.cancel_scope.cancel()
    assert b'{"type":"pong"}' in buffer


# -- known bugs (reported, not fixed yet) --------------------------------------------

#: two requests in one read; the second one's head is over the 512-byte limit of the harness
PIPELINED_BIG_HEAD = (
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /nope HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 600 + b"\r\n\r\n"
)


def test_a_pipelined_request_head_is_bounded_like_any_other() -> None:
    _http_front_check()(PIPELINED_BIG_HEAD, tolerate=False)


async def test_head_requests_are_answered_without_a_body() -> None:
    """A HEAD answer had a body, which h11 refuses to send: ``HEAD /health`` got no
    answer at all, and a too-large HEAD head no 431 when it arrived whole (the fuzzer's
    ``head_request_too_large_gets_431``)."""
    server = Server(CONFIG)
    big = b"HEAD /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"
    for request, status in [(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", b"200"), (big, b"431")]:
        client, served = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(handle_connection, server, served, main=True))
            await client.send_all(request)
            await client.send_eof()
            output = bytearray()
            with trio.fail_after(5):
                while data := await client.receive_some():
                    output += data
        head, _, body = bytes(output).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status + b" ")
        assert b"content-length: " in head.lower()
        assert body == b""  # HEAD: the headers of a GET, never a body


def _http_front_check() -> Callable[..., None]:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_http_front.py"
    spec = importlib.util.spec_from_file_location("regression_http_front", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check  # type: ignore[no-any-return]
