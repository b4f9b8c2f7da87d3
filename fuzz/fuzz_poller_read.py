# Invariant: reads served in the read poller's task give what the reader's own reads give.
"""Fuzz the reads a parked session gets in the read poller's task
(``cableway.transport.session.Session.readable``, the one-step read path) against the
same session reading its socket in its own task (``wait_readable``, no poller).

The input: one byte that picks the chunk size (1-255 bytes; 0: the whole rest at
once), then the raw bytes a client sends after the ``welcome`` (frames must be
masked; the seeds use the all-zero mask key). The same session (a WebSocket over a
socket pair, pings off) is run twice under a virtual clock: once with the node's
:class:`~cableway.transport.poller.ReadPoller` (as while the server runs), once
without. The bytes go to it chunk by chunk, each once everything else waits, then
EOF. Invariant: both runs end by themselves, leave nothing parked in the poller, log
the same errors, count the same bytes read and written, and the client receives the
same bytes, byte for byte.

Run: ``python fuzz/fuzz_poller_read.py -runs=100000 -max_len=2048 fuzz/corpus/poller_read/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import logging
import socket

import trio
import trio.testing

from cableway.config import Config
from cableway.protocol.handshake import websocket_open
from cableway.transport.poller import ReadPoller
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

CONFIG = Config(host="127.0.0.1", port=0, public=True, max_message_size=512)
COUNTERS = ("data_rcvd_total", "data_sent_total", "failed_server_msg_total")


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _serve(chunks: list[bytes], with_poller: bool) -> tuple[bytes, list[str], tuple[int, ...]]:
    server = Server(CONFIG)
    if with_poller:
        server._poller = ReadPoller()
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    errors = _Errors()
    logging.getLogger("cableway").addHandler(errors)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                data = peer.recv(1 << 20)
            except BlockingIOError:
                return
            if not data:
                return
            received.extend(data)

    async def main() -> None:
        opening = websocket_open(
            headers={},
            query="pi=0",
            subprotocols=["actioncable-v1-json"],
            fresh_sid="s1",
            jwt_param="jid",
            ping_interval=3.0,
            ping_precision="s",
        )
        core = server.session_rules.websocket_core(opening, now=0.0, ping_jitter=0.0)
        core.accept("{}")
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        session = WebSocketSession(server, stream, core)
        async with trio.open_nursery() as nursery:
            poller = server.poller
            if poller is not None:
                nursery.start_soon(poller.run)
            nursery.start_soon(session.run)
            await trio.testing.wait_all_tasks_blocked()
            for chunk in chunks:
                if session.closing:
                    break
                try:
                    peer.send(chunk)
                except OSError:  # the server closed: nothing more can be sent
                    break
                await trio.testing.wait_all_tasks_blocked()
                drain()
            peer.shutdown(socket.SHUT_WR)
            with trio.fail_after(60):
                while not session._finished:
                    drain()
                    await trio.sleep(0.1)
            drain()
            if poller is not None:
                assert poller._waiting == {}, "a finished session left a parked reader"
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logging.getLogger("cableway").removeHandler(errors)
        ours.close()
        drain()
        peer.close()
    counters = tuple(server.metrics.value(name) for name in COUNTERS)
    return bytes(received), errors.messages, counters


def test_one_input(data: bytes) -> None:
    if not data:
        return
    size, rest = data[0], data[1:]
    if size == 0:
        chunks = [rest] if rest else []
    else:
        chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    polled = _serve(chunks, with_poller=True)
    direct = _serve(chunks, with_poller=False)
    assert polled[0] == direct[0], (polled[0], direct[0])
    assert polled[1] == direct[1], (polled[1], direct[1])
    assert polled[2] == direct[2], (polled[2], direct[2])


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "wsproto"])
