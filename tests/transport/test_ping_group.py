"""The timer task's common tick: the sessions whose cached plain ping is due at one tick
share the next due time, frame and list per settings and kind of session
(``Timers.fire_due``), and that shortcut gives exactly what ``next_ping_after`` gives each
session alone.

Sessions sit on socket pairs and are never started; the test fires the timer task's batch
itself at chosen times and reads what reached each peer.
"""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cableway.protocol.keepalive import next_ping_after
from cableway.transport.server import Server

from .helpers import (
    CONFIG,
    read_available,
    server_texts,
    writable_session,
)

UNIX = 1_700_000_000.5


def _pings(data: bytes) -> list[str]:
    """The ping stamps in the server's frames ``data`` (parsed as a client would)."""
    messages = [json.loads(text) for text in server_texts(data)]
    assert all(message["type"] == "ping" for message in messages)
    return [str(message["message"]) for message in messages]


def test_one_tick_with_several_intervals_and_precisions_keeps_each_sessions_schedule(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    # interleaved in the tick's list: every 3 s (first at 1.5) and every 2 s with a
    # quarter of jitter (first at 2 * 0.75 = 1.5), each in two precisions
    plan = [("", 0.0), ("pi=2&ptp=ms", 0.25), ("ptp=ns", 0.0), ("pi=2", 0.25), ("", 0.0)]
    sessions = [writable_session(server, pairs, q, j) for q, j in plan]
    first = sessions[0].timer_deadline()
    assert first == pytest.approx(1.5)
    assert {s.timer_deadline() for s in sessions} == {first}  # one tick for all
    assert server.timers._deadlines == [first]
    server.timers.fire_due(first, UNIX)
    got = [_pings(read_available(p)) for p in pairs[1::2]]
    assert got == [
        ["1700000000"],
        ["1700000000500"],
        ["1700000000500000000"],
        ["1700000000"],
        ["1700000000"],
    ]
    # each one's next ping as keepalive.next_ping_after gives it alone
    every_3, every_2 = next_ping_after(first, 3.0, first), next_ping_after(first, 2.0, first)
    assert every_3 == pytest.approx(4.5)
    assert every_2 == pytest.approx(3.5)
    assert [s.timer_deadline() for s in sessions] == [every_3, every_2, every_3, every_2, every_3]
    server.timers.fire_due(every_2, UNIX + 2)
    assert [len(_pings(read_available(p))) for p in pairs[1::2]] == [0, 1, 0, 1, 0]
    server.timers.fire_due(every_3, UNIX + 3)
    assert [len(_pings(read_available(p))) for p in pairs[1::2]] == [1, 0, 1, 0, 1]
    assert [s.timer_deadline() for s in sessions] == [
        next_ping_after(every_3, 3.0, every_3),
        next_ping_after(every_2, 2.0, every_3),
        next_ping_after(every_3, 3.0, every_3),
        next_ping_after(every_2, 2.0, every_3),
        next_ping_after(every_3, 3.0, every_3),
    ]


def test_a_tick_more_than_an_interval_late_schedules_one_interval_after_now(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    sessions = [
        writable_session(server, pairs, q, j) for q, j in [("", 0.0), ("pi=2", 0.25), ("", 0.0)]
    ]
    first = sessions[0].timer_deadline()
    assert first is not None
    assert {s.timer_deadline() for s in sessions} == {first}
    late = first + 3.7  # both intervals passed: the sender fell behind
    server.timers.fire_due(late, UNIX)
    assert [len(_pings(read_available(p))) for p in pairs[1::2]] == [1, 1, 1]  # one each
    assert [s.timer_deadline() for s in sessions] == [
        next_ping_after(first, 3.0, late),
        next_ping_after(first, 2.0, late),
        next_ping_after(first, 3.0, late),
    ]
    assert sessions[0].timer_deadline() == pytest.approx(late + 3.0)


def test_a_closed_sessions_entry_never_pings_the_connection_that_reuses_its_socket(
    pairs: list[socket.socket],
) -> None:
    server = Server(CONFIG)
    old = writable_session(server, pairs)  # due at 1.5
    old_fd = pairs[0].fileno()
    old.request_close("remote", reconnect=False)
    read_available(pairs[1])  # its close frame
    pairs[0].close()  # the descriptor is free for the next connection
    new = writable_session(server, pairs, "pi=2", 0.75)  # due at 2 * 1.25 = 2.5
    if pairs[2].fileno() != old_fd and pairs[3].fileno() != old_fd:
        pytest.skip("the kernel did not hand out the same descriptor again")
    due = new.timer_deadline()
    assert due == pytest.approx(2.5)
    server.timers.fire_due(1.6, UNIX)  # the old session's tick: nothing for anyone
    assert read_available(pairs[3]) == b""
    assert new.timer_deadline() == due
    server.timers.fire_due(due, UNIX + 1)
    assert _pings(read_available(pairs[3])) == ["1700000001"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["", "pi=1", "pi=2", "ptp=ms", "pi=2&ptp=ns"]),
            st.sampled_from([0.0, 0.25, 0.5, 0.9]),
        ),
        min_size=1,
        max_size=8,
    ),
    steps=st.lists(st.integers(min_value=1, max_value=45), min_size=1, max_size=12),
)
def test_the_shared_next_due_time_is_next_ping_after_for_every_session(
    plan: list[tuple[str, float]], steps: list[int]
) -> None:
    """Differential: each session's pings and next due time against its own model run of
    ``next_ping_after``, ticks on the grid and late ones (up to 4.5 s apart)."""
    peers: list[socket.socket] = []
    try:
        server = Server(CONFIG)
        sessions = [writable_session(server, peers, q, j) for q, j in plan]
        intervals = [s.core.settings.ping_interval for s in sessions]
        model = [s.timer_deadline() for s in sessions]
        now = 0.0
        for tenths in steps:
            now = round(now + tenths / 10, 1)
            server.timers.fire_due(now, UNIX)
            expected = []
            for i, due in enumerate(model):
                assert due is not None
                if due <= now:
                    model[i] = next_ping_after(due, intervals[i], now)
                    expected.append(1)
                else:
                    expected.append(0)
            got = [len(_pings(read_available(p))) for p in peers[1::2]]
            assert got == expected
            assert [s.timer_deadline() for s in sessions] == model
            # the timer task will wake each session at its next due time
            assert all(s.scheduled_at == d for s, d in zip(sessions, model, strict=True))
    finally:
        for sock in peers:
            sock.close()
