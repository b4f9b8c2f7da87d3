"""Commands are answered in arrival order around those an application answers (RPC):
while a delegated command waits for its answer, the client's later commands wait too,
bounded, and run once the driver says the answer was applied (``delegated_answered``),
as AnyCable-Go answers one session's commands one at a time."""

from __future__ import annotations

import json

from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.events import CommandIgnored, Delegate, StreamAdded
from cableway.protocol.limits import Limits

from .helpers import POLICY, sent, subscribe, turbo_identifier

APP = '{"channel":"ChatChannel"}'
PING = json.dumps({"command": "ping"})
PONG = '{"type":"pong"}'


def delegating(limits: Limits | None = None) -> CableConnection:
    settings = SessionSettings(policy=POLICY, delegate=True, limits=limits or Limits())
    conn = CableConnection(sid="sid-1", settings=settings, now=0.0)
    conn.accept_delegated('{"user":"alice"}')
    conn.events()
    return conn


def message(identifier: str = APP, data: str = '{"action":"speak"}') -> str:
    return json.dumps({"command": "message", "identifier": identifier, "data": data})


def test_a_command_after_a_delegated_one_waits_for_its_answer() -> None:
    conn = delegating()
    turbo = turbo_identifier("room")
    for text in (subscribe(APP), PING, subscribe(turbo)):
        assert conn.receive_message(text, now=1.0)
    # only the delegation: the pong and the confirmation would overtake its answer
    assert conn.events() == [Delegate("subscribe", APP)]
    conn.transmit(json.dumps({"identifier": APP, "type": "confirm_subscription"}))
    conn.delegated_answered()
    events = conn.events()
    assert [json.loads(text) for text in sent(events)] == [
        {"identifier": APP, "type": "confirm_subscription"},
        {"type": "pong"},
        {"identifier": turbo, "type": "confirm_subscription"},
    ]
    assert StreamAdded(turbo, "room") in events


def test_the_waiting_commands_stop_at_the_next_delegated_one() -> None:
    conn = delegating()
    for text in (subscribe(APP), PING, message(), PING):
        conn.receive_message(text, now=1.0)
    assert conn.events() == [Delegate("subscribe", APP)]
    conn.delegated_answered()
    events = conn.events()
    assert sent(events) == [PONG]
    assert events[-1] == Delegate("message", APP, '{"action":"speak"}')
    conn.delegated_answered()
    assert sent(conn.events()) == [PONG]
    conn.receive_message(PING, now=2.0)  # nothing waits any longer: answered at once
    assert sent(conn.events()) == [PONG]


def test_a_delegated_command_that_is_not_sent_holds_nothing_back() -> None:
    conn = delegating()
    conn.receive_message(message(data=None), now=1.0)  # type: ignore[arg-type]
    conn.receive_message(PING, now=1.0)
    events = conn.events()
    assert isinstance(events[0], CommandIgnored)
    assert sent(events) == [PONG]


def test_at_most_a_bounded_number_of_commands_wait() -> None:
    limits = Limits(max_subscriptions=4, commands_burst=8, commands_rate=0)
    conn = delegating(limits)
    conn.receive_message(subscribe(APP), now=1.0)
    for _ in range(10):
        assert conn.receive_message(PING, now=1.0)
    events = conn.events()
    dropped = [e for e in events if isinstance(e, CommandIgnored)]
    assert len(dropped) == 2
    assert dropped[0].detail == "too many commands wait for the application"
    conn.delegated_answered()
    assert sent(conn.events()) == [PONG] * 8


def test_closing_drops_the_waiting_commands() -> None:
    conn = delegating()
    conn.receive_message(subscribe(APP), now=1.0)
    conn.receive_message(PING, now=1.0)
    conn.close_delegated(1000, "bye")
    conn.events()
    conn.delegated_answered()
    assert conn.state is SessionState.CLOSED
    assert conn.events() == []
