# Invariant: broadcasts served in the read poller's task give what the connection's own task gives.
"""Fuzz the broadcast fast path's reads served in the read poller's task
(``cableway.transport.httpconn.Conn.readable`` with
``cableway.transport.broadcast_endpoint.serve_read``: one task step per read) against
the same connection served by its own task (``wait_readable``, no poller).

The input: one byte that picks the chunk size (1-255 bytes; 0: the whole rest at
once), one byte that picks a pause between chunks (0-3.98 virtual seconds, in steps
of 1/64 s: the head deadline is 1 s, so pauses cross it), then the raw bytes a client
sends to the broadcast endpoint. The same server (the broadcast endpoint on the main
port, with a key and a WebSocket subscriber of ``chat``; ``fuzz_http_front``'s) serves
one connection over a socket pair twice under a virtual clock: once with the node's
:class:`~cableway.transport.poller.ReadPoller` running (as while the server runs),
once without. The bytes go to it chunk by chunk, each once everything else waits
(after the pause), then EOF. Invariant: both runs end by themselves, leave nothing
parked in the poller, log no error, end with the same counters (broadcasts, deliveries,
bytes) and the same body budget (none held), and the client receives the same bytes,
byte for byte, at the same virtual times.

Run: ``python fuzz/fuzz_broadcast_poller.py -runs=100000 -max_len=2048
fuzz/corpus/broadcast_poller/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket

import trio
import trio.testing

from cableway.auth.signed_streams import sign_stream_name
from cableway.config import Config
from cableway.protocol.connection import CableConnection
from cableway.transport.http import handle_connection
from cableway.transport.poller import ReadPoller
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

CONFIG = Config(
    host="127.0.0.1",
    port=0,
    http_broadcast_port=0,  # the broadcast endpoint on the main port
    broadcast_key="fuzz-broadcast-key",
    turbo_streams=True,
    turbo_streams_secret="fuzz-turbo-key",
    max_message_size=4096,
    max_header_size=512,
    max_broadcast_body=1024,
    handshake_timeout=1.0,
)
#: the longest a connection may take (virtual seconds): far beyond any deadline
LIMIT_SECONDS = 600.0


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _Sink(trio.abc.Stream):
    """The subscriber's stream: never read (its session is never run)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _server(with_poller: bool) -> Server:
    """A server with one WebSocket client (a real session, never run) reading ``chat``,
    so that broadcasts get encoded and queued as for a live client."""
    server = Server(CONFIG)
    server.random.seed(0)
    if with_poller:
        server._poller = ReadPoller()
    core = CableConnection(
        sid="subscriber", settings=server.session_settings(3.0, "s", extended=False), now=0.0
    )
    core.accept("{}")
    session = WebSocketSession(server, _Sink(), core)
    server.sessions.add(session)
    signed = sign_stream_name("chat", "fuzz-turbo-key")
    identifier = json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed})
    core.receive_message(json.dumps({"command": "subscribe", "identifier": identifier}), now=0.0)
    session.apply()
    return server


def _serve(
    chunks: list[bytes], pause: float, with_poller: bool
) -> tuple[list[tuple[float, bytes]], list[str], dict[str, object], int]:
    server = _server(with_poller)
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    errors = _Errors()
    logging.getLogger("cableway").addHandler(errors)
    received: list[tuple[float, bytes]] = []

    def drain() -> None:
        while True:
            try:
                data = peer.recv(1 << 20)
            except (BlockingIOError, ConnectionResetError):
                return
            if not data:
                return
            received.append((trio.current_time(), data))

    async def main() -> None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        done = trio.Event()

        async def connection() -> None:
            try:
                await handle_connection(server, stream, main=True)
            finally:
                done.set()

        async with trio.open_nursery() as nursery:
            poller = server.poller
            if poller is not None:
                nursery.start_soon(poller.run)
            nursery.start_soon(connection)
            await trio.testing.wait_all_tasks_blocked()
            for chunk in chunks:
                if done.is_set():
                    break
                if pause:
                    await trio.sleep(pause)
                    drain()
                try:
                    peer.send(chunk)
                except OSError:  # the server closed: nothing more can be sent
                    break
                await trio.testing.wait_all_tasks_blocked()
                drain()
            with contextlib.suppress(OSError):
                peer.shutdown(socket.SHUT_WR)
            with trio.fail_after(LIMIT_SECONDS):
                while not done.is_set():
                    drain()
                    await trio.sleep(0.1)
            drain()
            if poller is not None:
                assert poller._waiting == {}, "a finished connection left a parked reader"
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logging.getLogger("cableway").removeHandler(errors)
        ours.close()
        with contextlib.suppress(OSError):
            peer.close()
    metrics = dict(server.metrics.snapshot())
    return received, errors.messages, metrics, server.front_door.body_bytes


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    size, pause, rest = data[0], data[1] / 64, data[2:]
    if size == 0:
        chunks = [rest] if rest else []
    else:
        chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    polled = _serve(chunks, pause, with_poller=True)
    direct = _serve(chunks, pause, with_poller=False)
    assert not polled[1], polled[1]
    assert not direct[1], direct[1]
    # the same bytes, byte for byte, at the same virtual times (reads may split them
    # differently: compare the stream, then when each byte arrived)
    assert b"".join(d for _t, d in polled[0]) == b"".join(d for _t, d in direct[0]), (
        polled[0],
        direct[0],
    )
    assert _timeline(polled[0]) == _timeline(direct[0]), (polled[0], direct[0])
    assert polled[2] == direct[2], (polled[2], direct[2])
    assert polled[3] == direct[3] == 0, (polled[3], direct[3])


def _timeline(received: list[tuple[float, bytes]]) -> list[tuple[float, int]]:
    """When the client had how many bytes (merging reads at the same time)."""
    line: list[tuple[float, int]] = []
    total = 0
    for when, data in received:
        total += len(data)
        if line and line[-1][0] == when:
            line[-1] = (when, total)
        else:
            line.append((when, total))
    return line


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "h11"])
