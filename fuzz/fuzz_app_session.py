# Invariant: application (RPC) channel commands are answered in arrival order, one call at a time.
"""Fuzz the session state machine with application channels (``delegate=True``).

``CableConnection`` hands the commands of channels it does not serve itself to the
application (:class:`~cableway.protocol.events.Delegate`); a fake application answers
them here the way the drivers do (``RpcSession.apply_command``, then
``delegated_answered()``, as ``answer_delegated`` in src/node/rpc.py), at a step the
script picks. The input is a script, one operation per line::

    @<digits>          time passes: now += digits/10 s, then handle_timer(now)
    +<K> <name>        subscribe (K below)
    *<K> <name>        subscribe carrying history (since) and presence
    -<K> <name>        unsubscribe
    ?<K> <name> <cmd>  another command: message, whisper, join, leave, presence,
                       history (since), hist<digit> (history from offset <digit> of s1..s3)
    A<opts>            the application answers the oldest delegated command; opts:
                         c confirm (SUCCESS)   r reject (FAILURE)   e ERROR status
                         f the call failed (no answer)
                         <digit> stream s<digit>     ~<digit> stopped stream s<digit>
                         x stop_streams       w<digit>/W  istate $w = s<digit> / ""
                         p<digit>/P istate $p = s<digit> / ""
                         j presence join      l presence leave
                         t a transmission     d disconnect   C a cstate change
    ><stream> <data>   broadcast to <stream> (offsets 1, 2, ... per stream)
    H                  answer the oldest history request (else answered at once
                       unless the settings byte has 0x40)
    !                  the server disconnects the session
    anything else      the line as a text message

    K: A = an application channel {"channel":"RoomChannel","room":<name>},
       P = $pubsub stream_name=<name> (built in), X = <name> is the identifier

The first byte picks the settings (extended, history, presence, rate limit, whether
history answers wait for ``H``).

Invariants, checked after every operation:

* ``receive_message`` raises nothing but a fatal ``RemoteProtocolError``; no other
  call raises; after ``CloseConnection`` no event at all;
* at most one delegated command waits for the application at any time;
* while one waits, a client message yields nothing but ``CommandIgnored`` (or the
  fatal close): no reply, no stream, no call before the waiting one was answered;
* the commands waiting behind it stay within their bound;
* ``StreamAdded``/``StreamRemoved`` mirror the built-in subscriptions plus the
  application's streams exactly (no duplicate add, no unknown removal);
* an identifier gets no more confirm/reject replies than subscribes were sent for it;
* a subscribe carrying history and presence (``*``) that the application confirms gets
  its history answered (a request, ``confirm_history`` or ``reject_history``) and, when
  presence is on and the channel names a ``$p`` stream, is present;
* every ``SendMessage`` is a JSON object with a UTF-8 form;
* ``ReleaseHeld`` only for a held identifier, once per hold; the messages a history
  replays plus those a release delivers hold no (stream, offset) twice.

Run: ``python fuzz/fuzz_app_session.py -runs=100000 -max_len=2048 fuzz/corpus/app_session/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Mapping

from cableway.node.rpc import RpcSession
from cableway.protocol.broker import HistoryEntry
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.errors import RemoteProtocolError
from cableway.protocol.events import (
    CloseConnection,
    CommandIgnored,
    Delegate,
    Event,
    HistoryRequest,
    PresenceRequest,
    ReleaseHeld,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from cableway.protocol.limits import Limits
from cableway.rpc.messages import (
    PRESENCE_STATE,
    WHISPER_STATE,
    CommandResponse,
    EnvResponse,
    PresenceResponse,
    Status,
)

POLICY = StreamPolicy(public_streams=True, streams_whisper=True, streams_presence=True)
MAX_SUBSCRIPTIONS = 3
BURST = 5


def settings_for(flags: int) -> SessionSettings:
    return SessionSettings(
        ping_interval=3.0 if flags & 1 == 0 else 0.0,
        limits=Limits(
            max_message_size=1024,
            max_identifier_size=256,
            max_subscriptions=MAX_SUBSCRIPTIONS,
            commands_rate=2.0 if flags & 2 else 0.0,
            commands_burst=BURST,
        ),
        policy=POLICY,
        extended=bool(flags & 4),
        history=bool(flags & 16),
        presence=bool(flags & 32),
        delegate=True,
    )


def identifier(kind: str, name: str) -> str:
    if kind == "A":
        return json.dumps({"channel": "RoomChannel", "room": name}, separators=(",", ":"))
    if kind == "P":
        return json.dumps({"channel": "$pubsub", "stream_name": name}, separators=(",", ":"))
    return name


def answer_for(delegate: Delegate, opts: str) -> CommandResponse | None:
    """The fake application's answer, as an AnyCable RPC server would send it."""
    if "f" in opts:
        return None
    status = Status.SUCCESS
    if "r" in opts:
        status = Status.FAILURE
    if "e" in opts:
        status = Status.ERROR
    answer = CommandResponse(status=status, env=EnvResponse())
    ident = delegate.identifier
    if delegate.command == "subscribe" and status is not Status.ERROR:
        kind = "confirm_subscription" if status is Status.SUCCESS else "reject_subscription"
        answer.transmissions.append(json.dumps({"identifier": ident, "type": kind}))
    i = 0
    while i < len(opts):
        op, arg = opts[i], opts[i + 1 : i + 2]
        stream = f"s{arg}" if arg.isdigit() else ""
        if op.isdigit():
            answer.streams.append(f"s{op}")
        elif op == "~" and stream:
            answer.stopped_streams.append(stream)
            i += 1
        elif op == "x":
            answer.stop_streams = True
        elif op in "wp" and stream:
            answer.env.istate[WHISPER_STATE if op == "w" else PRESENCE_STATE] = stream
            i += 1
        elif op in "WP":
            answer.env.istate[WHISPER_STATE if op == "W" else PRESENCE_STATE] = ""
        elif op == "j":
            answer.presence = PresenceResponse("join", "app-id", '{"name":"app"}')
        elif op == "l":
            answer.presence = PresenceResponse("leave", "app-id")
        elif op == "t":
            message = {"identifier": ident, "message": {"text": delegate.data}}
            answer.transmissions.append(json.dumps(message))
        elif op == "d":
            answer.disconnect = True
        elif op == "C":
            answer.env.cstate["k"] = str(i)
        i += 1
    return answer


