"""A ping due soon riding a broadcast (``fan_out``) when the session cached the core's
promise of plain pings: taken without the core, by the same keepalive rules, and re-filed
with the timer task at its next due time; against a model of those rules, mixed with the
timer task's ticks and with sessions whose pings the core takes (no cached promise).
And the timer task's lists never keep a closed session alive.

Sessions sit on socket pairs and are never started; the test runs the fan-out and the
timer task's batch itself at chosen times and reads what reached each peer.
"""

from __future__ import annotations

import gc
import json
import socket
import weakref

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cableway.protocol.keepalive import EARLY_SHARE, next_ping_after
from cableway.transport.fanout import PING_EARLY
from cableway.transport.server import Server

from .helpers import (
    CONFIG,
    fan_out_at,
    read_available,
    server_texts,
    writable_session,
)

UNIX = 1_700_000_000.5
TEXT = '{"identifier":"x","message":1}'
#: digits of a ping's stamp per precision (the fan-out stamps with the wall clock)
DIGITS = {"s": 10, "ms": 13, "ns": 19}


def _messages(data: bytes) -> list[dict[str, object]]:
    return [json.loads(text) for text in server_texts(data)]


def test_a_cached_ping_rides_the_broadcast_without_the_core(
    pairs: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server(CONFIG)
    session = writable_session(server, pairs)  # every 3 s; the first ping due at 1.5
    due = session.scheduled_at
    assert session._ping_at == due == pytest.approx(1.5)  # the core's promise, cached

    def untouched(*args: object, **kwargs: object) -> None:
        raise AssertionError("the core was asked")

    for name in ("take_plain_ping", "resume_pings", "next_deadline", "plain_pings_at"):
        monkeypatch.setattr(type(session.core), name, untouched)
    assert fan_out_at(due - 0.9, [session], TEXT)[0] == 1
    got = _messages(read_available(pairs[1]))
    assert [m["type"] if "type" in m else m["message"] for m in got] == [1, "ping"]
    monkeypatch.undo()
    # the schedule is kept: the next ping one interval after the one taken was due, and
    # the timer task wakes the session then (its entry at the old due time is stale)
    assert session.scheduled_at == session._ping_at == pytest.approx(due + 3.0)
    assert session.ref in server.timers._timers[session.scheduled_at]
    server.timers.fire_due(due, UNIX)
    assert read_available(pairs[1]) == b""
    assert session.timer_deadline() == pytest.approx(due + 3.0)
    server.timers.fire_due(due + 3.0, UNIX + 3)
    assert _messages(read_available(pairs[1])) == [{"type": "ping", "message": 1700000003}]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["", "pi=1", "pi=2", "ptp=ms", "pi=2&ptp=ns", "pi=6"]),
            st.sampled_from([0.0, 0.25, 0.5, 0.9]),
        ),
        min_size=1,
        max_size=7,
    ),
    steps=st.lists(
        st.tuples(
            st.booleans(),  # a broadcast (else a tick of the timer task)
            st.integers(min_value=1, max_value=40),  # tenths of a second later
            st.integers(min_value=0, max_value=127),  # whose cached pings a core call took back
        ),
        min_size=1,
        max_size=14,
    ),
)
def test_pings_riding_broadcasts_follow_the_keepalive_rules_for_every_session(
    plan: list[tuple[str, float]], steps: list[tuple[bool, int, int]]
) -> None:
    """Differential: each session's frames and next due time against its own model of the
    keepalive rules (a ping due within ``min(PING_EARLY, interval * EARLY_SHARE)`` rides a
    broadcast; one due at a tick is sent then; the next one is due by
    ``next_ping_after``), sessions of several intervals and precisions in one fan-out,
    with and without the core's cached promise."""
    peers: list[socket.socket] = []
    try:
        server = Server(CONFIG)
        sessions = [writable_session(server, peers, q, j) for q, j in plan]
        intervals = [s.core.settings.ping_interval for s in sessions]
        precisions = [s.core.settings.ping_precision for s in sessions]
        model = [s.timer_deadline() for s in sessions]
        now = 0.0
        for broadcast, tenths, resumed in steps:
            now = round(now + tenths / 10, 1)
            for i, session in enumerate(sessions):
                if resumed >> i & 1:  # as before any call on the core
                    session.resume_pings()
            if broadcast:
                assert fan_out_at(now, sessions, TEXT)[0] == len(sessions)
            else:
                server.timers.fire_due(now, UNIX)
            for i, peer in enumerate(peers[1::2]):
                due = model[i]
                assert due is not None
                got = _messages(read_available(peer))
                if broadcast:
                    assert got[0] == {"identifier": "x", "message": 1}
                    got = got[1:]
                    pinged = due <= now + min(PING_EARLY, intervals[i] * EARLY_SHARE)
                else:
                    pinged = due <= now
                assert [m["type"] for m in got] == (["ping"] if pinged else [])
                if pinged:
                    assert len(str(got[0]["message"])) == DIGITS[precisions[i]]
                    model[i] = next_ping_after(due, intervals[i], now)
            assert [s.timer_deadline() for s in sessions] == model
            # the timer task will wake each session at its next due time
            for session, due in zip(sessions, model, strict=True):
                assert session.scheduled_at == due
                assert session.ref in server.timers._timers[due]
    finally:
        for sock in peers:
            sock.close()


def test_the_timer_task_never_keeps_a_closed_session_alive(pairs: list[socket.socket]) -> None:
    """Sessions whose pings rode a broadcast (re-filed by the fan-out) and sessions the
    timer task pinged are freed once closed and dropped, while their entries wait."""
    server = Server(CONFIG)
    sessions = [writable_session(server, pairs, q) for q in ("", "pi=2", "ptp=ms")]
    due = min(s.scheduled_at for s in sessions)
    fan_out_at(due - 0.5, sessions, TEXT)  # every one's ping rides: re-filed by the fan-out
    server.timers.fire_due(due + 2.0, UNIX)  # the pi=2 one is pinged by the timer task
    assert all(s.scheduled_at > due + 2.0 for s in sessions)
    refs = [weakref.ref(s) for s in sessions]
    for session in sessions:
        session._closing = True  # (what the reader's close sets; its sockets close below)
    del session, sessions
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert server.timers._timers  # their entries are still there, and fire harmlessly
    server.timers.fire_due(due + 20.0, UNIX)
