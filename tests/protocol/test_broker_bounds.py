"""The memory broker's bounds: expiry costs what expired, records go with their history,
the byte cap (``history_max_bytes``) evicts the oldest messages first and history requests
reaching back to them are refused."""

from __future__ import annotations

import itertools
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cableway.config import ConfigError, load_config, load_config_with_warnings
from cableway.protocol.broker import (
    ENTRY_COST,
    STREAM_COST,
    HistoryError,
    HistoryQuery,
    MemoryBroker,
    PresenceEvent,
    SessionSnapshot,
    history_cost,
)

EPOCH = "ep01"


def broker(**kw: float) -> MemoryBroker:
    return MemoryBroker(epoch=EPOCH, **kw)  # type: ignore[arg-type]


class Clock(float):
    """A time that counts every comparison it takes part in (arithmetic keeps the type),
    to measure how much stored state an operation looks at."""

    compared = 0

    def _count(self, other: object, op: str) -> bool:
        Clock.compared += 1
        return bool(getattr(float, op)(float(self), float(other)))  # type: ignore[arg-type]

    def __lt__(self, other: object) -> bool:
        return self._count(other, "__lt__")

    def __le__(self, other: object) -> bool:
        return self._count(other, "__le__")

    def __gt__(self, other: object) -> bool:
        return self._count(other, "__gt__")

    def __ge__(self, other: object) -> bool:
        return self._count(other, "__ge__")

    def __eq__(self, other: object) -> bool:
        return self._count(other, "__eq__")

    def __ne__(self, other: object) -> bool:
        return self._count(other, "__ne__")

    __hash__ = float.__hash__

    def __add__(self, other: object) -> Clock:
        return Clock(float(self) + float(other))  # type: ignore[arg-type]

    def __sub__(self, other: object) -> Clock:
        return Clock(float(self) - float(other))  # type: ignore[arg-type]

    def __mul__(self, other: object) -> Clock:
        return Clock(float(self) * float(other))  # type: ignore[arg-type]

    __radd__ = __add__
    __rmul__ = __mul__


# -- expiry costs what expired ---------------------------------------------------------


def test_expiry_looks_at_what_expired_not_at_everything_stored() -> None:
    b = broker(history_ttl=60, sessions_ttl=60, presence_ttl=60)
    kept, gone = 5000, 10
    for i in range(gone):  # due at t=100
        b.add(f"old{i}", "x", now=Clock(0))
        b.save_session(f"old{i}", SessionSnapshot("{}", ()))
        b.release_session(f"old{i}", now=Clock(0))
        b.presence_join("room", f"old{i}", f"old{i}", None)
        b.presence_disconnect("room", f"old{i}", now=Clock(0))
    for i in range(kept):  # not due at t=100
        b.add(f"new{i}", "x", now=Clock(90))
        b.save_session(f"live{i}", SessionSnapshot("{}", ()))  # live: never due
        b.save_session(f"new{i}", SessionSnapshot("{}", ()))
        b.release_session(f"new{i}", now=Clock(90))
        b.presence_join("room", f"new{i}", f"new{i}", None)
        b.presence_disconnect("room", f"new{i}", now=Clock(90))
    Clock.compared = 0
    events = b.expire(Clock(100))
    # a walk over everything stored compares 4 * 5000 times; the heaps look at what was
    # due (and a logarithm of what is not)
    assert Clock.compared < 2000
    assert sorted(e.presence_id for e in events) == sorted(f"old{i}" for i in range(gone))
    assert b.stream_count == kept
    assert b.restore_session("old0", now=0) is None
    assert b.restore_session("new0", now=100) is not None


def test_expiry_in_slices() -> None:
    b = broker(history_ttl=10)
    for i in range(100):
        b.add(f"s{i}", "x", now=i / 100)
    b.add("later", "x", now=50)
    assert not b.expiry_pending(10)
    assert b.expiry_pending(11)
    seen = [b.stream_count]
    while b.expiry_pending(11) and len(seen) < 100:
        b.expire(11, budget=25)
        seen.append(b.stream_count)
    # every slice did part of the work, at most its budget (a stream: its message and its
    # record), none did it all
    assert all(0 < x - y <= 25 for x, y in itertools.pairwise(seen))
    assert len(seen) > 4
    assert seen[-1] == 1
    assert b.latest_offset("later") == 1


def test_expiry_drops_the_expired_messages_of_a_live_stream() -> None:
    b = broker(history_ttl=10, history_limit=100)
    for t in range(40):  # more than fit in a tuple: the stream's history is a deque
        b.add("s", str(t), now=t)
    b.expire(45)  # messages published before 35 are gone
    assert [e.data for e in b.history_since("s", 0, now=45)] == [str(t) for t in range(35, 40)]
    with pytest.raises(HistoryError):  # offset 35 (published at 34) is gone
        b.history_from("s", EPOCH, 34, now=45)
    assert [e.offset for e in b.history_from("s", EPOCH, 35, now=45)] == [36, 37, 38, 39, 40]
    assert b.history_bytes == STREAM_COST + 1 + 5 * (ENTRY_COST + 2)


