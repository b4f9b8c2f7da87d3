"""Hypothesis stateful tests of the session machine (``CableConnection``) with a ``Hub``.

Rules are what a client and the server can do: subscribe / unsubscribe (to valid,
badly signed, unknown and garbage identifiers), ``message`` and ``history`` commands
(history is refused: no broker here), client pings, garbage messages, broadcasts
fanned out through the hub exactly like ``Server.publish``, timer ticks, and a server
disconnect. The invariants are the protocol's promises:

* exactly one ``confirm_subscription`` or ``reject_subscription`` for the first
  subscribe of an identifier, and none for a duplicate;
* no duplicate subscription: the hub holds each (stream, identifier) once and mirrors
  ``conn.subscriptions``;
* nothing delivered through an identifier after its unsubscribe (or the disconnect);
* nothing at all emitted after the disconnect;
* pings on schedule: when the driver wakes at ``next_deadline()`` (plus up to
  ``EPSILON`` of scheduling delay) there is exactly one ping, consecutive on-time
  pings are between ``interval - EPSILON`` and ``interval + EPSILON`` apart, and a late
  wake-up never produces a burst of pings; ``next_deadline()`` is always in the future.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cableway.auth.signed_streams import sign_stream_name
from cableway.protocol.broadcast import EncodedBroadcast, Publication
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.events import (
    CloseConnection,
    CommandIgnored,
    Event,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from cableway.protocol.hub import Hub
from cableway.protocol.limits import Limits

TURBO_KEY = "turbo-key-for-stateful-tests"
STREAMS_KEY = "streams-key-for-stateful-tests"
INTERVAL = 3.0
EPSILON = 0.05
MAX_SUBSCRIPTIONS = 4
POLICY = StreamPolicy(
    streams_secret=STREAMS_KEY,
    turbo_streams=True,
    turbo_secret=TURBO_KEY,
    public_streams=True,
)
STREAMS = ["chat/1", "chat/2", "room", "ü/✓"]


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# (identifier, the stream it must read or None when it must be rejected); the oracle is
# independent of the code under test
_valid = st.sampled_from(STREAMS).flatmap(
    lambda stream: st.sampled_from(
        [
            (
                _compact(
                    {
                        "channel": "Turbo::StreamsChannel",
                        "signed_stream_name": sign_stream_name(stream, TURBO_KEY),
                    }
                ),
                stream,
            ),
            (
                _compact(
                    {
                        "channel": "$pubsub",
                        "signed_stream_name": sign_stream_name(stream, STREAMS_KEY),
                    }
                ),
                stream,
            ),
            (_compact({"channel": "$pubsub", "stream_name": stream}), stream),
            # same stream, another identifier (key order): a separate subscription
            (json.dumps({"stream_name": stream, "channel": "$pubsub"}), stream),
        ]
    )
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_rejected = st.one_of(
    st.sampled_from(STREAMS).map(
        lambda stream: _compact(
            {
                "channel": "Turbo::StreamsChannel",
                "signed_stream_name": sign_stream_name(stream, "not-the-key"),
            }
        )
    ),
    st.just(_compact({"channel": "ChatChannel", "room": 1})),
    st.just(_compact({"channel": "$pubsub"})),
    _json.filter(lambda v: not isinstance(v, dict) or "channel" not in v).map(_compact),
    st.text(max_size=20).filter(lambda t: not t.startswith("{")),
).map(lambda identifier: (identifier, None))
IDENTIFIERS = st.one_of(_valid, _valid, _rejected)

GARBAGE = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    _json.filter(lambda v: not isinstance(v, dict)).map(_compact),
    st.dictionaries(st.sampled_from(["identifier", "data", "cmd"]), _json, max_size=3).map(
        _compact
    ),
    st.builds(
        lambda value: _compact({"command": value}),
        _json.filter(lambda v: not isinstance(v, str)),
    ),
    st.just('{"command":"subscribe"}'),  # no identifier
    st.just('{"command":"dance","identifier":"x"}'),
    st.just("[" * 5000),
)


def _sent(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.text) for e in events if isinstance(e, SendMessage)]


class SessionMachine(RuleBasedStateMachine):
    conn: CableConnection

    @initialize(jitter=st.floats(min_value=0.0, max_value=0.99))
    def open_session(self, jitter: float) -> None:
        self.now = 0.0
        self.conn = CableConnection(
            sid="sid-stateful",
            settings=SessionSettings(
                ping_interval=INTERVAL,
                limits=Limits(max_subscriptions=MAX_SUBSCRIPTIONS, commands_rate=0.0),
                policy=POLICY,
            ),
            now=0.0,
            ping_jitter=jitter,
        )
        self.conn.accept('{"user":1}')
        self.hub: Hub[str] = Hub()
        self.model: dict[str, str] = {}  # identifier -> stream, from our oracle
        self.closed = False
        self.last_ping: float | None = None
        self.on_time = True  # every ping so far came from an on-time wake-up
        assert _sent(self.drain()) == [{"type": "welcome", "sid": "sid-stateful"}]

    # -- helpers --------------------------------------------------------------------

    def drain(self) -> list[Event]:
        events = self.conn.events()
        if self.closed:
            assert events == [], f"events after the disconnect: {events}"
        for event in events:
            if isinstance(event, StreamAdded):
                self.hub.add(event.stream, event.identifier, self.conn.sid)
            elif isinstance(event, StreamRemoved):
                self.hub.remove(event.stream, event.identifier, self.conn.sid)
            elif isinstance(event, CloseConnection):
                assert event is events[-1], "events after CloseConnection"
                self.closed = True
        return events

    def send(self, message: str | bytes) -> list[Event]:
        self.conn.receive_message(message, now=self.now)
        return self.drain()

    def command(self, **fields: object) -> list[Event]:
        return self.send(json.dumps(fields))

    # -- client rules ---------------------------------------------------------------

    @rule(pair=IDENTIFIERS)
    def subscribe(self, pair: tuple[str, str | None]) -> None:
        identifier, stream = pair
        duplicate = identifier in self.model
        events = self.command(command="subscribe", identifier=identifier)
        if self.closed and not events:
            return
        replies = [m for m in _sent(events) if m["type"].endswith("_subscription")]
        if duplicate:
            assert replies == [], "a duplicate subscribe was answered"
            assert not any(isinstance(e, StreamAdded) for e in events)
            return
        assert len(replies) == 1, f"expected one confirm/reject: {events}"
        assert replies[0]["identifier"] == identifier
        accepted = stream is not None and len(self.model) < MAX_SUBSCRIPTIONS
        if accepted:
            assert stream is not None
            assert replies[0]["type"] == "confirm_subscription"
            assert StreamAdded(identifier, stream) in events
            self.model[identifier] = stream
        else:
            assert replies[0]["type"] == "reject_subscription"
            assert not any(isinstance(e, StreamAdded) for e in events)

    @rule(pair=IDENTIFIERS)
    def unsubscribe(self, pair: tuple[str, str | None]) -> None:
        identifier, _ = pair
        events = self.command(command="unsubscribe", identifier=identifier)
        assert _sent(events) == [], "unsubscribe is never answered"
        if self.closed:
            return
        stream = self.model.pop(identifier, None)
        if stream is None:
            assert [type(e) for e in events] == [CommandIgnored]
        else:
            assert events == [StreamRemoved(identifier, stream)]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def unsubscribe_subscribed(self, data: st.DataObject) -> None:
        identifier = data.draw(st.sampled_from(sorted(self.model)))
        stream = self.model.pop(identifier)
        assert self.command(command="unsubscribe", identifier=identifier) == [
            StreamRemoved(identifier, stream)
        ]

    @rule(pair=IDENTIFIERS, since=st.integers(min_value=1, max_value=2_000_000_000))
    def history(self, pair: tuple[str, str | None], since: int) -> None:
        identifier, _ = pair
        events = self.command(command="history", identifier=identifier, history={"since": since})
        if self.closed:
            return
        if identifier in self.model:  # no broker: always refused
            assert _sent(events) == [{"type": "reject_history", "identifier": identifier}]
        else:
            assert _sent(events) == []

    @rule(pair=IDENTIFIERS, data=_json)
    def message(self, pair: tuple[str, str | None], data: object) -> None:
        identifier, _ = pair
        events = self.command(command="message", identifier=identifier, data=_compact(data))
        assert _sent(events) == [], "built-in channels take no actions"
        assert not any(isinstance(e, StreamAdded | StreamRemoved) for e in events)

    @rule()
    def client_ping(self) -> None:
        events = self.command(command="ping")
        assert _sent(events) == ([] if self.closed else [{"type": "pong"}])

    @rule(message=GARBAGE)
    def garbage(self, message: str | bytes) -> None:
        events = self.send(message)
        assert _sent(events) == [], f"garbage was answered: {events}"
        assert all(isinstance(e, CommandIgnored) for e in events), events

    # -- server rules ---------------------------------------------------------------

    @rule(stream=st.sampled_from([*STREAMS, "nobody"]), data=st.text(max_size=30))
    def broadcast(self, stream: str, data: str) -> None:
        """Fan out like ``Server.publish``; check who gets it."""
        encoded = EncodedBroadcast(Publication(stream, data))
        delivered: list[str] = []
        for identifier, subscribers in self.hub.recipients(stream).items():
            assert subscribers == {self.conn.sid}, "a duplicate subscription in the hub"
            message = json.loads(encoded.for_identifier(identifier))
            assert message["identifier"] == identifier
            delivered.append(identifier)
        expected = sorted(i for i, s in self.model.items() if s == stream)
        assert sorted(delivered) == expected, (delivered, expected)

    @rule()
    def disconnect(self) -> None:
        was_closed = self.closed
        self.conn.disconnect("remote", reconnect=False)
        events = self.drain()
        if was_closed:
            return
        assert _sent(events)[0] == {"type": "disconnect", "reason": "remote", "reconnect": False}
        removed = {(e.identifier, e.stream) for e in events if isinstance(e, StreamRemoved)}
        assert removed == set(self.model.items())
        assert isinstance(events[-1], CloseConnection)
        self.model.clear()

    # -- time -----------------------------------------------------------------------

    def _tick(self, now: float) -> list[dict[str, Any]]:
        assert now >= self.now
        self.now = now
        self.conn.handle_timer(now, unix_time=1_700_000_000.0 + now)
        pings = [m for m in _sent(self.drain()) if m["type"] == "ping"]
        assert len(pings) <= 1, "a burst of pings"
        deadline = self.conn.next_deadline()
        assert deadline is None or deadline > now
        return pings

    @rule(delay=st.floats(min_value=0.0, max_value=EPSILON))
    def wake_at_deadline(self, delay: float) -> None:
        """The driver sleeps until ``next_deadline()`` and wakes a little late."""
        deadline = self.conn.next_deadline()
        if deadline is None:
            assert self.closed
            assert self._tick(self.now + INTERVAL) == []
            return
        pings = self._tick(max(self.now, deadline + delay))
        assert len(pings) == 1, "no ping at the ping deadline"
        if self.last_ping is not None and self.on_time:
            gap = self.now - self.last_ping
            assert INTERVAL - EPSILON - 1e-9 <= gap <= INTERVAL + EPSILON + 1e-9, gap
        if self.last_ping is None:
            first = self.now
            assert first <= 1.5 * INTERVAL + EPSILON + 1e-9, "first ping after 1.5 intervals"
        self.last_ping = self.now
        self.on_time = True

    @rule(fraction=st.floats(min_value=0.0, max_value=0.99))
    def wake_early(self, fraction: float) -> None:
        """A wake-up before the deadline (e.g. a message arrived): no ping."""
        deadline = self.conn.next_deadline()
        if deadline is None:
            return
        now = self.now + (deadline - self.now) * fraction
        if now < deadline:  # (not when rounding reached the deadline)
            assert self._tick(now) == []

    @rule(late=st.floats(min_value=EPSILON, max_value=5 * INTERVAL))
    def wake_late(self, late: float) -> None:
        """The process was stalled: one ping (no burst), then the schedule goes on."""
        deadline = self.conn.next_deadline()
        if deadline is None:
            return
        assert len(self._tick(deadline + late)) == 1
        self.last_ping = self.now
        self.on_time = False  # the next gap may be shorter: the schedule keeps its phase

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def subscriptions_match_the_oracle_and_the_hub(self) -> None:
        assert self.conn.subscriptions == self.model
        assert set(self.hub.streams()) == set(self.model.values())
        for stream in self.hub.streams():
            identifiers = set(self.hub.recipients(stream))
            assert identifiers == {i for i, s in self.model.items() if s == stream}

    @invariant()
    def closed_means_closed(self) -> None:
        if self.closed:
            assert self.conn.state is SessionState.CLOSED
            assert self.conn.next_deadline() is None
            assert not self.model
            assert len(self.hub) == 0
        else:
            assert self.conn.state is SessionState.OPEN


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
