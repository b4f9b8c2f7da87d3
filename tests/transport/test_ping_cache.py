"""The timer task's plain pings without the core (``Session._ping_at``, see
:meth:`cableway.transport.session.Session.timer_deadline`): the session caches the
core's :meth:`~cableway.protocol.connection.CableConnection.plain_pings_at` and the
timer task takes those pings itself; the core stays the authority.

Sessions run on real socket pairs on trio's virtual clock. After every operation the
cache is checked against the core: when it says a plain ping is next at ``t``, the core
(given back the pings taken without it) agrees that ``t`` is its next deadline and that
``take_plain_ping`` at ``t`` (and within a quantum after) takes a plain ping with the
same next due time; and the session is in the timer heap no later than ``t``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import socket

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, Ping, TextMessage

from cableway.protocol.connection import CableConnection
from cableway.protocol.keepalive import next_ping_after
from cableway.transport.fanout import fan_out, fan_out_one
from cableway.transport.server import Server
from cableway.transport.timers import TIMER_QUANTUM
from cableway.transport.ws import WebSocketSession

from .helpers import CONFIG, accepted_core, read_available, socket_stream

UNIX = 1_700_000_000.0


def _session(
    server: Server, ours: socket.socket, query: str = "pi=1", protocol: str = "actioncable-v1-json"
) -> WebSocketSession:
    core = accepted_core(server, query=query, protocol=protocol)  # welcome: sent at start
    return WebSocketSession(server, socket_stream(ours), core)


def _check(session: WebSocketSession) -> None:
    """The cache's promise (see the module docstring); the core's state is put back."""
    ping_at = session._ping_at
    if ping_at == math.inf:
        return
    if session.closing:  # (the timer task's cached pings need the writable flag too)
        assert not session._writable
    assert session.scheduled_at <= ping_at  # woken in time: never later than a quantum
    core = session.core
    keepalive = core._keepalive
    saved = keepalive.next_ping, keepalive.pong_deadline, core._now
    interval = session._ping_settings.ping_interval
    try:
        core.resume_pings(ping_at)
        assert core.next_deadline() == ping_at  # nothing else due first
        assert core.plain_pings_at() == ping_at
        for late in (0.0, TIMER_QUANTUM):
            keepalive.next_ping = ping_at
            got = core.take_plain_ping(ping_at + late)
            assert got == next_ping_after(ping_at, interval, ping_at + late)
            assert keepalive.pong_deadline is None  # no deadline armed by the ping
            assert not core._events
    finally:
        keepalive.next_ping, keepalive.pong_deadline, core._now = saved


def _client_bytes(event: CloseConnection | Ping | TextMessage) -> bytes:
    return Connection(ConnectionType.CLIENT).send(event)


def _pings(data: bytes) -> int:
    ws = Connection(ConnectionType.CLIENT)
    ws.receive_data(data)
    return sum(
        1
        for event in ws.events()
        if isinstance(event, TextMessage) and json.loads(event.data).get("type") == "ping"
    )


async def test_a_running_sessions_plain_pings_do_not_wake_its_core(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, peer = pair
    server = Server(CONFIG)
    session = _session(server, ours)
    calls: list[str] = []
    for name in ("take_plain_ping", "handle_timer", "next_deadline", "plain_pings_at"):
        original = getattr(CableConnection, name)

        def spy(*args: object, _name: str = name, _original: object = original) -> object:
            calls.append(_name)
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(CableConnection, name, spy)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.testing.wait_all_tasks_blocked()
        read_available(peer)  # the welcome
        due = session._ping_at
        assert due == session.scheduled_at == 0.5  # pi=1, no jitter, on the 0.1 s grid
        calls.clear()
        server.timers.fire_due(due - 0.001, UNIX)  # never early
        assert read_available(peer) == b""
        for n in range(3):  # three pings, one interval apart, the core not called
            server.timers.fire_due(due + n + 0.004, UNIX + n)
            assert _pings(read_available(peer)) == 1
            assert session.scheduled_at == session._ping_at == due + n + 1
        assert calls == []
        _check(session)
        # the core gets them back when asked, and agrees
        assert session.timer_deadline() == due + 3
        assert session.core.next_deadline() == due + 3
        nursery.cancel_scope.cancel()


async def test_a_ping_riding_a_broadcast_keeps_the_cache_and_the_core_in_step(
    autojump_clock: trio.testing.MockClock, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    server = Server(CONFIG)
    session = _session(server, ours, "pi=3")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.testing.wait_all_tasks_blocked()
        read_available(peer)
        first = session._ping_at
        server.timers.fire_due(first, UNIX)  # a cached ping; the core does not know yet
        assert _pings(read_available(peer)) == 1
        assert session._ping_at == first + 3
        # a broadcast just before the next one is due takes it early, through the core
        autojump_clock.jump(first + 3 - 0.5 - trio.current_time())
        fan_out_one(session, "x", '{"identifier":"x","message":1}', None, None)
        assert _pings(read_available(peer)) == 1
        assert session._ping_at == session.scheduled_at == first + 6  # schedule kept
        _check(session)
        server.timers.fire_due(first + 3, UNIX + 3)  # its stale entry: nothing sent
        assert read_available(peer) == b""
        nursery.cancel_scope.cancel()


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                *("tick", "fan", "fan_one", "message", "read", "settle"),
                *("close", "client_ping", "client_close"),
            ]
        ),
        st.integers(0, 4000),
    ),
    max_size=40,
)
KINDS = st.sampled_from(
    [
        ("pi=1", "actioncable-v1-json"),
        ("pi=3", "actioncable-v1-json"),
        ("pi=1", "actioncable-v1-ext-json"),  # pongs tracked (pong_timeout): none cached
        ("pi=3", "actioncable-v1-ext-json"),
        ("pi=0", "actioncable-v1-json"),  # no pings
    ]
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, kind=KINDS)
def test_the_cached_pings_never_disagree_with_the_core(
    ops: list[tuple[str, int]], kind: tuple[str, str]
) -> None:
    async def main(ours: socket.socket, peer: socket.socket) -> bytes:
        ours.setblocking(False)
        peer.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        server = Server(dataclasses.replace(CONFIG, pong_timeout=2.0))
        session = _session(server, ours, *kind)
        data = b""
        client_closed = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await trio.testing.wait_all_tasks_blocked()
            _check(session)
            for op, n in ops:
                text = json.dumps({"identifier": "x", "message": n, "pad": "p" * n})
                if op == "tick":  # time passes; the timer task's batch at that time
                    clock.jump(n / 1000)
                    server.timers.fire_due(trio.current_time(), UNIX)
                elif op == "fan":
                    fan_out([session], "x", [text], [None], None)
                elif op == "fan_one":
                    fan_out_one(session, "x", text, None, None)
                elif op == "read":
                    with contextlib.suppress(BlockingIOError):
                        data += peer.recv(n + 1)
                elif op == "settle":
                    await trio.testing.wait_all_tasks_blocked()
                elif op == "close":
                    session.request_close("remote", reconnect=False)
                elif not client_closed:  # a command (ignored or not), a ping, a close
                    client_closed = op == "client_close"
                    event: CloseConnection | Ping | TextMessage = (
                        CloseConnection(1000)
                        if client_closed
                        else Ping(b"p")
                        if op == "client_ping"
                        else TextMessage(json.dumps({"command": "subscribe", "identifier": text}))
                    )
                    with contextlib.suppress(OSError):  # the session may be gone
                        peer.send(_client_bytes(event))
                _check(session)
            nursery.cancel_scope.cancel()
        return data

    clock = trio.testing.MockClock(autojump_threshold=0)
    ours, peer = socket.socketpair()
    try:
        trio.run(main, ours, peer, clock=clock)
    finally:
        ours.close()
        peer.close()
