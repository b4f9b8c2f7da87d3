"""What a client's ``subscribe`` to an application channel carries (history to replay,
presence to join: ``@anycable/web`` sends both) is served once the application confirms
it, however many subscribes the application rejected, failed or found duplicate before.
Found by the ``app_session`` fuzz harness: each unconfirmed subscribe's history and
presence stayed in the bounded store, and once ``max_subscriptions`` of them had piled
up, a confirmed subscribe silently lost both."""

from __future__ import annotations

import json

import pytest

from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.events import Event, HistoryRequest, PresenceRequest
from cableway.protocol.limits import Limits

from .helpers import POLICY


def delegating() -> CableConnection:
    settings = SessionSettings(
        policy=POLICY,
        delegate=True,
        history=True,
        presence=True,
        limits=Limits(max_subscriptions=3),
    )
    conn = CableConnection(sid="sid-1", settings=settings, now=0.0)
    conn.accept_delegated('{"user":"alice"}')
    conn.events()
    return conn


def room(name: str) -> str:
    return json.dumps({"channel": "RoomChannel", "room": name})


def subscribe_carrying(conn: CableConnection, identifier: str) -> None:
    command = {
        "command": "subscribe",
        "identifier": identifier,
        "history": {"since": 1},
        "presence": {"id": "alice", "info": {"name": "Alice"}},
    }
    conn.receive_message(json.dumps(command), now=1.0)


def confirm(conn: CableConnection, identifier: str) -> list[Event]:
    """The application confirms, naming ``chat`` as the channel's stream and presence
    stream (what ``RpcSession.apply_command`` tells the core), then the driver goes on."""
    conn.delegated_stream(identifier, "chat", added=True)
    conn.delegated_channel(identifier, presence="chat", streams=("chat",))
    conn.transmit(json.dumps({"identifier": identifier, "type": "confirm_subscription"}))
    conn.delegated_confirmed(identifier)
    conn.delegated_answered()
    return conn.events()


@pytest.mark.parametrize("answer", ["rejected", "no answer"])
def test_a_confirmed_subscribe_keeps_its_history_and_presence_after_unconfirmed_ones(
    answer: str,
) -> None:
    conn = delegating()
    for name in ("a", "b", "c"):  # as many as max_subscriptions, none confirmed
        subscribe_carrying(conn, room(name))
        conn.events()
        if answer == "rejected":
            conn.transmit(json.dumps({"identifier": room(name), "type": "reject_subscription"}))
        conn.delegated_answered()
        conn.events()
    subscribe_carrying(conn, room("d"))
    conn.events()
    events = confirm(conn, room("d"))
    assert any(isinstance(e, HistoryRequest) and e.identifier == room("d") for e in events)
    assert any(
        isinstance(e, PresenceRequest) and e.kind == "join" and e.identifier == room("d")
        for e in events
    )
    assert room("d") in conn.presence