def test_reads_never_serve_an_expired_message_the_sweep_has_not_dropped_yet() -> None:
    b = broker(history_ttl=10)
    b.add("s", "a", now=0)
    b.add("s", "b", now=5)
    # no sweep since: "a" expired at 10
    assert [e.data for e in b.history_since("s", 0, now=12)] == ["b"]
    with pytest.raises(HistoryError):
        b.history_from("s", EPOCH, 0, now=12)
    assert [e.data for e in b.history_from("s", EPOCH, 1, now=12)] == ["b"]


# -- the cap -----------------------------------------------------------------------------


def one_message(stream: str, data: str = "x") -> int:
    return STREAM_COST + len(stream) + ENTRY_COST + len(data)


def test_the_cap_evicts_the_oldest_messages_of_any_stream_first() -> None:
    b = broker(history_max_bytes=3 * one_message("a") + ENTRY_COST + 1)
    b.add("a", "1", now=1)
    b.add("b", "1", now=2)
    b.add("c", "1", now=3)
    b.add("a", "2", now=4)
    assert b.history_bytes == b.history_max_bytes  # full, nothing evicted yet
    b.add("b", "2", now=5)  # a's first message is the oldest: it goes
    assert b.history_bytes <= b.history_max_bytes
    assert [e.data for e in b.history_from("a", EPOCH, 1, now=5)] == ["2"]
    with pytest.raises(HistoryError):  # the client never saw a:1, evicted: refused
        b.history_from("a", EPOCH, 0, now=5)
    assert [e.data for e in b.history_from("b", EPOCH, 0, now=5)] == ["1", "2"]
    b.add("d", "1", now=6)  # next oldest: b:1 at t=2, then c:1 at t=3 (c forgotten)
    assert (b.latest_offset("c"), b.stream_count) == (0, 3)
    assert b.history_bytes <= b.history_max_bytes
    with pytest.raises(HistoryError):
        b.history_from("c", EPOCH, 0, now=6)
    assert b.fetch_history([HistoryQuery("c", epoch=EPOCH, offset=0)], now=6) is None


def test_a_stream_the_cap_forgot_never_reuses_an_offset() -> None:
    b = broker(history_max_bytes=one_message("s") + one_message("t"))
    for data in "abc":
        b.add("s", data, now=0)  # the cap keeps only the newest
    b.add("t", "x", now=1)
    b.add("u", "x", now=2)  # evicts s:3 (t=0): s is forgotten
    assert b.latest_offset("s") == 0
    assert b.add("s", "d", now=3) > 3
    with pytest.raises(HistoryError):
        b.history_from("s", EPOCH, 2, now=3)


def test_since_requests_reaching_back_to_evicted_messages_are_refused() -> None:
    b = broker(history_max_bytes=2 * one_message("s"), history_ttl=100)
    b.add("s", "1", now=10.5)
    b.add("t", "1", now=11.2)
    b.add("u", "1", now=12.7)  # evicts s:1 (s forgotten)
    # a message published in second 10 was evicted: no since <= 10 can be served whole,
    # for s (unknown now) nor for any other stream (which streams lost one is not kept)
    for stream in ("s", "t", "never"):
        with pytest.raises(HistoryError):
            b.history_since(stream, 10, now=13)
    assert b.fetch_history([HistoryQuery("t", since=5)], now=13) is None
    assert [e.data for e in b.history_since("t", 11, now=13)] == ["1"]
    assert b.history_since("s", 11, now=13) == []
    # once the evicted message would have expired anyway, the cap changed nothing
    assert [e.data for e in b.history_since("u", 0, now=111)] == ["1"]


def test_one_message_larger_than_the_cap_is_not_kept() -> None:
    b = broker(history_max_bytes=one_message("s"))
    b.add("s", "a", now=0)
    assert b.add("s", "x" * 100, now=1) == 2  # delivered live with offset 2, not kept
    assert (b.stream_count, b.history_bytes) == (0, 0)
    with pytest.raises(HistoryError):
        b.history_from("s", EPOCH, 1, now=1)
    assert b.add("s", "b", now=2) == 3


