# Invariant: the upgrade fast path answers every head exactly as h11's path does.
"""Fuzz the WebSocket upgrade fast path (``cableway.transport.upgrade.fast_upgrade``).

The first byte picks the mode:

* ``0x00``-``0x7F``: the rest is the request as it comes (raw bytes);
* ``0x80``-``0xFF``: the rest is split on ``0xFF``: the request target and extra header
  lines, put into a well-formed upgrade request (``Host``, ``Upgrade``, ``Connection``,
  a key, version 13), so the fuzzer starts from heads the fast path serves.

Each input is served through ``handle_connection`` on the main listener (the broadcast
endpoint on its own port, so the main one has the upgrade fast path), under a virtual
clock, with the fast path and with it switched off (every request h11's), each as it
comes, one byte per read, and over a socket pair with the whole input in the kernel
before the server reads (the fast path then serves a whole head from its first read,
before the connection's deadline scope: ``upgrade_at_once``). Then:

* ``handle_connection`` returns normally and closes the connection;
* nothing is logged at ERROR level;
* with and without the fast path, the server writes the same bytes up to the end of a
  ``101`` head (what follows holds a random session id): the same status, the same
  headers, the same refusals, the same requests upgraded.

Run: ``python fuzz/fuzz_upgrade_fast.py -runs=100000 -max_len=2048 fuzz/corpus/upgrade_fast/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from collections.abc import Iterator

import trio
import trio.lowlevel
import trio.testing

import cableway.transport.http as front
from cableway.config import Config
from cableway.transport.httpconn import Conn
from cableway.transport.server import Server

CONFIG = Config(
    host="127.0.0.1",
    port=0,
    http_broadcast_port=1,  # the broadcast endpoint on its own port
    path=("/cable", "/ws/:id"),
    turbo_streams=True,
    turbo_streams_secret="fuzz-turbo-key",
    max_message_size=4096,
    max_header_size=512,
)
STREAM_SECONDS = 30.0
TEMPLATE = (
    b"GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
)


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = ErrorLog()


@contextlib.contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger("cableway")
    ERRORS.records.clear()
    logger.addHandler(ERRORS)
    try:
        yield ERRORS.records
    finally:
        logger.removeHandler(ERRORS)


class ScriptedStream(trio.abc.Stream):
    """The server's end of a connection whose client sends ``data`` in reads of at most
    ``chunk`` bytes, then EOF; records what the server writes."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk
        self.pos = 0
        self.output = bytearray()
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.pos >= len(self.data):
            await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        size = min(self.chunk, max_bytes or self.chunk)
        piece = self.data[self.pos : self.pos + size]
        self.pos += len(piece)
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


async def _no_fast_path(server: object, conn: Conn, router: object) -> bool:
    conn.hand_over()  # every byte to h11 (none read yet): h11's path alone
    return False


async def _not_at_once(server: object, conn: Conn, router: object) -> None:
    return None  # nothing read: the connection goes on as without the early path


async def exchange(data: bytes, *, chunk: int) -> bytes:
    """Serve ``data`` (then EOF); everything the server wrote until it closed."""
    server = Server(CONFIG)
    server.random.seed(0)
    stream = ScriptedStream(data, chunk)
    with trio.move_on_after(STREAM_SECONDS) as scope:
        await front.handle_connection(server, stream, main=True)
    output = bytes(stream.output)
    if (scope.cancelled_caught or not stream.closed) and b"text/event-stream" not in output:
        raise AssertionError(f"the connection was left open: {output[:200]!r}")
    return output


def outcome(output: bytes) -> bytes:
    """The output up to the end of a 101 head (what follows holds a random sid)."""
    start = output.find(b"HTTP/1.1 101 ")
    if start < 0:
        return output
    end = output.find(b"\r\n\r\n", start)
    return output[: end + 4] if end >= 0 else output


#: the socket run only for inputs the socket buffer takes whole before the server reads
SOCKET_MAX_INPUT = 65536


async def exchange_socket(data: bytes) -> bytes:
    """Serve ``data`` (then EOF) over a socket pair, the whole input in the kernel
    before the server reads; everything the server wrote until it closed."""
    server = Server(CONFIG)
    server.random.seed(0)
    ours, theirs = socket.socketpair()
    with ours:
        ours.sendall(data)
        ours.shutdown(socket.SHUT_WR)
        client = trio.socket.from_stdlib_socket(ours)
        output = bytearray()
        closed = False

        async def drain() -> None:
            nonlocal closed
            with contextlib.suppress(ConnectionResetError):  # closed with input unread
                while chunk := await client.recv(65536):
                    output.extend(chunk)
            closed = True

        stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        with trio.move_on_after(STREAM_SECONDS):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await front.handle_connection(server, stream, main=True)
        with contextlib.suppress(OSError):
            theirs.close()
    result = bytes(output)
    if not closed:
        raise AssertionError(f"the connection was left open: {result[:200]!r}")
    return result


def serve(data: bytes, *, chunk: int, fast: bool) -> bytes:
    """``chunk`` 0: over a socket pair (:func:`exchange_socket`)."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    saved = front.fast_upgrade, front.upgrade_at_once
    if not fast:
        front.fast_upgrade = _no_fast_path  # type: ignore[assignment]
        front.upgrade_at_once = _not_at_once  # type: ignore[assignment]
    try:
        if chunk == 0:
            return trio.run(functools.partial(exchange_socket, data), clock=clock)
        return trio.run(functools.partial(exchange, data, chunk=chunk), clock=clock)
    finally:
        front.fast_upgrade, front.upgrade_at_once = saved


def request(data: bytes) -> bytes:
    if not data or data[0] < 0x80:
        return data[1:]
    target, _, lines = data[1:].partition(b"\xff")
    extra = b"".join(line + b"\r\n" for line in lines.split(b"\xff") if line)
    return TEMPLATE % (target or b"/cable", extra)


def test_one_input(data: bytes) -> None:
    raw = request(data)
    for chunk in (1 << 20, 1, 0) if len(raw) <= SOCKET_MAX_INPUT else (1 << 20, 1):
        with errors_logged() as errors:
            fast = outcome(serve(raw, chunk=chunk, fast=True))
            general = outcome(serve(raw, chunk=chunk, fast=False))
        assert not errors, [r.getMessage() for r in errors]
        assert fast == general, (raw, chunk, fast, general)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "h11", "wsproto"])
