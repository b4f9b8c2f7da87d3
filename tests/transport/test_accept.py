"""Accepting connections (cableway.transport.accept): the socket options trio's
SocketStream sets (TCP_NODELAY, TCP_NOTSENT_LOWAT) are set once on the listener and
inherited, never per connection, and the streams behave as trio's."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest
import trio

from cableway.transport.accept import Acceptor

from ..integration.helpers import cable, config, running, welcome

LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", None)


def options(sock: Any) -> tuple[bool, int | None]:
    nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    lowat = None if LOWAT is None else sock.getsockopt(socket.IPPROTO_TCP, LOWAT)
    return nodelay, lowat


@pytest.fixture
def setsockopt_ports(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The local port of every socket a trio SocketStream sets an option on."""
    ports: list[int] = []
    original = trio.SocketStream.setsockopt

    def counted(self: trio.SocketStream, *args: Any) -> None:
        ports.append(self.socket.getsockname()[1])
        original(self, *args)

    monkeypatch.setattr(trio.SocketStream, "setsockopt", counted)
    return ports


async def test_the_server_sets_no_socket_option_per_connection_after_the_first(
    setsockopt_ports: list[int],
) -> None:
    async with running(config()) as server:
        for _ in range(4):
            async with cable(server) as ws:
                await welcome(ws)
                (session,) = server.sessions
                stream = session.stream
                assert isinstance(stream, trio.SocketStream)
                assert options(stream.socket) == (True, None if LOWAT is None else 2**14)
        served = [port for port in setsockopt_ports if port == server.main_port]
        assert len(served) <= 2  # trio's stream for the first connection only (was 8)


def connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.settimeout(5)
    return client


async def test_lean_streams_send_receive_and_refuse_concurrent_sends(
    setsockopt_ports: list[int],
) -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    acceptor = Acceptor(listener)
    clients = [connect(port) for _ in range(3)]
    try:
        streams = [await acceptor.accept() for _ in clients]
        assert acceptor.lean
        assert len(setsockopt_ports) == (1 if LOWAT is None else 2)  # the first only
        for client, stream in zip(clients, streams, strict=True):
            assert options(stream.socket) == (True, None if LOWAT is None else 2**14)
            await stream.send_all(b"ping")
            assert client.recv(16) == b"ping"
            client.sendall(b"pong")
            assert await stream.receive_some(16) == b"pong"
        # a send that must wait holds the stream: a second one at once is refused
        big = b"x" * (16 << 20)
        with trio.move_on_after(1):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(streams[2].send_all, big)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError):
                    await streams[2].send_all(b"y")
                nursery.cancel_scope.cancel()
        for stream in streams:
            await stream.aclose()
    finally:
        for client in clients:
            client.close()
        await listener.aclose()


async def test_a_listener_whose_options_do_not_reach_its_sockets_gets_trio_s_streams(
    setsockopt_ports: list[int],
) -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    acceptor = Acceptor(listener)
    listener.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)  # not inherited
    clients = [connect(port) for _ in range(2)]
    try:
        streams = [await acceptor.accept() for _ in clients]
        assert not acceptor.lean
        assert len(setsockopt_ports) == 2 * (1 if LOWAT is None else 2)
        for stream in streams:
            assert options(stream.socket)[0]
            await stream.aclose()
    finally:
        for client in clients:
            client.close()
        await listener.aclose()


class _Aborting:
    """A listening socket whose next accept fails with ``errno`` once."""

    def __init__(self, raw: socket.socket, code: int) -> None:
        self.raw = raw
        self.code = code

    def accept(self) -> tuple[socket.socket, Any]:
        if self.code:
            code, self.code = self.code, 0
            raise OSError(code, "aborted")
        return self.raw.accept()

    def fileno(self) -> int:
        return self.raw.fileno()


async def test_an_aborted_connection_is_skipped_and_other_errors_are_raised() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    acceptor = Acceptor(listener)
    raw = acceptor._raw
    assert raw is not None
    client = connect(port)
    try:
        acceptor._raw = _Aborting(raw, errno.ECONNABORTED)  # type: ignore[assignment]
        stream = await acceptor.accept()
        await stream.aclose()
        acceptor._raw = _Aborting(raw, errno.EMFILE)  # type: ignore[assignment]
        with pytest.raises(OSError, match="aborted") as caught:
            await acceptor.accept()
        assert caught.value.errno == errno.EMFILE
        acceptor._raw = raw
        listener.socket.close()
        with pytest.raises(trio.ClosedResourceError):
            await acceptor.accept()
    finally:
        client.close()


async def test_a_cancelled_accept_leaves_the_connection_waiting() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    acceptor = Acceptor(listener)
    client = connect(port)
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await acceptor.accept()
        assert scope.cancelled_caught
        stream = await acceptor.accept()  # still there
        client.sendall(b"x")
        assert await stream.receive_some(1) == b"x"
        await stream.aclose()
    finally:
        client.close()
        await listener.aclose()
