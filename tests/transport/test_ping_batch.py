"""The timer task's ping batch on real sockets: raw writes, the outbox, the core's hook;
and a ping due soon riding a broadcast's write (``fan_out``).

Sessions here sit on socket pairs and are never started: the test fires the timer task's
batch itself (``Timers.fire_due``) at a chosen time, and reads what reached the peer.
"""

from __future__ import annotations

import json
import socket

import pytest

from cableway.transport.fanout import PING_EARLY
from cableway.transport.server import Server
from cableway.transport.session import PING_GRID
from cableway.transport.ws import WebSocketSession

from .helpers import (
    CONFIG,
    accepted_core,
    fan_out_at,
    nonblocking_pair,
    read_available,
    server_texts,
    socket_stream,
)

UNIX = 1_700_000_000.5


def _session(server: Server, peers: list[socket.socket], query: str = "") -> WebSocketSession:
    ours, _peer = nonblocking_pair(peers)
    core = accepted_core(server, query=query, sid=f"s{len(peers)}")
    core.events()  # the welcome is not what is tested here
    session = WebSocketSession(server, socket_stream(ours), core)
    server.schedule(session)
    return session


def test_one_batch_pings_every_due_session_with_its_own_precision(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    queries = ["", "ptp=ms", "", "ptp=ns"]
    sessions = [_session(server, pairs, q) for q in queries]
    first = sessions[0].core.next_deadline()
    assert first is not None
    assert first == pytest.approx(1.5)
    assert {s.core.next_deadline() for s in sessions} == {first}  # one tick for all
    server.timers.fire_due(first - 0.001, UNIX)  # not due yet: nothing is written
    assert [read_available(p) for p in pairs[1::2]] == [b""] * 4
    server.timers.fire_due(first, UNIX)
    got = [server_texts(read_available(p)) for p in pairs[1::2]]
    assert got == [
        ['{"type":"ping","message":1700000000}'],
        ['{"type":"ping","message":1700000000500}'],
        ['{"type":"ping","message":1700000000}'],
        ['{"type":"ping","message":1700000000500000000}'],
    ]
    assert server.metrics.value("data_sent_total") == sum(len(m[0]) + 2 for m in got)
    # re-scheduled one interval later, still together
    assert {s.core.next_deadline() for s in sessions} == {first + 3.0}
    assert server.timers._deadlines == [first + 3.0]
    server.timers.fire_due(first + 3.0, UNIX + 3)
    assert [len(server_texts(read_available(p))) for p in pairs[1::2]] == [1, 1, 1, 1]


def test_a_ping_queues_behind_pending_output_and_arrives_after_it(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    session = _session(server, pairs, "pi=1")
    ours, peer = pairs
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sent_before = []
    # fill the socket until the kernel takes no more: the rest waits in the outbox
    n = 0
    while not session.outbox.size:
        text = '{"message":"m' + str(n) + '","pad":"' + "x" * 1000 + '"}'
        session.push_frame(session.encode(text))
        sent_before.append(text)
        n += 1
        assert n < 10_000
    # the peer reads some: the kernel could take the ping now, but it must wait its turn
    data = peer.recv(65536)
    due = session.core.next_deadline()
    assert due is not None
    server.timers.fire_due(due, UNIX)  # the ping goes behind the queue, never around it
    for _ in range(10_000):
        data += read_available(peer)
        if not session.outbox.size:
            break
        session._write_now()
    data += read_available(peer)
    assert server_texts(data) == [*sent_before, '{"type":"ping","message":1700000000}']
    assert session.core.next_deadline() == pytest.approx(due + 1.0)


def test_a_session_not_due_on_the_grid_is_not_pinged_early(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    session = _session(server, pairs, "pi=1")
    due = session.core.next_deadline()
    assert due is not None
    assert abs(due / PING_GRID - round(due / PING_GRID)) < 1e-9
    server.timers.fire_due(due - PING_GRID / 2, UNIX)
    assert read_available(pairs[1]) == b""
    server.timers.fire_due(due, UNIX)
    assert server_texts(read_available(pairs[1])) == ['{"type":"ping","message":1700000000}']


def test_a_ping_due_soon_rides_the_broadcast_write_and_keeps_its_schedule(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    session = _session(server, pairs)  # every 3 s; the first ping is due at 1.5
    peer = pairs[1]
    due = session.core.next_deadline()
    assert due == pytest.approx(1.5)
    text = '{"identifier":"x","message":1}'
    # more than PING_EARLY before the ping: the broadcast alone
    assert fan_out_at(due - PING_EARLY - 0.1, [session], text) == (1, len(session.encode(text)))
    assert server_texts(read_available(peer)) == [text]
    assert session.core.next_deadline() == due
    # within PING_EARLY (and a third of the interval): the ping goes in the same write
    delivered, sent = fan_out_at(due - 0.9, [session], text)
    got = server_texts(read_available(peer))
    assert delivered == 1
    assert sent == sum(len(session.encode(m)) for m in got)
    assert got[0] == text
    assert [json.loads(m)["type"] for m in got[1:]] == ["ping"]
    # the schedule is unchanged (the next ping one interval after the one taken was due),
    # and the timer task does not ping again at the old due time
    assert session.timer_deadline() == pytest.approx(due + 3.0)
    server.timers.fire_due(due, UNIX)
    assert read_available(peer) == b""
    server.timers.fire_due(due + 3.0, UNIX + 3)
    assert server_texts(read_available(peer)) == ['{"type":"ping","message":1700000003}']


def test_an_early_ping_is_never_more_than_a_third_of_the_interval_early(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    session = _session(server, pairs, "pi=1")  # every second: at most 1/3 s early
    due = session.core.next_deadline()
    assert due is not None
    text = '{"identifier":"x","message":1}'
    fan_out_at(due - 0.4, [session], text)
    assert server_texts(read_available(pairs[1])) == [text]
    fan_out_at(due - 0.3, [session], text)
    got = server_texts(read_available(pairs[1]))
    assert got[0] == text
    assert [json.loads(m)["type"] for m in got[1:]] == ["ping"]
    assert session.timer_deadline() == pytest.approx(due + 1.0)