class Harness:
    def __init__(self, flags: int) -> None:
        self.now = 0.0
        self.defer_history = bool(flags & 0x40)
        self.conn = CableConnection(sid="fuzz", settings=settings_for(flags), now=0.0)
        self.rpc = RpcSession(sid="fuzz", url="ws://fuzz/cable", headers={})
        self.model: set[tuple[str, str]] = set()
        self.closed = False
        self.pending: deque[Delegate] = deque()  # delegated commands, oldest first
        #: per identifier, whether each subscribe accepted (not yet delegated) carried
        #: history and presence; the flag moves to ``carried`` once it is delegated
        self.carrying: dict[str, deque[bool]] = {}
        self.carried: deque[bool] = deque()
        self.histories: deque[HistoryRequest] = deque()
        self.subscribes: Counter[str] = Counter()  # subscribe commands sent per identifier
        self.replies: Counter[str] = Counter()  # confirm/reject replies per identifier
        self.log: dict[str, int] = {}  # stream -> last offset published
        self.held_model: set[str] = set()
        self.buffered: dict[str, list[tuple[str, int]]] = {}  # held live messages
        self.delivered: dict[str, set[tuple[str, int]]] = {}  # since the hold began

    # -- checks ---------------------------------------------------------------------

    def deliver(self, ident: str, stream: str, offset: int) -> None:
        seen = self.delivered.setdefault(ident, set())
        assert (stream, offset) not in seen, f"{ident} got {stream}#{offset} twice"
        seen.add((stream, offset))

    def drain(self) -> list[Event]:
        events = self.conn.events()
        if self.closed:
            assert events == [], f"events after CloseConnection: {events}"
        index = 0
        while index < len(events):
            event = events[index]
            index += 1
            if isinstance(event, StreamAdded):
                pair = (event.identifier, event.stream)
                assert pair not in self.model, f"duplicate {event}"
                self.model.add(pair)
            elif isinstance(event, StreamRemoved):
                pair = (event.identifier, event.stream)
                assert pair in self.model, f"unknown {event}"
                self.model.discard(pair)
            elif isinstance(event, SendMessage):
                message = json.loads(event.text)
                assert isinstance(message, dict), event.text
                event.text.encode("utf-8")
                if message.get("type") in ("confirm_subscription", "reject_subscription"):
                    ident = message.get("identifier")
                    assert isinstance(ident, str), message
                    self.replies[ident] += 1
                    assert self.replies[ident] <= self.subscribes[ident], (
                        f"more confirm/reject than subscribes for {ident}"
                    )
            elif isinstance(event, CloseConnection):
                assert index == len(events), f"events after close: {events[index:]}"
                self.closed = True
            elif isinstance(event, Delegate):
                self.pending.append(event)
                if event.command == "subscribe":
                    self.carried.append(self.carrying[event.identifier].popleft())
                assert len(self.pending) == 1, f"two calls at once: {self.pending}"
            elif isinstance(event, HistoryRequest):
                self.held_model.add(event.identifier)
                self.delivered[event.identifier] = set()  # a new hold, a new replay
                self.histories.append(event)
                if not self.defer_history:
                    self.answer_history()
                    events.extend(self.conn.events())
            elif isinstance(event, ReleaseHeld):
                self.release(event)
            elif isinstance(event, PresenceRequest) and event.kind == "info":
                self.conn.presence_result(event.identifier, [("id", {"name": "x"})])
                events.extend(self.conn.events())
        if self.conn.state is SessionState.CLOSED:
            assert self.closed or not events, "closed without CloseConnection"
        held = set(self.conn.held)
        assert held <= self.held_model, f"held without a history request: {held}"
        for ident in self.held_model - held:  # unheld without a release: it is gone
            assert ident not in self.conn.subscriptions, f"{ident} is no longer held"
            assert ident not in self.rpc.channels or self.closed, f"{ident} is no longer held"
            self.buffered.pop(ident, None)
        self.held_model = held
        mirror = set(self.conn.subscriptions.items()) | set(self.rpc.streams())
        assert self.model == mirror, (self.model, mirror)
        waiting = self.conn._apps._waiting  # its bound is the invariant
        assert waiting is None or len(waiting) <= max(BURST, MAX_SUBSCRIPTIONS)
        return events

    def release(self, event: ReleaseHeld) -> None:
        ident = event.identifier
        assert ident in self.held_model, f"released twice or never held: {event}"
        self.held_model.discard(ident)
        after = event.after
        for stream, offset in self.buffered.pop(ident, []):
            last = after.get(stream) if isinstance(after, Mapping) else after
            if last is None or offset > last:
                self.deliver(ident, stream, offset)

    def answer_history(self) -> None:
        if not self.histories:
            return
        request = self.histories.popleft()
        entries = []
        for query in request.queries:
            first = (query.offset or 0) + 1
            for offset in range(first, self.log.get(query.stream, 0) + 1):
                entries.append(HistoryEntry(query.stream, offset, f"m{offset}", 1.0))
        before = set(self.conn.held)
        self.conn.history_result(request.identifier, entries, epoch="e")
        if request.identifier in before and self.conn.state is SessionState.OPEN:
            for entry in entries:
                self.deliver(request.identifier, entry.stream, entry.offset)

    # -- operations -------------------------------------------------------------------

    def message(self, text: str, subscribe: tuple[str, bool] | None = None) -> list[Event]:
        waiting = bool(self.pending)
        if subscribe is not None:  # taken back below if the command is dropped
            self.carrying.setdefault(subscribe[0], deque()).append(subscribe[1])
        error: RemoteProtocolError | None = None
        try:
            self.conn.receive_message(text, now=self.now)
        except RemoteProtocolError as exc:
            error = exc
        events = self.drain()
        if subscribe is not None and any(isinstance(e, CommandIgnored) for e in events):
            self.carrying[subscribe[0]].pop()  # dropped (rate, size, queue bound)
        if error is not None:
            assert error.fatal, "a recoverable error escaped the session"
            assert isinstance(events[-1], CloseConnection)
        elif waiting:
            assert all(isinstance(e, CommandIgnored) for e in events), (
                f"a command was answered before the delegated one: {events}"
            )
        return events

    def answer(self, opts: str) -> None:
        if not self.pending:
            return
        delegate = self.pending.popleft()
        carried = delegate.command == "subscribe" and self.carried.popleft()
        ident = delegate.identifier
        request = self.rpc.command_request(delegate.command, ident, delegate.data)
        answer = answer_for(delegate, opts)
        if request is not None:
            self.rpc.apply_command(self.conn, request, answer)
        events = self.conn.events()
        self.conn._events[:0] = events  # drained below, with the checks
        confirmed = request is not None and answer is not None
        confirmed = confirmed and answer.status is Status.SUCCESS and not answer.disconnect
        if carried and confirmed and self.conn.state is SessionState.OPEN:
            # the client's subscribe carried history and presence: served on confirm
            history = [
                e
                for e in events
                if (isinstance(e, HistoryRequest) and e.identifier == ident)
                or (isinstance(e, SendMessage) and '_history","identifier"' in e.text)
            ]
            assert history, f"the history a confirmed subscribe carried was lost: {events}"
            features = self.rpc.istate.get(ident, {})
            if self.conn.settings.presence and features.get(PRESENCE_STATE):
                assert ident in self.conn.presence, f"the subscribe's presence was lost: {events}"
        self.conn.delegated_answered()
        self.drain()

    def broadcast(self, stream: str) -> None:
        offset = self.log[stream] = self.log.get(stream, 0) + 1
        for ident, read in sorted(self.model):
            if read != stream:
                continue
            if ident in self.conn.held:
                self.buffered.setdefault(ident, []).append((stream, offset))
            elif self.conn.state is SessionState.OPEN:
                self.delivered.setdefault(ident, set()).add((stream, offset))

    def run_line(self, line: bytes) -> None:
        head, rest = line[:1], line[1:]
        text = rest.decode("utf-8", "surrogateescape")
        if head == b"@":
            digits = rest[:4]
            self.now += (int(digits) if digits.isdigit() else 1) / 10.0
            self.conn.handle_timer(self.now, unix_time=1_700_000_000.0 + self.now)
            self.drain()
        elif head in (b"+", b"*", b"-", b"?") and len(rest) >= 2 and rest[1:2] == b" ":
            name, _, tail = text[2:].partition(" ") if head == b"?" else (text[2:], "", "")
            ident = identifier(text[0], name)
            command: dict[str, object] = {"identifier": ident}
            if head in (b"+", b"*"):
                command["command"] = "subscribe"
                if head == b"*":
                    command["history"] = {"since": 1}
                    command["presence"] = {"id": "p", "info": {"name": name}}
                self.subscribes[ident] += 1
                self.message(json.dumps(command), (ident, head == b"*"))
                return
            elif head == b"-":
                command["command"] = "unsubscribe"
            elif tail.startswith("hist") and tail[4:5].isdigit():
                offset = int(tail[4])
                command["command"] = "history"
                positions = {f"s{n}": {"epoch": "e", "offset": offset} for n in (1, 2, 3)}
                command["history"] = {"streams": positions}
            else:
                command["command"] = tail or "message"
                command["data"] = json.dumps({"action": "speak", "text": tail})
                command["history"] = {"since": 1}
                command["presence"] = {"id": tail or "p", "info": {"name": tail}}
            self.message(json.dumps(command))
        elif head == b"A":
            self.answer(text)
        elif head == b">":
            stream, _, _data = text.partition(" ")
            self.broadcast(stream)
        elif line == b"H":
            self.answer_history()
            self.drain()
        elif line == b"!":
            self.conn.disconnect("remote", reconnect=True)
            self.drain()
        else:
            self.message(line.decode("utf-8", "surrogateescape"))

    def finish(self) -> None:
        while self.pending and not self.closed:
            self.answer("c")
        self.conn.disconnect("server_restart", reconnect=True)
        self.drain()
        assert self.conn.state is SessionState.CLOSED
        self.model -= set(self.rpc.streams())  # the driver unregisters them (release_delegated)
        assert not self.model, self.model
        assert not self.conn.held


def test_one_input(data: bytes) -> None:
    flags = data[0] if data else 0
    harness = Harness(flags)
    harness.conn.accept('{"user":"fuzz"}')
    harness.drain()
    for line in data[1:].split(b"\n")[:200]:
        harness.run_line(line)
    harness.finish()


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
