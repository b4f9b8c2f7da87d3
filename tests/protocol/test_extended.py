"""The extended protocol in the core: history, restore, pong timeout, whisper, presence."""

from __future__ import annotations

import json

from cableway.protocol.broker import HistoryEntry, HistoryQuery, SessionSnapshot
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.events import (
    CloseConnection,
    CommandIgnored,
    HistoryRequest,
    PresenceRequest,
    Publish,
    SessionChanged,
    StreamAdded,
)

from .helpers import sent, subscribe

PUBLIC = StreamPolicy(public_streams=True, streams_secret="x", streams_whisper=False)
CHAT = json.dumps({"channel": "$pubsub", "stream_name": "chat"})


def ext(**kw: object) -> CableConnection:
    settings = SessionSettings(
        policy=PUBLIC,
        extended=True,
        history=True,
        presence=True,
        resumable=True,
        **kw,  # type: ignore[arg-type]
    )
    conn = CableConnection(sid="new", settings=settings, now=0.0, ping_jitter=0.0)
    conn.accept('{"u":1}')
    conn.events()
    return conn


def test_subscribe_with_history_since_asks_the_broker_then_confirms() -> None:
    conn = ext()
    conn.receive_message(
        json.dumps({"command": "subscribe", "identifier": CHAT, "history": {"since": 100}}), now=1
    )
    events = conn.events()
    assert sent(events) == ['{"type":"confirm_subscription","identifier":' + json.dumps(CHAT) + "}"]
    request = [e for e in events if isinstance(e, HistoryRequest)]
    assert request == [HistoryRequest(CHAT, (HistoryQuery("chat", since=100.0),))]
    conn.history_result(CHAT, [HistoryEntry("chat", 7, '{"a":1}', 100.0)], epoch="ep")
    assert [json.loads(t) for t in sent(conn.events())] == [
        {"identifier": CHAT, "message": {"a": 1}, "stream_id": "chat", "epoch": "ep", "offset": 7},
        {"type": "confirm_history", "identifier": CHAT},
    ]


def test_history_position_wins_over_since_and_failure_rejects() -> None:
    conn = ext()
    conn.receive_message(subscribe(CHAT), now=1)
    conn.events()
    request = {
        "since": 5,
        "streams": {"chat": {"epoch": "ep", "offset": 3}, "other": {"epoch": "x", "offset": 1}},
    }
    conn.receive_message(
        json.dumps({"command": "history", "identifier": CHAT, "history": request}), now=2
    )
    (req,) = [e for e in conn.events() if isinstance(e, HistoryRequest)]
    assert req.queries == (HistoryQuery("chat", epoch="ep", offset=3),)
    conn.history_result(CHAT, None)
    assert sent(conn.events()) == [
        '{"type":"reject_history","identifier":' + json.dumps(CHAT) + "}"
    ]


def test_history_edge_cases() -> None:
    conn = ext()
    conn.receive_message(subscribe(CHAT), now=1)
    conn.events()
    # neither since nor streams: ignored
    conn.receive_message(
        json.dumps({"command": "history", "identifier": CHAT, "history": {}}), now=2
    )
    assert sent(conn.events()) == []
    # empty streams counts as present, and with no position for our stream: confirm at once
    conn.receive_message(
        json.dumps({"command": "history", "identifier": CHAT, "history": {"streams": {}}}), now=2
    )
    assert sent(conn.events()) == [
        '{"type":"confirm_history","identifier":' + json.dumps(CHAT) + "}"
    ]
    # malformed position: reject
    bad = {"streams": {"chat": {"epoch": 5, "offset": "x"}}}
    conn.receive_message(
        json.dumps({"command": "history", "identifier": CHAT, "history": bad}), now=2
    )
    assert sent(conn.events()) == [
        '{"type":"reject_history","identifier":' + json.dumps(CHAT) + "}"
    ]
    # not subscribed: ignored
    conn.receive_message(
        json.dumps({"command": "history", "identifier": "x", "history": {"since": 1}}), now=2
    )
    assert isinstance(conn.events()[0], CommandIgnored)


def test_restore_reinstates_subscriptions_without_confirmations() -> None:
    settings = SessionSettings(policy=PUBLIC, extended=True, history=True, resumable=True)
    conn = CableConnection(sid="new", settings=settings, now=0.0)
    bogus = json.dumps({"channel": "$pubsub", "signed_stream_name": "forged--sig"})
    conn.restore(SessionSnapshot('{"u":1}', ((CHAT, "chat"), (bogus, "secret-stream"))))
    events = conn.events()
    assert StreamAdded(CHAT, "chat") in events
    assert sent(events) == [
        json.dumps(
            {"type": "welcome", "sid": "new", "restored": True, "restored_ids": [CHAT]},
            separators=(",", ":"),
        )
    ]
    assert conn.identifiers == '{"u":1}'
    assert any(isinstance(e, SessionChanged) and e.sid == "new" for e in events)