def test_history_bytes_are_accounted_exactly_under_random_operations() -> None:
    rng = random.Random(13)
    cap = 40 * one_message("s0", "xxxxx")
    b = broker(history_max_bytes=cap, history_limit=40, history_ttl=30)
    latest: dict[str, int] = {}
    now = 0.0
    for step in range(4000):
        now += rng.random() / 2
        if step % 97 == 0:
            b.expire(now, budget=rng.randint(1, 50))
        stream = f"s{rng.randint(0, 30)}"
        offset = b.add(stream, "x" * rng.randint(0, 9), now=now)
        assert offset > latest.get(stream, 0)  # offsets only grow, forgotten or not
        latest[stream] = offset
        assert b.history_bytes <= cap
    # recount from what is retained: every stream, every message
    expected = 0
    for stream, entries in b._streams.items():
        expected += STREAM_COST + len(stream)
        flat = list(entries)  # offset, text, publish time, broadcast type, next message...
        expected += sum(history_cost(flat[i + 1], flat[i + 3]) for i in range(0, len(flat), 4))
    assert b.history_bytes == expected
    assert sorted(stream for _, stream in b._due) == sorted(b._streams)
    b.expire(now + 31)
    assert (b.stream_count, b.history_bytes, len(b._due)) == (0, 0, 0)


def test_history_bytes_match_the_memory_taken() -> None:
    """The cap counts what the history really takes (CPython 3.11, 64-bit), within 25 %."""
    count = 20_000
    b = broker(history_limit=100)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):  # fresh name and text objects, as a parsed POST gives
            b.add(f"stream-{i:07d}", f"message {i:07d}", now=1000.0)
        for i in range(0, count, 4):  # a quarter of the streams get 9 more messages
            for n in range(9):
                b.add(f"stream-{i:07d}", f"message {n:07d}", now=1001.0)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.75 < b.history_bytes / taken < 1.25


def test_presence_and_sessions_still_expire_in_order() -> None:
    b = broker(presence_ttl=15, sessions_ttl=30)
    b.save_session("a", SessionSnapshot("{}", ()))
    b.release_session("a", now=0)
    b.save_session("a", SessionSnapshot("{}", ()))  # live again: the old expiry is stale
    b.presence_join("room", "s1", "1", None)
    b.presence_disconnect("room", "s1", now=0)
    b.presence_join("room", "s1", "1", None)  # back in time
    b.presence_disconnect("room", "s1", now=10)  # and away again: due at 25
    assert b.expire(20) == []
    assert b.restore_session("a", now=40) is not None
    assert b.expire(25) == [PresenceEvent("room", "leave", "1")]
    assert b.expire(1000) == []
    assert not b.expiry_pending(1000)
    assert b.restore_session("a", now=1000) is not None  # live: never expires


# -- the option ----------------------------------------------------------------------------


def test_history_max_bytes_reaches_the_broker_from_flags_and_environment() -> None:
    assert load_config([], {}).new_broker().history_max_bytes == 0  # type: ignore[union-attr]
    flag = load_config(["--history_max_bytes=1000000"], {"ANYCABLE_HISTORY_MAX_BYTES": "5"})
    assert flag.new_broker().history_max_bytes == 1_000_000  # type: ignore[union-attr]
    env = load_config([], {"ANYCABLE_HISTORY_MAX_BYTES": "5000"})
    assert env.new_broker().history_max_bytes == 5000  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="history_max_bytes"):
        load_config(["--history_max_bytes=-1"], {})
    _, warnings = load_config_with_warnings(["--broker=none", "--history_max_bytes=10"], {})
    assert any("--history_max_bytes" in warning for warning in warnings)


# -- never a silent gap, never another message: a model of everything ever published ---------

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "expire", "wait"]),
        st.integers(0, 3),  # stream
        st.integers(0, 30),  # text length / budget
        st.sampled_from([0.0, 0.3, 1.0, 7.0, 40.0, 500.0]),  # time step
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, cap=st.sampled_from([0, 700, 1500, 4000]))
def test_history_is_whole_or_refused(ops: list[tuple[str, int, int, float]], cap: int) -> None:
    """Whatever expired or was evicted, a history answer holds every message the client
    asked for and nothing else; otherwise it is refused."""
    b = broker(history_ttl=30, history_max_bytes=cap, history_limit=1000)
    published: dict[str, list[tuple[int, str, float]]] = {f"s{i}": [] for i in range(4)}
    now = 1000.0
    for op, index, size, step in ops:
        stream = f"s{index}"
        now += step
        if op == "add":
            data = "x" * size
            offset = b.add(stream, data, now=now)
            assert not published[stream] or offset > published[stream][-1][0]
            published[stream].append((offset, data, now))
        elif op == "expire":
            b.expire(now, budget=size + 1)
        for name, messages in published.items():
            for seen in [0, *(offset for offset, _, _ in messages)]:
                try:
                    got = b.history_from(name, EPOCH, seen, now=now)
                except HistoryError:
                    continue
                want = [(o, d) for o, d, _ in messages if o > seen]
                assert [(e.offset, e.data) for e in got] == want
            for since in {0, *(int(at) for _, _, at in messages)}:
                try:
                    got = b.history_since(name, since, now=now)
                except HistoryError:
                    continue
                want = [(o, d) for o, d, at in messages if int(at) >= since and at >= now - 30]
                assert [(e.offset, e.data) for e in got] == want
