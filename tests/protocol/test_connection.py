from __future__ import annotations

import json

import pytest

from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.errors import LocalProtocolError, RemoteProtocolError
from cableway.protocol.events import (
    CloseConnection,
    CommandIgnored,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from cableway.protocol.limits import Limits

from .helpers import open_connection, sent, subscribe, turbo_identifier


def test_accept_sends_welcome_with_sid() -> None:
    conn = CableConnection(sid="abc", settings=SessionSettings(), now=0.0)
    conn.accept('{"user_id":1}')
    assert conn.events() == [SendMessage('{"type":"welcome","sid":"abc"}')]
    assert conn.state is SessionState.OPEN
    assert conn.identifiers == '{"user_id":1}'


def test_reject_sends_disconnect_then_closes() -> None:
    conn = CableConnection(sid="abc", settings=SessionSettings(), now=0.0)
    conn.reject("token_expired")
    assert conn.events() == [
        SendMessage('{"type":"disconnect","reason":"token_expired","reconnect":false}'),
        CloseConnection(1000, "Auth Failed"),
    ]
    assert conn.state is SessionState.CLOSED
    assert conn.next_deadline() is None


def test_accept_twice_is_misuse() -> None:
    conn = open_connection()
    with pytest.raises(LocalProtocolError):
        conn.accept("{}")


def test_signed_turbo_subscription_is_confirmed_with_exact_identifier() -> None:
    conn = open_connection()
    identifier = turbo_identifier("chat/2023")
    conn.receive_message(subscribe(identifier), now=1.0)
    events = conn.events()
    assert events == [
        StreamAdded(identifier, "chat/2023"),
        SendMessage(
            json.dumps(
                {"type": "confirm_subscription", "identifier": identifier}, separators=(",", ":")
            )
        ),
    ]


def test_bad_signature_is_rejected_and_nothing_recorded() -> None:
    conn = open_connection()
    identifier = turbo_identifier("chat/2023", secret="wrong")
    conn.receive_message(subscribe(identifier), now=1.0)
    assert sent(conn.events()) == [
        '{"type":"reject_subscription","identifier":' + json.dumps(identifier) + "}"
    ]
    assert conn.subscriptions == {}


def test_duplicate_subscribe_is_ignored_silently() -> None:
    conn = open_connection()
    identifier = turbo_identifier("chat/2023")
    conn.receive_message(subscribe(identifier), now=1.0)
    conn.events()
    conn.receive_message(subscribe(identifier), now=1.5)
    events = conn.events()
    assert sent(events) == []
    assert [type(e) for e in events] == [CommandIgnored]
    assert conn.subscriptions == {identifier: "chat/2023"}


def test_identifiers_differing_in_key_order_are_distinct_subscriptions() -> None:
    conn = open_connection(policy=StreamPolicy(public_streams=True))
    a = '{"channel":"$pubsub","stream_name":"s"}'
    b = '{"stream_name":"s","channel":"$pubsub"}'
    conn.receive_message(subscribe(a), now=1)
    conn.receive_message(subscribe(b), now=1)
    added = [e for e in conn.events() if isinstance(e, StreamAdded)]
    assert added == [StreamAdded(a, "s"), StreamAdded(b, "s")]


def test_unsubscribe_removes_stream_without_reply() -> None:
    conn = open_connection()
    identifier = turbo_identifier("chat/2023")
    conn.receive_message(subscribe(identifier), now=1.0)
    conn.events()
    conn.receive_message(json.dumps({"command": "unsubscribe", "identifier": identifier}), now=2)
    assert conn.events() == [StreamRemoved(identifier, "chat/2023")]
    assert conn.subscriptions == {}


def test_unsubscribe_unknown_is_ignored() -> None:
    conn = open_connection()
    conn.receive_message('{"command":"unsubscribe","identifier":"{}"}', now=1)
    events = conn.events()
    assert sent(events) == []
    assert isinstance(events[0], CommandIgnored)


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1,2]",
        '"a string"',
        "{}",
        '{"command":42}',
        '{"command":"subscribe","identifier":{"channel":"x"}}',
        '{"command":"nope","identifier":"x"}',
        '{"command":"message","identifier":"never-subscribed","data":"{}"}',
        '{"command":"subscribe"}',
        "[" * 60_000,
        '{"command":"subscribe","identifier":"' + "1" * 5000 + '"}',
        b"\xff\xfe not utf-8",
        '{"command":"subscribe","identifier":"x","history":5}',
        "NaN",
    ],
)
def test_garbage_is_ignored_and_session_stays_usable(message: str | bytes) -> None:
    conn = open_connection()
    conn.receive_message(message, now=1.0)
    events = conn.events()
    assert sent(events) in (
        [],
        ['{"type":"reject_subscription","identifier":"' + "1" * 5000 + '"}'],
    )
    assert conn.state is SessionState.OPEN
    identifier = turbo_identifier("after/garbage")
    conn.receive_message(subscribe(identifier), now=2.0)
    assert StreamAdded(identifier, "after/garbage") in conn.events()


def test_json_null_is_ignored_without_event() -> None:
    conn = open_connection()
    conn.receive_message("null", now=1)
    assert conn.events() == []


def test_oversized_message_is_fatal_with_1009() -> None:
    conn = CableConnection(
        sid="s", settings=SessionSettings(limits=Limits(max_message_size=100)), now=0
    )
    conn.accept("{}")
    conn.events()
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_message("x" * 101, now=1)
    assert info.value.close_code == 1009
    assert conn.events() == [CloseConnection(1009, "message too big")]
    assert conn.state is SessionState.CLOSED