def test_snapshots_follow_subscriptions_on_extended_only() -> None:
    conn = ext()
    conn.receive_message(subscribe(CHAT), now=1)
    (changed,) = [e for e in conn.events() if isinstance(e, SessionChanged)]
    assert changed.snapshot.subscriptions == ((CHAT, "chat"),)
    plain = CableConnection(sid="p", settings=SessionSettings(policy=PUBLIC, resumable=True), now=0)
    plain.accept("{}")
    plain.receive_message(subscribe(CHAT), now=1)
    assert not [e for e in plain.events() if isinstance(e, SessionChanged)]


def test_pong_timeout_disconnects_silent_extended_clients() -> None:
    conn = ext(ping_interval=1.0, pong_timeout=1.0)
    conn.handle_timer(0.5, unix_time=1)  # first ping (jitter 0 -> at 0.5)
    assert conn.next_deadline() == 1.5
    conn.receive_message('{"command":"pong"}', now=1.0)
    conn.handle_timer(1.5, unix_time=2)  # second ping, new pong deadline 2.5
    conn.events()
    conn.handle_timer(2.5, unix_time=3)
    events = conn.events()
    assert sent(events) == ['{"type":"disconnect","reason":"no_pong","reconnect":true}']
    assert events[-1] == CloseConnection(1000, "No Pong")
    assert conn.state is SessionState.CLOSED


def test_pong_timeout_does_not_apply_to_v1_sessions() -> None:
    settings = SessionSettings(ping_interval=1.0, pong_timeout=1.0)
    conn = CableConnection(sid="s", settings=settings, now=0, ping_jitter=0)
    conn.accept("{}")
    for t in range(1, 10):
        conn.handle_timer(float(t), unix_time=1)
    assert conn.state is SessionState.OPEN


def test_whisper_on_public_stream_excludes_sender_and_is_transient() -> None:
    conn = ext()
    conn.receive_message(subscribe(CHAT), now=1)
    conn.events()
    conn.receive_message(
        json.dumps({"command": "whisper", "identifier": CHAT, "data": {"event": "typing"}}), now=2
    )
    (publish,) = [e for e in conn.events() if isinstance(e, Publish)]
    pub = publish.publication
    assert (pub.stream, json.loads(pub.data), pub.exclude_socket, pub.transient) == (
        "chat",
        {"event": "typing"},
        "new",
        True,
    )


def test_whisper_refused_on_signed_and_turbo_streams_by_default() -> None:
    from cableway.auth.signed_streams import sign_stream_name

    conn = ext()
    signed = json.dumps({"channel": "$pubsub", "signed_stream_name": sign_stream_name("s", "x")})
    conn.receive_message(subscribe(signed), now=1)
    conn.events()
    conn.receive_message(
        json.dumps({"command": "whisper", "identifier": signed, "data": "hi"}), now=2
    )
    assert not [e for e in conn.events() if isinstance(e, Publish)]


def test_presence_join_leave_info_requests() -> None:
    conn = ext()
    conn.receive_message(
        json.dumps(
            {"command": "subscribe", "identifier": CHAT, "presence": {"id": 42, "info": {"n": "J"}}}
        ),
        now=1,
    )
    joins = [e for e in conn.events() if isinstance(e, PresenceRequest)]
    assert joins == [PresenceRequest("join", CHAT, "chat", presence_id="42", info={"n": "J"})]
    conn.receive_message(json.dumps({"command": "presence", "identifier": CHAT, "data": {}}), now=2)
    assert [e.kind for e in conn.events() if isinstance(e, PresenceRequest)] == ["info"]
    conn.presence_result(CHAT, [("42", {"n": "J"})])
    assert json.loads(sent(conn.events())[0]) == {
        "type": "presence",
        "identifier": CHAT,
        "message": {"type": "info", "total": 1, "records": [{"info": {"n": "J"}, "id": "42"}]},
    }
    conn.receive_message(json.dumps({"command": "unsubscribe", "identifier": CHAT}), now=3)
    assert [e.kind for e in conn.events() if isinstance(e, PresenceRequest)] == ["leave"]


def test_presence_info_without_broker_answers_error() -> None:
    settings = SessionSettings(policy=PUBLIC, extended=True)
    conn = CableConnection(sid="s", settings=settings, now=0)
    conn.accept("{}")
    conn.receive_message(subscribe(CHAT), now=1)
    conn.events()
    conn.receive_message(json.dumps({"command": "presence", "identifier": CHAT}), now=2)
    assert json.loads(sent(conn.events())[0])["message"] == {"type": "error", "total": 0}


def test_commands_beyond_the_rate_are_dropped_then_allowed_again() -> None:
    from cableway.protocol.limits import Limits

    settings = SessionSettings(limits=Limits(commands_rate=10, commands_burst=5))
    conn = CableConnection(sid="s", settings=settings, now=0)
    conn.accept("{}")
    conn.events()
    for _ in range(8):
        conn.receive_message('{"command":"ping"}', now=0.0)
    events = conn.events()
    assert len(sent(events)) == 5
    assert sum(isinstance(e, CommandIgnored) and e.detail == "rate limited" for e in events) == 3
    conn.receive_message('{"command":"ping"}', now=0.1)  # one token refilled
    assert sent(conn.events()) == ['{"type":"pong"}']


