"""A parked session's reads served in the read poller's task (``Session.readable``).

While the server runs, a session's reader parks in the node's :class:`ReadPoller`; when
its socket becomes readable the poller's task reads it and hands a command to the
session at once, so the session's own task is not stepped for it (one task step per
read, not two). What needs the session's task (the peer gone, a close, an error in
the session's own code) reschedules it, with the same outcome as a read of its own.
"""

from __future__ import annotations

import logging
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

from .helpers import CONFIG
from .test_wake import _events, _session
from .test_wake import _read_all_now as read_to_eof


class StepCounter(trio.abc.Instrument):
    """Counts the scheduler's steps of one task."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


def _serves(task: trio.lowlevel.Task, session: WebSocketSession) -> bool:
    frame = task.coro.cr_frame
    return frame is not None and frame.f_locals.get("self") is session


def _server() -> Server:
    server = Server(CONFIG)
    server._poller = ReadPoller()  # as while the server runs (run() starts its task)
    return server


async def _start(nursery: trio.Nursery, server: Server, session: WebSocketSession) -> None:
    assert server.poller is not None
    nursery.start_soon(server.poller.run)
    nursery.start_soon(session.run)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_command_is_answered_without_a_step_of_the_session_task(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = _server()
    session = _session(server, ours)
    client = Connection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        await _start(nursery, server, session)
        (task,) = [t for t in nursery.child_tasks if _serves(t, session)]
        steps = StepCounter(task)
        trio.lowlevel.add_instrument(steps)
        try:
            for n in range(3):
                peer.send(client.send(TextMessage(data='{"command":"ping"}')))
                await trio.testing.wait_all_tasks_blocked()
                replies = _events(peer.recv(65536))
                assert replies[-1] == {"type": "pong"}, (n, replies)
                assert session._parked  # still parked, in the poller
                assert server.poller is not None
                assert list(server.poller._waiting) == [ours.fileno()]
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps == 0
        assert server.metrics.value("data_rcvd_total") > 0
        peer.close()  # EOF: that one needs the session's task, which ends the session
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()
    assert session._finished


async def test_a_client_close_read_by_the_poller_ends_the_session(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = _server()
    session = _session(server, ours)
    client = Connection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        await _start(nursery, server, session)
        peer.send(client.send(CloseConnection(code=1000)))
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()
    events = _events(read_to_eof(peer))
    assert events[0] == {"type": "welcome", "sid": "s1"}
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == 1000
    assert server.poller is not None
    assert server.poller._waiting == {}


async def test_an_error_in_a_read_handled_by_the_poller_costs_that_session_only(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, peer = pair
    other_ours, other_peer = socket.socketpair()
    other_ours.setblocking(False)
    server = _server()
    session = _session(server, ours)
    other = _session(server, other_ours)

    on_data = WebSocketSession._on_data

    def broken(self: WebSocketSession, data: bytes) -> None:
        if self is session:
            raise OSError("a bug, not a reset")  # must be reported, not taken for a reset
        on_data(self, data)

    monkeypatch.setattr(WebSocketSession, "_on_data", broken)
    client = Connection(ConnectionType.CLIENT)
    try:
        async with trio.open_nursery() as nursery:
            await _start(nursery, server, session)
            nursery.start_soon(other.run)
            await trio.testing.wait_all_tasks_blocked()
            peer.send(client.send(TextMessage(data='{"command":"ping"}')))
            with trio.fail_after(10):
                await session.wait_closed()
            # the other session, parked in the same poller, is still served
            other_peer.send(
                Connection(ConnectionType.CLIENT).send(TextMessage(data='{"command":"ping"}'))
            )
            await trio.testing.wait_all_tasks_blocked()
            replies = _events(other_peer.recv(65536))
            assert replies[-1] == {"type": "pong"}
            nursery.cancel_scope.cancel()
    finally:
        other_ours.close()
        other_peer.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["unexpected error in session sid=s1"]
    events = _events(read_to_eof(peer))
    assert events[0] == {"type": "welcome", "sid": "s1"}
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == 1011


class _RecordingEpoll:
    """A poller's epoll set that records the calls made on it."""

    def __init__(self) -> None:
        import select

        self.epoll = select.epoll()
        self.calls: list[str] = []

    def register(self, fd: int, events: int) -> None:
        self.calls.append("register")
        self.epoll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self.calls.append("modify")
        self.epoll.modify(fd, events)

    def fileno(self) -> int:
        return self.epoll.fileno()


async def test_a_reader_first_wait_adds_its_socket_with_one_call(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = _server()
    assert server.poller is not None
    recording = _RecordingEpoll()
    server.poller._epoll = recording  # type: ignore[assignment]
    session = _session(server, ours)
    client = Connection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)  # (the poller's task is not needed to park)
        await trio.testing.wait_all_tasks_blocked()
        assert recording.calls == ["register"]  # not a failed re-arm first
        assert session._parked
        recording.calls.clear()
        peer.send(client.send(TextMessage(data='{"command":"ping"}')))
        session.readable()  # as the poller's task does once the socket is readable
        assert recording.calls == ["modify"]  # parked again: re-armed
        nursery.cancel_scope.cancel()
    recording.epoll.close()


class _NoRearm(_RecordingEpoll):
    """An epoll set whose re-arming fails (as for a descriptor it no longer knows)."""

    def modify(self, fd: int, events: int) -> None:
        self.calls.append("modify")
        raise OSError(9, "Bad file descriptor")


async def test_a_socket_that_cannot_wait_again_ends_its_session_instead_of_hanging(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours, peer = pair
    server = _server()
    assert server.poller is not None
    broken = _NoRearm()
    server.poller._epoll = broken  # type: ignore[assignment]
    session = _session(server, ours)
    client = Connection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(client.send(TextMessage(data='{"command":"ping"}')))
        session.readable()  # as the poller's task does: answers, then cannot re-arm
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()
    broken.epoll.close()
    events = _events(read_to_eof(peer))
    assert events[:2] == [{"type": "welcome", "sid": "s1"}, {"type": "pong"}]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