def test_subscription_count_is_bounded() -> None:
    settings = SessionSettings(
        limits=Limits(max_subscriptions=2), policy=StreamPolicy(public_streams=True)
    )
    conn = CableConnection(sid="s", settings=settings, now=0)
    conn.accept("{}")
    conn.events()
    for i in range(3):
        conn.receive_message(
            subscribe(json.dumps({"channel": "$pubsub", "stream_name": f"s{i}"})), now=1
        )
    replies = [json.loads(t)["type"] for t in sent(conn.events())]
    assert replies == ["confirm_subscription", "confirm_subscription", "reject_subscription"]


def test_ping_command_gets_pong_and_pong_command_nothing() -> None:
    conn = open_connection()
    conn.receive_message('{"command":"ping"}', now=1)
    conn.receive_message('{"command":"pong"}', now=1)
    assert sent(conn.events()) == ['{"type":"pong"}']


def test_message_command_on_builtin_channel_is_ignored() -> None:
    conn = open_connection()
    identifier = turbo_identifier("x")
    conn.receive_message(subscribe(identifier), now=1)
    conn.events()
    conn.receive_message(
        json.dumps({"command": "message", "identifier": identifier, "data": "{}"}), now=2
    )
    events = conn.events()
    assert sent(events) == []
    assert isinstance(events[0], CommandIgnored)


def test_history_without_broker_is_rejected() -> None:
    conn = open_connection()
    identifier = turbo_identifier("x")
    conn.receive_message(subscribe(identifier), now=1)
    conn.events()
    conn.receive_message(
        json.dumps({"command": "history", "identifier": identifier, "history": {"since": 1}}), now=2
    )
    assert sent(conn.events()) == [
        '{"type":"reject_history","identifier":' + json.dumps(identifier) + "}"
    ]


def test_first_ping_is_jittered_then_every_interval() -> None:
    conn = open_connection(ping_interval=3.0, jitter=0.0)
    assert conn.next_deadline() == 1.5
    conn.handle_timer(1.4, unix_time=1_700_000_000.0)
    assert conn.events() == []
    conn.handle_timer(1.5, unix_time=1_700_000_000.7)
    assert sent(conn.events()) == ['{"type":"ping","message":1700000000}']
    assert conn.next_deadline() == 4.5
    jittered = open_connection(ping_interval=3.0, jitter=0.99)
    deadline = jittered.next_deadline()
    assert deadline is not None
    assert 4.4 < deadline < 4.5


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("s", 1700000000), ("ms", 1700000000250), ("ns", 1700000000250000128)],
)
def test_ping_timestamp_precision(precision: str, expected: int) -> None:
    conn = CableConnection(
        sid="s", settings=SessionSettings(ping_precision=precision), now=0, ping_jitter=0
    )
    conn.accept("{}")
    conn.events()
    conn.handle_timer(10, unix_time=1_700_000_000.25)
    (text,) = sent(conn.events())
    message = json.loads(text)
    assert message["type"] == "ping"
    assert abs(message["message"] - expected) < 1_000_000  # float seconds: sub-ms exact


def test_ping_interval_zero_disables_pings() -> None:
    conn = open_connection(ping_interval=0)
    assert conn.next_deadline() is None
    conn.handle_timer(100, unix_time=1.0)
    assert conn.events() == []


def test_late_timer_does_not_burst_pings() -> None:
    conn = open_connection(ping_interval=3.0, jitter=0.0)
    conn.handle_timer(100.0, unix_time=1.0)
    assert len(sent(conn.events())) == 1
    assert conn.next_deadline() == 103.0


def test_server_disconnect_drops_streams_and_closes() -> None:
    conn = open_connection()
    identifier = turbo_identifier("x")
    conn.receive_message(subscribe(identifier), now=1)
    conn.events()
    conn.disconnect("server_restart", reconnect=True, code=1001, close_reason="Server restart")
    assert conn.events() == [
        SendMessage('{"type":"disconnect","reason":"server_restart","reconnect":true}'),
        StreamRemoved(identifier, "x"),
        CloseConnection(1001, "Server restart"),
    ]
    conn.receive_message(subscribe(identifier), now=2)
    conn.disconnect("again", reconnect=False)
    assert conn.events() == []


def test_take_ping_is_handle_timer_without_the_event() -> None:
    fast = open_connection(ping_interval=3.0, jitter=0.0)
    slow = open_connection(ping_interval=3.0, jitter=0.0)
    assert fast.take_ping(1.4, unix_time=1_700_000_000.0) is None  # not due yet
    for now in (1.5, 4.6, 100.0):  # on time, a little late, very late (no burst)
        text = fast.take_ping(now, unix_time=1_700_000_000.7)
        slow.handle_timer(now, unix_time=1_700_000_000.7)
        assert fast.events() == []
        assert sent(slow.events()) == [text]
        assert fast.next_deadline() == slow.next_deadline()


def test_take_ping_leaves_anything_else_to_handle_timer() -> None:
    native = CableConnection(
        sid="s", settings=SessionSettings(native_pings=True), now=0, ping_jitter=0
    )
    native.accept("{}")
    native.events()
    assert native.take_ping(10, unix_time=1.0) is None  # a NativePing event is due too
    pending = open_connection(ping_interval=3.0, jitter=0.0)
    pending.receive_message('{"command":"ping"}', now=1.0)  # a pong not yet taken
    assert pending.take_ping(10, unix_time=1.0) is None
    assert sent(pending.events()) == ['{"type":"pong"}']
    closed = open_connection(ping_interval=3.0, jitter=0.0)
    closed.disconnect("bye", reconnect=False)
    assert closed.take_ping(10, unix_time=1.0) is None