def test_native_pings_apply_the_pong_timeout_to_v1_and_native_pongs_answer_it() -> None:
    from cableway.protocol.events import NativePing

    settings = SessionSettings(ping_interval=1.0, pong_timeout=1.0, native_pings=True)
    conn = CableConnection(sid="s", settings=settings, now=0, ping_jitter=0)
    conn.accept("{}")
    conn.events()
    conn.handle_timer(0.5, unix_time=1)
    assert NativePing() in conn.events()
    conn.note_activity()  # the browser answered the native ping
    conn.handle_timer(1.5, unix_time=2)
    conn.handle_timer(2.5, unix_time=3)
    assert sent(conn.events())[-1] == '{"type":"disconnect","reason":"no_pong","reconnect":true}'


def test_restored_subscriptions_hold_live_messages_until_history_is_replayed() -> None:
    from cableway.protocol.events import ReleaseHeld

    settings = SessionSettings(
        policy=PUBLIC, extended=True, history=True, resumable=True, ping_interval=0
    )
    conn = CableConnection(sid="new", settings=settings, now=0.0)
    conn.restore(SessionSnapshot("{}", ((CHAT, "chat"),)), now=10.0)
    conn.events()
    assert conn.held == {CHAT}
    assert conn.next_deadline() == 15.0
    conn.receive_message(
        json.dumps(
            {
                "command": "history",
                "identifier": CHAT,
                "history": {"streams": {"chat": {"epoch": "e", "offset": 3}}},
            }
        ),
        now=11,
    )
    conn.events()
    conn.history_result(
        CHAT, [HistoryEntry("chat", 4, "4", 0), HistoryEntry("chat", 5, "5", 0)], epoch="e"
    )
    events = conn.events()
    assert events[-1] == ReleaseHeld(CHAT, after=5)  # live 4 and 5 were replayed: drop them
    assert conn.held == set()


def test_held_messages_are_released_after_the_hold_timeout() -> None:
    from cableway.protocol.events import ReleaseHeld

    settings = SessionSettings(
        policy=PUBLIC, extended=True, history=True, resumable=True, ping_interval=0
    )
    conn = CableConnection(sid="new", settings=settings, now=0.0)
    conn.restore(SessionSnapshot("{}", ((CHAT, "chat"),)), now=0.0)
    conn.events()
    conn.handle_timer(4.9, unix_time=1)
    assert conn.events() == []
    conn.handle_timer(5.0, unix_time=1)
    assert conn.events() == [ReleaseHeld(CHAT, None)]
    assert conn.next_deadline() is None


def test_a_pending_history_request_holds_live_messages_until_answered() -> None:
    """A broker may answer later (Redis): meanwhile live messages must not overtake the
    history, and those the history replays must not arrive twice."""
    from cableway.protocol.events import ReleaseHeld

    settings = SessionSettings(
        policy=PUBLIC, extended=True, history=True, resumable=True, ping_interval=0
    )
    conn = CableConnection(sid="new", settings=settings, now=0.0)
    conn.accept("{}")
    conn.receive_message(
        json.dumps({"command": "subscribe", "identifier": CHAT, "history": {"since": 100}}),
        now=20.0,
    )
    assert any(isinstance(e, HistoryRequest) for e in conn.events())
    assert conn.held == {CHAT}
    assert conn.next_deadline() == 25.0
    conn.history_result(CHAT, [HistoryEntry("chat", 9, "9", 100.0)], epoch="e")
    assert conn.events()[-1] == ReleaseHeld(CHAT, after=9)
    assert conn.held == set()
    assert conn.next_deadline() is None
    # no answer at all: released (with nothing dropped) when the hold times out
    conn.receive_message(
        json.dumps(
            {
                "command": "history",
                "identifier": CHAT,
                "history": {"streams": {"chat": {"epoch": "e", "offset": 9}}},
            }
        ),
        now=30.0,
    )
    conn.events()
    assert conn.held == {CHAT}
    conn.handle_timer(35.0, unix_time=1)
    assert conn.events() == [ReleaseHeld(CHAT, None)]


def test_take_ping_arms_the_pong_deadline_and_defers_to_handle_timer_when_it_passed() -> None:
    conn = ext(ping_interval=1.0, pong_timeout=1.0)
    assert conn.take_ping(0.5, unix_time=1) == '{"type":"ping","message":1}'
    assert conn.next_deadline() == 1.5  # the next ping, and the pong deadline
    assert conn.take_ping(1.5, unix_time=2) is None  # the pong deadline passed
    conn.handle_timer(1.5, unix_time=2)
    assert conn.events()[-1] == CloseConnection(1000, "No Pong")
