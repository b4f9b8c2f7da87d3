# Invariant: commands, broadcasts and ticks keep the session's promises; only fatal errors escape.
"""Fuzz the whole session state machine (``CableConnection`` + a ``Hub``) over time.

The input is a small script, one operation per line (so seeds are readable and the
fuzzer recombines lines)::

    @<digits>          time passes: now += digits/10 s, then handle_timer(now) (an odd
                       number of tenths tries the drivers' fast path first:
                       take_plain_ping(now), and handle_timer only when it declines)
    +<K> <name>        subscribe with a built identifier (K below)
    -<K> <name>        unsubscribe the same identifier
    ?<K> <name> <cmd>  another command (history, message, whisper, join, leave,
                       presence, ...) for that identifier
    ><stream> <data>   broadcast <data> to <stream> through the hub (like Server.publish)
    !                  the server disconnects the session
    =<bytes>           the rest of the line as a binary message
    anything else      the line as a text message

    K: T = Turbo signed with the right key, t = signed with a wrong key,
       P = $pubsub public stream_name, S = $pubsub signed, X = <name> is the identifier

The first byte of the input picks the settings (extended protocol, pong timeout,
history/presence, rate limits), so every feature is reachable.

Invariants, checked after every operation:

* ``receive_message`` raises nothing but a *fatal* ``RemoteProtocolError``, after which
  the session is closed with ``CloseConnection`` as its last event;
* the state only moves NEW -> OPEN -> CLOSED; after ``CloseConnection`` no event at all;
* ``StreamAdded``/``StreamRemoved`` replayed into a hub mirror ``conn.subscriptions``
  exactly (no duplicate add, no removal of an unknown subscription); closed => empty;
* a subscribe yields at most one confirm/reject for its identifier, and exactly one
  when the identifier was new, the session open and the command not rate-limited;
* a broadcast reaches the session only through identifiers it is subscribed to;
* every ``SendMessage`` is one JSON object with a UTF-8 form; at most one ping per
  ``handle_timer``;
* after ``handle_timer(now)``, ``next_deadline()`` is ``None`` or later than ``now``;
* history requests for identifiers of odd length are answered only at the next tick of
  an even number of tenths (a slow broker: the live messages are held meanwhile, and
  the hold deadline may pass first);
* ``plain_pings_at()`` promises plain pings only for an open session and names its
  next deadline, and nothing else is due however far the driver takes pings without a
  call (no hold or pong deadline behind them: the next ping given back much later is
  then the next deadline, before the schedule is put back); a tick whose tenths are
  3 mod 4 takes that ping as a caching driver does (``next_ping_after``,
  ``resume_pings``) instead of calling the session;
* ``take_plain_ping(now)`` either declines (``None``, nothing changed) or queues no event
  and returns ``next_deadline()``, later than ``now``; sessions whose settings byte is a
  multiple of 3 are aligned to a 0.1 s ping grid first (``align_pings``);
* a broadcast that reaches the session tries the trio fan-out's early ping
  (``take_plain_ping(now, 1.0)``): the same promises, and only a deadline due within
  that second is taken.

Run: ``python fuzz/fuzz_session.py -runs=100000 -max_len=2048 fuzz/corpus/session/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import json

from cableway.auth.signed_streams import sign_stream_name
from cableway.protocol.broadcast import EncodedBroadcast, Publication
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.errors import RemoteProtocolError
from cableway.protocol.events import (
    CloseConnection,
    CommandIgnored,
    Event,
    HistoryRequest,
    PresenceRequest,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from cableway.protocol.hub import Hub
from cableway.protocol.keepalive import next_ping_after
from cableway.protocol.limits import Limits

TURBO_KEY = "fuzz-turbo-key"
STREAMS_KEY = "fuzz-streams-key"
POLICY = StreamPolicy(
    streams_secret=STREAMS_KEY,
    turbo_streams=True,
    turbo_secret=TURBO_KEY,
    public_streams=True,
    streams_whisper=True,
    streams_presence=True,
)
ORDER = {SessionState.NEW: 0, SessionState.OPEN: 1, SessionState.CLOSED: 2}
PING_INTERVAL = 3.0


def settings_for(flags: int) -> SessionSettings:
    return SessionSettings(
        ping_interval=PING_INTERVAL if flags & 1 == 0 else 0.0,
        limits=Limits(
            max_message_size=1024,
            max_identifier_size=256,
            max_subscriptions=3,
            commands_rate=2.0 if flags & 2 else 0.0,
            commands_burst=5,
        ),
        policy=POLICY,
        extended=bool(flags & 4),
        pong_timeout=2.0 if flags & 8 else 0.0,
        history=bool(flags & 16),
        presence=bool(flags & 32),
        native_pings=bool(flags & 64),
    )


def identifier(kind: str, name: str) -> str:
    if kind == "T":
        params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": _sign(name, TURBO_KEY)}
    elif kind == "t":
        params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": _sign(name, "wrong")}
    elif kind == "P":
        params = {"channel": "$pubsub", "stream_name": name}
    elif kind == "S":
        params = {"channel": "$pubsub", "signed_stream_name": _sign(name, STREAMS_KEY)}
    else:
        return name
    return json.dumps(params, separators=(",", ":"))


def _sign(name: str, key: str) -> str:
    try:
        return sign_stream_name(name, key)
    except ValueError:  # lone surrogates: no UTF-8 form
        return name


class Harness:
    def __init__(self, flags: int) -> None:
        self.now = 0.0
        self.conn = CableConnection(
            sid="fuzz", settings=settings_for(flags), now=0.0, ping_jitter=(flags >> 7) / 2.0
        )
        if flags % 3 == 0:
            self.conn.align_pings(0.1)
        self.hub: Hub[str] = Hub()
        self.model: dict[str, str] = {}
        self.closed = False
        self.state = self.conn.state
        #: history requests not answered yet (their live messages are held meanwhile)
        self.history_due: list[str] = []

    # -- checks ---------------------------------------------------------------------

    def drain(self) -> list[Event]:
        events = self.conn.events()
        if self.closed:
            assert events == [], f"events after CloseConnection: {events}"
        for index, event in enumerate(events):
            if isinstance(event, StreamAdded):
                assert event.identifier not in self.model, f"duplicate {event}"
                self.model[event.identifier] = event.stream
                self.hub.add(event.stream, event.identifier, "fuzz")
            elif isinstance(event, StreamRemoved):
                assert self.model.pop(event.identifier, None) == event.stream, f"unknown {event}"
                self.hub.remove(event.stream, event.identifier, "fuzz")
            elif isinstance(event, SendMessage):
                assert isinstance(json.loads(event.text), dict), event.text
                event.text.encode("utf-8")  # the transport sends it as UTF-8
            elif isinstance(event, CloseConnection):
                assert index == len(events) - 1, f"events after close: {events[index:]}"
                self.closed = True
            elif isinstance(event, HistoryRequest):
                if len(event.identifier) % 2:  # a slow broker: answered at a later tick
                    self.history_due.append(event.identifier)
                    continue
                self.conn.history_result(event.identifier, [])
                events.extend(self.conn.events())
            elif isinstance(event, PresenceRequest) and event.kind == "info":
                self.conn.presence_result(event.identifier, [("id", {"name": "x"})])
                events.extend(self.conn.events())
        assert ORDER[self.conn.state] >= ORDER[self.state], "state went backwards"
        self.state = self.conn.state
        assert self.model == self.conn.subscriptions, (self.model, self.conn.subscriptions)
        assert set(self.hub.streams()) == set(self.model.values())
        if self.conn.state is SessionState.CLOSED:
            assert not self.model, "a closed session still reads streams"
        return events

    # -- operations -------------------------------------------------------------------

    def message(self, message: str | bytes) -> list[Event]:
        error: RemoteProtocolError | None = None
        try:
            self.conn.receive_message(message, now=self.now)
        except RemoteProtocolError as exc:
            error = exc
        if error is not None:
            assert error.fatal, "a recoverable error escaped the session"
            assert self.conn.state is SessionState.CLOSED
            events = self.drain()
            assert isinstance(events[-1], CloseConnection)
            return events
        return self.drain()

    def subscribe(self, ident: str) -> None:
        was_open = self.conn.state is SessionState.OPEN
        known = ident in self.model
        command = json.dumps({"command": "subscribe", "identifier": ident})
        fits = len(command.encode("utf-8", "surrogatepass")) <= 1024 and len(ident) <= 256
        events = self.message(command)
        replies = [
            message
            for message in (json.loads(e.text) for e in events if isinstance(e, SendMessage))
            if message.get("type") in ("confirm_subscription", "reject_subscription")
        ]
        assert len(replies) <= 1, replies
        for reply in replies:
            assert reply["identifier"] == ident, reply
        limited = any(isinstance(e, CommandIgnored) and e.detail == "rate limited" for e in events)
        if was_open and not known and not limited and fits:
            assert len(replies) == 1, f"no confirm/reject for a new subscribe: {events}"
        if known:
            assert replies == [], "a duplicate subscribe was answered"

    def broadcast(self, stream: str, data: str) -> None:
        recipients = self.hub.recipients(stream)
        encoded = EncodedBroadcast(Publication(stream, data))
        for ident in recipients:
            assert self.model.get(ident) == stream, "delivered through a dead subscription"
            json.loads(encoded.for_identifier(ident))
        if recipients:  # the trio fan-out's early ping: one due soon rides the write
            before = self.conn.next_deadline()
            after = self.conn.take_plain_ping(self.now, 1.0)
            if after is None:
                assert self.conn.next_deadline() == before, (
                    "a declined early ping changed deadlines"
                )
                return
            assert self.conn.state is SessionState.OPEN, "a closed session pinged"
            assert self.drain() == [], "the early ping queued events"
            assert before is not None, "an early ping without a deadline"
            assert before <= self.now + 1.0, (before, self.now)
            assert after == self.conn.next_deadline(), (after, self.conn.next_deadline())
            assert after > self.now, (after, self.now)

    def tick(self, tenths: int) -> None:
        self.now += tenths / 10.0
        if tenths % 2 == 0 and self.history_due:  # the slow broker answers (maybe late)
            for ident in self.history_due:
                self.conn.history_result(ident, [])
            self.history_due = []
            self.drain()
        plain = self.conn.plain_pings_at()  # what a driver caching plain pings is promised
        if plain is not None:
            assert self.conn.state is SessionState.OPEN, "plain pings for a closed session"
            assert plain == self.conn.next_deadline(), (plain, self.conn.next_deadline())
            # the promise holds however long the driver keeps taking pings without a
            # call: with the next ping given back far later, nothing else is due before
            # it (no hold deadline, no pong deadline), then the schedule is put back
            far = plain + 1000 * self.conn.settings.ping_interval
            self.conn.resume_pings(far)
            assert self.conn.next_deadline() == far, "plain pings promised before a deadline"
            self.conn.resume_pings(plain)
            if tenths % 4 == 3 and plain <= self.now:  # the driver takes it itself
                after = next_ping_after(plain, self.conn.settings.ping_interval, self.now)
                self.conn.resume_pings(after)
                assert self.conn.next_deadline() == after, "the cached ping left a deadline"
                return
        if tenths % 2:
            before = self.conn.next_deadline()
            after = self.conn.take_plain_ping(self.now)
            if after is not None:
                assert self.conn.state is SessionState.OPEN, "a closed session pinged"
                assert self.drain() == [], "the fast path queued events"
                assert after == self.conn.next_deadline(), (after, self.conn.next_deadline())
                assert after > self.now, (after, self.now)
                return
            assert self.conn.next_deadline() == before, "a declined fast path changed deadlines"
        self.conn.handle_timer(self.now, unix_time=1_700_000_000.0 + self.now)
        events = self.drain()
        pings = [
            e for e in events if isinstance(e, SendMessage) and json.loads(e.text)["type"] == "ping"
        ]
        assert len(pings) <= 1, "several pings for one tick"
        deadline = self.conn.next_deadline()
        assert deadline is None or deadline > self.now, (deadline, self.now)

    def run_line(self, line: bytes) -> None:
        head, rest = line[:1], line[1:]
        text = rest.decode("utf-8", "surrogateescape")
        if head == b"@":
            digits = rest[:4]
            self.tick(int(digits) if digits.isdigit() else 1)
        elif head in (b"+", b"-", b"?") and len(rest) >= 2 and rest[1:2] == b" ":
            name, _, tail = text[2:].partition(" ") if head == b"?" else (text[2:], "", "")
            ident = identifier(text[0], name)
            if head == b"+":
                self.subscribe(ident)
            elif head == b"-":
                self.message(json.dumps({"command": "unsubscribe", "identifier": ident}))
            else:
                command = {
                    "command": tail or "message",
                    "identifier": ident,
                    "data": json.dumps({"action": "speak", "text": tail}),
                    "history": {"since": 1},
                    "presence": {"id": tail or "p", "info": {"name": tail}},
                }
                self.message(json.dumps(command))
        elif head == b">":
            stream, _, data = text.partition(" ")
            self.broadcast(stream, data)
        elif line == b"!":
            self.conn.disconnect("remote", reconnect=True)
            self.drain()
        elif head == b"=":
            self.message(rest)
        else:
            self.message(line.decode("utf-8", "surrogateescape"))


def test_one_input(data: bytes) -> None:
    flags = data[0] if data else 0
    harness = Harness(flags)
    if flags & 0x80 and len(data) > 1 and data[1] == ord("R"):
        harness.conn.reject("unauthorized")
    else:
        harness.conn.accept('{"user":"fuzz"}')
    harness.drain()
    for line in data[1:].split(b"\n")[:200]:
        harness.run_line(line)
    harness.conn.disconnect("server_restart", reconnect=True)
    harness.drain()
    assert harness.conn.state is SessionState.CLOSED
    assert not harness.model


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
