"""The session's "writable now" flag (``SessionOutput._writable``, see
:mod:`cableway.transport.output`): the fan-out and the timer task write straight to the
socket when it says so, so it must never say so when a write would break a rule (bytes
queued or a writer running: interleaved bytes; closing or a close pending: bytes after
the close frame; no descriptor).

Sessions run on real socket pairs (a small send buffer, so writes are cut short and
writers start), on trio's virtual clock; the flag is checked after every operation.
"""

from __future__ import annotations

import contextlib
import json
import socket

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, Ping

from cableway.transport.fanout import fan_out
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

from .helpers import CONFIG, accepted_core, read_available, socket_stream

UNIX = 1_700_000_000.0


def _session(server: Server, ours: socket.socket, query: str = "pi=1") -> WebSocketSession:
    core = accepted_core(server, query=query)  # the welcome is sent when the session starts
    return WebSocketSession(server, socket_stream(ours), core)


def _check(session: WebSocketSession) -> None:
    """The flag's promise: writable means a direct write breaks no rule."""
    if session._writable:
        assert session._fd >= 0
        assert not session._closing
        assert session._pending_close is None
        assert not session._writer_active
        assert not session.outbox.size


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames in ``data`` (unmasked); every one must be whole."""
    out = []
    i = 0
    while i < len(data):
        assert len(data) - i >= 2, "a frame header cut short"
        opcode, n, j = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        assert data[i] & 0x80, "a fragmented frame"
        if n == 126:
            n, j = int.from_bytes(data[j : j + 2], "big"), j + 2
        elif n == 127:
            n, j = int.from_bytes(data[j : j + 8], "big"), j + 8
        assert j + n <= len(data), "a frame cut short"
        out.append((opcode, data[j : j + n]))
        i = j + n
    return out


def _client_bytes(event: CloseConnection | Ping) -> bytes:
    """A client's (masked) frame."""
    return Connection(ConnectionType.CLIENT).send(event)


async def test_a_client_close_clears_the_flag_before_a_broadcast_or_a_ping_can_follow(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    # the close reply is queued and written at once (the flag is set again by that
    # flush), and only then does the session mark itself closing: that must clear it
    ours, peer = pair
    server = Server(CONFIG)
    session = _session(server, ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.testing.wait_all_tasks_blocked()
        assert session._writable  # open, the welcome written, nothing queued
        session._on_data(_client_bytes(CloseConnection(1000)))
        assert session._closing
        assert not session._writable
        # the fan-out and the timer task, right after: nothing may follow the close
        fan_out([session], "x", ['{"identifier":"x","message":1}'], [None], None)
        due = session.core.next_deadline()
        assert due is not None
        server.timers.fire_due(due, UNIX)
        frames = _frames(read_available(peer))
        nursery.cancel_scope.cancel()
    assert [op for op, _ in frames] == [1, 8]  # the welcome, then the close reply
    assert json.loads(frames[0][1]) == {"type": "welcome", "sid": "s1"}


async def test_the_flag_comes_back_once_the_writer_has_emptied_the_outbox(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server = Server(CONFIG)
    session = _session(server, ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(200):  # the client does not read: a writer starts
            session.push_frame(session.encode(json.dumps({"n": n, "pad": "x" * 2000})))
            _check(session)
            if session._writer_active:
                break
        assert session._writer_active
        assert not session._writable
        data = b""
        while session._writer_active:  # the client reads: the writer drains and ends
            data += read_available(peer)
            await trio.testing.wait_all_tasks_blocked()
            _check(session)
        assert session._writable  # the fast paths write straight to it again
        nursery.cancel_scope.cancel()
    data += read_available(peer)
    assert len(_frames(data)) == n + 2  # the welcome and every message, whole


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["push", "fan", "ping", "read", "settle", "close", "client_close", "client_ping"]
        ),
        st.integers(0, 9000),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_the_flag_never_says_writable_when_a_direct_write_would_break_a_rule(
    ops: list[tuple[str, int]],
) -> None:
    texts: list[str] = []

    async def main(ours: socket.socket, peer: socket.socket) -> bytes:
        ours.setblocking(False)
        peer.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        server = Server(CONFIG)
        session = _session(server, ours)
        data = b""
        client_closed = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await trio.testing.wait_all_tasks_blocked()
            _check(session)
            for op, n in ops:
                text = json.dumps({"identifier": "x", "message": len(texts), "pad": "p" * n})
                if op == "push":
                    texts.append(text)
                    session.push_frame(session.encode(text))
                elif op == "fan":
                    texts.append(text)
                    fan_out([session], "x", [text], [None], None)
                elif op == "ping":  # the timer task's batch, when the ping is due (the
                    # core's time: trio's stays put, so no writer times out meanwhile)
                    due = session.timer_deadline()  # (the core, given back cached pings)
                    if due is not None:
                        server.timers.fire_due(due, UNIX)
                elif op == "read":
                    with contextlib.suppress(BlockingIOError):
                        data += peer.recv(n + 1)
                elif op == "settle":
                    await trio.testing.wait_all_tasks_blocked()
                elif op == "close":
                    session.request_close("remote", reconnect=False)
                elif not client_closed:  # a close (replied to), a ping (answered)
                    client_closed = op == "client_close"  # then the client sends no more
                    event = CloseConnection(1000) if client_closed else Ping(b"p")
                    with contextlib.suppress(OSError):  # the session may be gone
                        peer.send(_client_bytes(event))  # read by the reader task
                _check(session)
            # the client reads everything while the session closes
            session.request_close("remote", reconnect=False)
            _check(session)
            with trio.fail_after(120):
                while not session._finished:
                    await trio.lowlevel.wait_readable(peer)
                    data += read_available(peer)
            nursery.cancel_scope.cancel()
        return data + read_available(peer)

    autojump_clock = trio.testing.MockClock(autojump_threshold=0)
    ours, peer = socket.socketpair()
    try:
        data = trio.run(main, ours, peer, clock=autojump_clock)
    finally:
        ours.close()
        peer.close()
    frames = _frames(data)  # every frame whole: nothing interleaved
    ops_seen = [op for op, _ in frames]
    assert ops_seen.count(8) <= 1
    if 8 in ops_seen:
        assert ops_seen[-1] == 8, "bytes after the close frame"
    messages = [json.loads(payload) for op, payload in frames if op == 1]
    assert messages[0]["type"] == "welcome"
    # the broadcasts and pushes that were sent arrive in order, each at most once
    sent = [m["message"] for m in messages if m.get("identifier") == "x"]
    assert sent == sorted(set(sent))
