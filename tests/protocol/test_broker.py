from __future__ import annotations

import pytest

from cableway.protocol.broker import (
    HistoryError,
    HistoryQuery,
    MemoryBroker,
    PresenceEvent,
    SessionSnapshot,
)


def broker(**kw: float) -> MemoryBroker:
    return MemoryBroker(epoch="ep01", **kw)  # type: ignore[arg-type]


def test_offsets_start_at_one_per_stream() -> None:
    b = broker()
    assert [b.add("a", "x", now=0), b.add("a", "y", now=0), b.add("b", "z", now=0)] == [1, 2, 1]


def test_history_from_is_strictly_after() -> None:
    b = broker()
    for i in range(5):
        b.add("s", f"m{i + 1}", now=100)
    assert [e.data for e in b.history_from("s", "ep01", 2, now=100)] == ["m3", "m4", "m5"]
    assert b.history_from("s", "ep01", 5, now=100) == []


@pytest.mark.parametrize(
    ("epoch", "offset", "stream"),
    [
        ("other", 1, "s"),  # epoch mismatch (a restart)
        ("ep01", 1, "unknown"),  # unknown stream
        ("ep01", 1, "s"),  # evicted: oldest retained is 3
        ("ep01", 9, "s"),  # from the future
    ],
)
def test_history_from_rejections(epoch: str, offset: int, stream: str) -> None:
    b = broker(history_limit=3)
    for i in range(5):
        b.add("s", str(i), now=0)
    with pytest.raises(HistoryError):
        b.history_from(stream, epoch, offset, now=0)


def test_history_limit_and_ttl_evict() -> None:
    b = broker(history_limit=2, history_ttl=10)
    b.add("s", "old", now=0)
    b.add("s", "mid", now=5)
    b.add("s", "new", now=8)
    assert [e.data for e in b.history_since("s", 0, now=8)] == ["mid", "new"]
    assert [e.data for e in b.history_since("s", 0, now=15.5)] == ["new"]
    with pytest.raises(HistoryError):
        b.history_from("s", "ep01", 3, now=100)  # nothing retained


def test_history_since_uses_whole_seconds_and_unknown_stream_is_empty() -> None:
    b = broker()
    b.add("s", "a", now=99.9)
    b.add("s", "b", now=100.2)
    assert [e.data for e in b.history_since("s", 100, now=101)] == ["b"]
    assert [e.data for e in b.history_since("s", 99, now=101)] == ["a", "b"]
    assert b.history_since("nope", 1, now=101) == []


def test_position_just_before_the_oldest_retained_is_served() -> None:
    b = broker(history_limit=3)
    for i in range(1, 6):
        b.add("s", str(i), now=0)  # retained: 3, 4, 5
    assert [e.data for e in b.history_from("s", "ep01", 2, now=0)] == ["3", "4", "5"]
    with pytest.raises(HistoryError):
        b.history_from("s", "ep01", 1, now=0)  # message 2 is gone


def test_fetch_history_is_all_or_nothing() -> None:
    b = broker()
    b.add("a", "1", now=0)
    ok = [HistoryQuery("a", epoch="ep01", offset=0), HistoryQuery("b", since=0)]
    assert [e.data for e in b.fetch_history(ok, now=0) or []] == ["1"]
    bad = [HistoryQuery("a", epoch="ep01", offset=0), HistoryQuery("a", epoch="nope", offset=0)]
    assert b.fetch_history(bad, now=0) is None


def test_session_snapshots_live_then_expire_after_release() -> None:
    b = broker(sessions_ttl=30)
    snap = SessionSnapshot('{"u":1}', (("id", "s"),))
    b.save_session("sid1", snap)
    assert b.restore_session("sid1", now=10_000) == snap  # live: never expires
    b.release_session("sid1", now=100)
    assert b.restore_session("sid1", now=129) == snap
    assert b.restore_session("sid1", now=130) is None
    assert b.restore_session("unknown", now=0) is None
    b.expire(200)
    assert b.restore_session("sid1", now=0) is None


def test_sessions_ttl_zero_disables_restore() -> None:
    b = broker(sessions_ttl=0)
    b.save_session("sid1", SessionSnapshot("{}", ()))
    assert b.restore_session("sid1", now=0) is None


def test_presence_dedups_by_id_and_leaves_with_last_session() -> None:
    b = broker()
    assert b.presence_join("room", "s1", "42", {"name": "Jack"}) == PresenceEvent(
        "room", "join", "42", {"name": "Jack"}
    )
    assert b.presence_join("room", "s2", "42", {"name": "Jack"}) is None
    assert b.presence_info("room") == [("42", {"name": "Jack"})]
    with pytest.raises(ValueError, match="mismatch"):
        b.presence_join("room", "s1", "43", None)
    assert b.presence_leave("room", "s1") is None
    assert b.presence_leave("room", "s2") == PresenceEvent("room", "leave", "42")
    assert b.presence_info("room") == []
    assert b.presence_leave("room", "s2") is None


def test_presence_expires_after_disconnect_unless_rejoined() -> None:
    b = broker(presence_ttl=15)
    b.presence_join("room", "s1", "1", None)
    b.presence_join("room", "s2", "2", None)
    b.presence_disconnect("room", "s1", now=100)
    b.presence_disconnect("room", "s2", now=100)
    b.presence_join("room", "s2", "2", None)  # came back in time
    assert b.expire(114) == []
    assert b.expire(115) == [PresenceEvent("room", "leave", "1")]
    assert b.presence_info("room") == [("2", None)]


def test_a_stream_is_forgotten_with_its_last_message() -> None:
    b = broker(history_ttl=10)
    b.add("s", "x", now=0)
    b.add("t", "y", now=5)
    b.expire(10.5)  # s's only message expired: no record lingers for it
    assert (b.latest_offset("s"), b.latest_offset("t")) == (0, 1)
    assert b.stream_count == 1
    b.expire(15.5)
    assert b.stream_count == 0
    assert b.history_bytes == 0


def test_a_forgotten_stream_restarts_after_every_offset_it_could_have_given() -> None:
    b = broker(history_ttl=10)
    for data in ("a", "b", "c"):
        b.add("s", data, now=0)
    b.expire(200)  # forgotten (AnyCable forgets the counter after 10 TTLs, then reuses 1..3)
    # a client that saw only "a" (offset 1) comes back after the stream resumed
    assert b.add("s", "d", now=500) == 4  # not 1: offsets 1..3 meant other messages
    with pytest.raises(HistoryError):  # "b" and "c" are gone: refused, not "nothing new"
        b.history_from("s", "ep01", 1, now=500)
    # a client that had seen everything misses nothing
    assert [e.data for e in b.history_from("s", "ep01", 3, now=500)] == ["d"]
