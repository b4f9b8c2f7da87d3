"""An upgrade whose whole head comes with the connection's first read is served before
the connection's deadline scope is entered (it needs none); a head that takes more
reads keeps the handshake deadline. A session's socket is closed without trio's
``notify_closing`` when no task can wait on it."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing

from cableway.transport.http import serve_http
from cableway.transport.output import raw_socket
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

from ..integration.helpers import cable, config, running, welcome
from .helpers import nonblocking_pair, read_available, socket_stream

HEAD = (
    b"GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
)
#: broadcasts on a port of their own: the main listener's fast path is the upgrade's
#: (a server that does not run binds neither)
CONFIG = config(port=8080, http_broadcast_port=8090)


@pytest.fixture
def entered(monkeypatch: pytest.MonkeyPatch) -> list[trio.CancelScope]:
    """Every cancel scope entered from now on."""
    scopes: list[trio.CancelScope] = []
    original = trio.CancelScope.__enter__

    def counted(self: trio.CancelScope) -> trio.CancelScope:
        scopes.append(self)
        return original(self)

    monkeypatch.setattr(trio.CancelScope, "__enter__", counted)
    return scopes


async def test_a_whole_head_in_the_first_read_enters_no_deadline_scope(
    entered: list[trio.CancelScope],
) -> None:
    server = Server(CONFIG)
    ours, peer = nonblocking_pair()
    try:
        peer.sendall(HEAD)
        entered.clear()  # (the test runner's own)
        session = await serve_http(server, socket_stream(ours), "main")
        assert isinstance(session, WebSocketSession)
        assert entered == []  # one (the connection's deadline) before
        assert session.outbox.size  # the 101, sent with the welcome when it starts
    finally:
        ours.close()
        peer.close()


@pytest.mark.parametrize("first", [b"", HEAD[:40]])
async def test_a_head_that_takes_more_reads_is_upgraded_under_the_deadline(
    first: bytes, entered: list[trio.CancelScope], autojump_clock: trio.testing.MockClock
) -> None:
    server = Server(CONFIG)
    ours, peer = nonblocking_pair()
    got: list[Any] = []
    try:
        peer.sendall(first)
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                got.append(await serve_http(server, socket_stream(ours), "main"))

            nursery.start_soon(serve)
            await trio.sleep(server.handshake_timeout / 2)
            assert not got
            assert [scope.deadline for scope in entered if scope.deadline < 1e9]
            peer.sendall(HEAD[len(first) :])
        assert isinstance(got[0], WebSocketSession)
    finally:
        ours.close()
        peer.close()


@pytest.mark.parametrize("first", [b"", HEAD[:40]])
async def test_a_head_that_never_ends_is_closed_at_the_handshake_deadline(
    first: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    server = Server(CONFIG)
    ours, peer = nonblocking_pair()
    try:
        peer.sendall(first)
        start = trio.current_time()
        with trio.fail_after(server.handshake_timeout * 3):
            session = await serve_http(server, socket_stream(ours), "main")
        assert session is None
        assert server.handshake_timeout <= trio.current_time() - start
        assert trio.current_time() - start < server.handshake_timeout + 1
        assert read_available(peer) == b""  # closed, nothing sent
        assert ours.fileno() == -1
    finally:
        ours.close()
        peer.close()


async def test_a_session_s_socket_closes_without_notify_closing_unless_a_task_may_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told: list[object] = []
    original = trio.lowlevel.notify_closing

    def counted(handle: Any) -> None:
        told.append(handle)
        original(handle)

    monkeypatch.setattr(trio.lowlevel, "notify_closing", counted)
    async with running(config()) as server:
        async with cable(server) as ws:
            await welcome(ws)
            (session,) = server.sessions
            sock = raw_socket(session.stream)
            assert isinstance(sock, socket.socket)
        with trio.fail_after(5):
            await session.wait_closed()
        assert sock.fileno() == -1
        assert not [handle for handle in told if handle is sock]  # one before
