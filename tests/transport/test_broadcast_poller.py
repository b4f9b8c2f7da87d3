"""Broadcasts on a kept-alive connection served in the read poller's task.

While the server runs, a broadcast connection idle between requests parks in the node's
:class:`ReadPoller`; when its socket becomes readable the poller's task reads it,
publishes the whole requests it holds, writes their ``201`` and waits again, so the
connection's own task is not stepped for them (``Conn.readable`` with
``broadcast_endpoint.serve_read``). Anything else (a request for h11, a body not read
whole, ``Connection: close``, answers the client does not take at once) goes to the
connection's task with the same outcome as a read of its own
(``fuzz/fuzz_broadcast_poller.py`` compares the two byte for byte).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from cableway.config import Config
from cableway.transport.http import handle_connection
from cableway.transport.httpconn import CREATED_KEEP_ALIVE
from cableway.transport.poller import ReadPoller
from cableway.transport.server import Server

from .test_poller_reads import StepCounter

CONFIG = Config(host="127.0.0.1", port=0, http_broadcast_port=0, broadcast_key="k")
TIMEOUT = CONFIG.handshake_timeout
CREATED = CREATED_KEEP_ALIVE  # what h11 writes for a 201 on a kept-alive connection


def _post(n: int, extra: bytes = b"") -> bytes:
    body = json.dumps({"stream": "s", "data": f"m{n}"}).encode()
    return (
        b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def _recv(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


async def _start(
    nursery: trio.Nursery, server: Server, ours: socket.socket
) -> tuple[trio.lowlevel.Task, trio.Event]:
    """Serve ``ours`` on ``server`` (with its poller running): the connection's task and
    an event set when it ended."""
    poller = server._poller = ReadPoller()  # as while the server runs
    nursery.start_soon(poller.run)
    done = trio.Event()
    tasks: list[trio.lowlevel.Task] = []

    async def connection() -> None:
        tasks.append(trio.lowlevel.current_task())
        try:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
            await handle_connection(server, stream, main=True)
        finally:
            done.set()

    nursery.start_soon(connection)
    await trio.testing.wait_all_tasks_blocked()
    return tasks[0], done


async def test_broadcasts_are_answered_without_a_step_of_the_connection_task(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        task, done = await _start(nursery, server, ours)
        peer.send(_post(0))  # the connection's first read: its own task
        await trio.testing.wait_all_tasks_blocked()
        assert _recv(peer) == CREATED
        steps = StepCounter(task)
        trio.lowlevel.add_instrument(steps)
        try:
            for n in range(1, 4):
                peer.send(_post(n) + (_post(n + 10) if n == 3 else b""))  # last: two at once
                await trio.testing.wait_all_tasks_blocked()
                assert _recv(peer) == CREATED * (2 if n == 3 else 1), n
                assert server.poller is not None
                assert list(server.poller._waiting) == [ours.fileno()]  # parked again
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps == 0
        assert server.metrics.value("publications_total") == 5
        peer.shutdown(socket.SHUT_WR)  # EOF: that one needs the connection's task
        with trio.fail_after(10):
            await done.wait()
        assert server.poller is not None
        assert server.poller._waiting == {}
        nursery.cancel_scope.cancel()


async def test_the_head_deadline_runs_from_the_last_request_the_poller_served(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        _task, done = await _start(nursery, server, ours)
        for n in range(3):  # each within the deadline of the one before
            peer.send(_post(n))
            await trio.testing.wait_all_tasks_blocked()
            assert _recv(peer) == CREATED, n
            await trio.sleep(TIMEOUT * 0.75)
        assert not done.is_set()  # 2.25 deadlines since the first request: still open
        start = trio.current_time()
        with trio.fail_after(10 * TIMEOUT):
            await done.wait()
        # closed when the deadline of the last request served ran out
        assert trio.current_time() - start == pytest.approx(TIMEOUT * 0.25)
        nursery.cancel_scope.cancel()


async def test_a_request_the_poller_does_not_serve_gets_the_same_answers(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        _task, done = await _start(nursery, server, ours)
        peer.send(_post(0))
        await trio.testing.wait_all_tasks_blocked()
        assert _recv(peer) == CREATED
        # served by the poller, then a bad body (h11's 400, kept alive), then one more
        bad = b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        bad += b"Content-Length: 5\r\n\r\n{nope"
        peer.send(_post(1) + bad + _post(2))
        await trio.testing.wait_all_tasks_blocked()
        answers = _recv(peer)
        assert answers.startswith(CREATED)
        assert b"HTTP/1.1 400 " in answers
        assert answers.endswith(CREATED)
        assert answers.count(b"HTTP/1.1 ") == 3
        # then Connection: close: answered, and the connection ends
        peer.send(_post(3) + _post(4, b"Connection: close\r\n"))
        with trio.fail_after(10):
            await done.wait()
        answers = _recv(peer)
        assert answers.startswith(CREATED)
        assert answers.count(b"HTTP/1.1 201 ") == 2
        assert b"connection: close\r\n" in answers.lower()
        assert server.metrics.value("publications_total") == 5
        assert server.metrics.value("failed_broadcast_msg_total") == 1
        nursery.cancel_scope.cancel()


async def test_answers_the_client_does_not_take_at_once_are_written_by_the_task(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        _task, done = await _start(nursery, server, ours)
        sent = 0
        # requests one at a time, never reading the answers, until the answers fill
        # the client's buffers: the poller cannot write them whole any more
        for _ in range(2000):
            peer.send(_post(sent))
            sent += 1
            await trio.testing.wait_all_tasks_blocked()
            if not server.poller or not server.poller._waiting:
                break  # the connection's task writes (blocked: the client reads nothing)
        else:
            raise AssertionError("the answers never filled the client's buffers")
        received = b""
        with trio.fail_after(10):
            while received.count(b"HTTP/1.1 201 ") < sent:
                await trio.sleep(0.01)
                received += _recv(peer)
        assert received == CREATED * sent
        assert server.metrics.value("publications_total") == sent
        # and it is served by the poller again
        peer.send(_post(sent))
        await trio.testing.wait_all_tasks_blocked()
        assert _recv(peer) == CREATED
        assert server.poller is not None
        assert list(server.poller._waiting) == [ours.fileno()]
        peer.shutdown(socket.SHUT_WR)
        with trio.fail_after(10):
            await done.wait()
        nursery.cancel_scope.cancel()
