"""Parking and waking a session's reader on a real socket (``Session._wake_reader``).

An idle session parks its reader with no cancel scope (memory per idle connection): in
the server's :class:`ReadPoller` while the server runs, else in ``wait_readable``. Data
wakes it; another task that asks it to close wakes it too: through the poller, or with
``notify_closing`` -- unless the session's writer waits on the same socket: then the
writer passes the wake-up on when it stops waiting. Nothing queued is ever lost.
"""

from __future__ import annotations

import json
import socket

import pytest
import trio
import trio.testing
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, TextMessage

from cableway.transport.poller import ReadPoller
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

from .helpers import CONFIG, accepted_core, socket_stream


@pytest.fixture(params=["poller", "wait_readable"])
def server(request: pytest.FixtureRequest) -> Server:
    server = Server(CONFIG)
    if request.param == "poller":
        server._poller = ReadPoller()  # as while the server runs (run() starts its task)
    return server


async def _start(nursery: trio.Nursery, server: Server, session: WebSocketSession) -> None:
    if server.poller is not None:
        nursery.start_soon(server.poller.run)
    nursery.start_soon(session.run)
    await trio.testing.wait_all_tasks_blocked()


def _session(server: Server, ours: socket.socket) -> WebSocketSession:
    core = accepted_core(server, query="pi=0")  # the welcome is sent when the session starts
    return WebSocketSession(server, socket_stream(ours), core)


async def _read_all(peer: socket.socket) -> bytes:
    sock = trio.socket.from_stdlib_socket(peer)
    data = b""
    while chunk := await sock.recv(1 << 20):
        data += chunk
    return data


def _events(data: bytes) -> list[object]:
    ws = Connection(ConnectionType.CLIENT)
    ws.receive_data(data)
    out: list[object] = []
    for event in ws.events():
        if isinstance(event, TextMessage):
            assert event.message_finished
            out.append(json.loads(event.data))
        else:
            out.append(event)
    return out


async def test_an_idle_session_is_woken_to_close_without_a_cancel_scope(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    server: Server,
) -> None:
    ours, peer = pair
    session = _session(server, ours)
    async with trio.open_nursery() as nursery:
        await _start(nursery, server, session)
        assert session._parked  # the reader waits on the socket...
        assert session._wake is None  # ...with no cancel scope of its own
        if server.poller is not None:
            assert list(server.poller._waiting) == [ours.fileno()]  # parked there
        session.request_close("server_restart", reconnect=True)
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()
    events = _events(await _read_all(peer))
    assert events[0] == {"type": "welcome", "sid": "s1"}
    assert events[1] == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
    assert isinstance(events[2], CloseConnection)
    assert len(events) == 3


async def test_a_wake_up_while_the_writer_waits_loses_nothing(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    server: Server,
) -> None:
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    session = _session(server, ours)
    texts = []
    async with trio.open_nursery() as nursery:
        await _start(nursery, server, session)
        # the client does not read: the kernel fills up and a writer task waits
        for n in range(200):
            text = json.dumps({"message": n, "pad": "x" * 2000})
            texts.append(text)
            session.push_frame(session.encode(text))
            if session._writer_active:
                break
        await trio.testing.wait_all_tasks_blocked()
        assert session._writer_parked
        assert session._parked
        session.request_close("server_restart", reconnect=True)
        await trio.testing.wait_all_tasks_blocked()
        assert session._writer_parked
        if server.poller is None:
            # not woken while the writer waits (notify_closing would fail the writer)
            assert session._parked
        data = await _read_all(peer)  # the client reads: everything comes, then the close
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()
    events = _events(data)
    assert events[0] == {"type": "welcome", "sid": "s1"}
    assert events[1 : 1 + len(texts)] == [json.loads(t) for t in texts]
    assert events[1 + len(texts)] == {
        "type": "disconnect",
        "reason": "server_restart",
        "reconnect": True,
    }
    assert isinstance(events[-1], CloseConnection)
    assert server.metrics.value("failed_server_msg_total") == 0


async def test_a_parked_reader_is_woken_by_data_and_answers(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    server: Server,
) -> None:
    ours, peer = pair
    session = _session(server, ours)
    client = Connection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        await _start(nursery, server, session)
        for n in range(3):  # parked again after each message
            assert session._parked
            peer.send(client.send(TextMessage(data='{"command":"ping"}')))
            await trio.testing.wait_all_tasks_blocked()
            replies = _events(peer.recv(65536))
            assert replies[-1] == {"type": "pong"}, (n, replies)
        peer.close()  # EOF: the session ends
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()


async def test_a_parked_reader_is_cancelled_cleanly(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    server: Server,
) -> None:
    ours, peer = pair
    session = _session(server, ours)
    async with trio.open_nursery() as nursery:
        await _start(nursery, server, session)
        assert session._parked
        nursery.cancel_scope.cancel()  # as a server that stops
    assert session._finished
    assert _read_all_now(peer).endswith(b"")  # the socket is closed: EOF, no error
    if server.poller is not None:
        assert server.poller._waiting == {}  # the aborted wait left nothing behind


def _read_all_now(peer: socket.socket) -> bytes:
    data = b""
    while chunk := peer.recv(65536):
        data += chunk
    return data


def test_a_parked_reader_waits_in_one_frame_with_this_trio() -> None:
    # (cableway.transport.poller.parked: trio's own wait_task_rescheduled, in two
    # frames, only where trio no longer has the message it yields)
    from cableway.transport.poller import parked

    assert parked is not trio.lowlevel.wait_task_rescheduled
