"""The per-session Action Cable state machine.

Theory of operation
-------------------

A :class:`CableConnection` is one client session (WebSocket or SSE), with no I/O and
no clock. The driver:

1. creates it right after the transport handshake, then calls :meth:`accept` with the
   connection identifiers, :meth:`restore` with a saved session snapshot, or
   :meth:`reject` with an AnyCable disconnect reason;
2. feeds every client message to :meth:`receive_message` together with ``now``;
3. sleeps until :meth:`next_deadline` and then calls :meth:`handle_timer`;
4. after *every* call drains :meth:`events` and carries them out in order: send
   messages, add/remove streams in the hub, publish whispers and presence events,
   answer history and presence requests (by calling :meth:`history_result` /
   :meth:`presence_result`), store session snapshots, close the transport.

States move one way only::

    NEW --accept()/restore()--> OPEN --disconnect()/fatal error/no pong--> CLOSED
    NEW --reject()--> CLOSED

Commands are processed strictly in arrival order, also around those an application
answers (RPC): while one waits for its answer, the client's later commands wait too
(bounded) and are processed once the driver says the answer was applied
(:meth:`delegated_answered`). Malformed input never raises out of
:meth:`receive_message` unless it is fatal (an oversized message): the command is
dropped and a :class:`~.events.CommandIgnored` event says why. Subscriptions are keyed
by the exact identifier string the client sent.

The broker is not called from here: history, presence and session storage leave as
request events, so the same machine serves an in-memory broker and a networked one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import messages
from .appchannels import DELEGATED
from .broker import HistoryEntry, SessionSnapshot
from .channels import Subscription, is_built_in, resolve
from .commands import KNOWN_COMMANDS, Command, parse_command
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    CloseConnection,
    CommandIgnored,
    Event,
    HistoryRequest,
    NativePing,
    PresenceRequest,
    SendMessage,
    SessionChanged,
    StreamAdded,
    StreamRemoved,
)
from .history import plan_history, replayed
from .keepalive import Keepalive, ping_message
from .parts import SessionParts
from .presence import presence_message, whisper_event
from .rate import CommandRate
from .replay import HOLD_SECONDS, NOTHING_HELD, history_reply, replay_messages
from .settings import SessionSettings, SessionState

__all__ = ["HOLD_SECONDS", "CableConnection", "SessionSettings", "SessionState", "ping_message"]


class CableConnection(SessionParts):
    """One Action Cable session, driven by calls (see the module docstring).

    Memory: one per connection, so no instance dictionary, and the parts most sessions
    never use are shared empty ones until it needs its own (:mod:`.parts`).

    Args:
        sid: the session id announced in ``welcome``.
        settings: ping and channel behaviour.
        now: the current time of the driver's monotonic clock, in seconds.
        ping_jitter: a number in ``[0, 1)``; the first ping is due after
            ``(0.5 + ping_jitter) * ping_interval`` so that reconnect storms spread.
    """

    __slots__ = (
        "_events",
        "_keepalive",
        "_now",
        "_rate",
        "held",
        "identifiers",
        "settings",
        "sid",
        "state",
        "subscriptions",
    )

    def __init__(
        self,
        *,
        sid: str,
        settings: SessionSettings,
        now: float,
        ping_jitter: float = 0.5,
    ) -> None:
        if not 0.0 <= ping_jitter < 1.0:
            raise LocalProtocolError("ping_jitter must be in [0, 1)")
        self.sid = sid
        self.settings = settings
        self.state = SessionState.NEW
        self.identifiers: str | None = None
        #: identifier -> the stream it reads (built-in channels read one stream each)
        self.subscriptions: dict[str, str] = {}
        super().__init__()  # the parts (presence, held subscriptions, RPC) not yet used
        #: identifiers (restored, or waiting for a history answer) whose live messages
        #: the driver holds back until their history was replayed (so the client sees
        #: every message once, in order): ``self._replay.held``, mirrored here as a
        #: plain attribute because every fan-out reads it
        self.held = self._replay.held
        self._now = now  # the driver's clock at the last call that passed it
        self._events: list[Event] = []
        self._keepalive = Keepalive(settings, now, ping_jitter)
        self._rate = CommandRate(settings.limits, now)

    # -- driver API -----------------------------------------------------------------

    def events(self) -> list[Event]:
        """Take every pending event, oldest first."""
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called; ``None`` for never."""
        if self.state is SessionState.CLOSED:
            return None
        # no intermediate list: this runs after every timer of every session
        keepalive = self._keepalive
        best = keepalive.next_ping
        pong, hold = keepalive.pong_deadline, self._replay.deadline
        if pong is not None and (best is None or pong < best):
            best = pong
        if hold is not None and (best is None or hold < best):
            best = hold
        return best

    def accept(self, identifiers: str) -> None:
        """Authentication succeeded: remember ``identifiers`` and send ``welcome``."""
        self._require(SessionState.NEW, "accept")
        self.identifiers = identifiers
        self.state = SessionState.OPEN
        self._send(messages.welcome(self.sid))
        self._snapshot()

    def restore(self, snapshot: SessionSnapshot, *, now: float = 0.0) -> None:
        """Resume a previous session without re-authenticating (extended protocol).

        The subscriptions come back without confirmations; the welcome lists them in
        ``restored_ids``. Clients then ask for the history they missed; until they do
        (or for :data:`HOLD_SECONDS`), live messages of these subscriptions are held,
        so that a message published meanwhile is not seen before the older ones that
        history replays, nor twice.
        """
        self._require(SessionState.NEW, "restore")
        self.identifiers = snapshot.identifiers
        self.state = SessionState.OPEN
        self._now = now
        restored: list[str] = []
        for identifier, _stream in snapshot.subscriptions:
            resolved = resolve(identifier, self.settings.policy)
            if resolved is None or identifier in self.subscriptions:
                continue  # secrets rotated since: drop it, the client re-subscribes
            self._add(*resolved)
            restored.append(resolved[0])
        if self.settings.delegate:  # the application's channels come back too (RPC)
            self._app_channels().change(snapshot.delegated, snapshot.app)
            restored += snapshot.delegated
        if restored and self.settings.history:
            self.held = self._holding().hold(restored, now)
        self._send(messages.welcome(self.sid, restored_ids=restored))
        self._snapshot()

    def reject(self, reason: str) -> None:
        """Authentication failed: send the disconnect message, then close (1000)."""
        self._require(SessionState.NEW, "reject")
        self._close(reason, reconnect=False, code=1000, close_reason="Auth Failed")

    def disconnect(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        """End the session from the server side (shutdown, slow client, remote).

        Sends ``{"type":"disconnect",…}``, drops every stream and closes. Calling it
        on a closed session does nothing.
        """
        if self.state is SessionState.CLOSED:
            return
        self._close(reason, reconnect=reconnect, code=code, close_reason=close_reason)

    def receive_message(self, message: str | bytes, *, now: float) -> bool:
        """Process one client message.

        Returns:
            Whether it decoded into a command (what AnyCable's ``client_msg_total``
            counts: an unknown command counts, undecodable or rate-limited input and
            a JSON ``null`` do not).

        Raises:
            RemoteProtocolError: only when fatal (message over the size limit); the
                session is then closed and a :class:`CloseConnection` is queued.
        """
        if self.state is not SessionState.OPEN:
            return False
        if not self._rate.take(now):
            self._events.append(CommandIgnored("", "rate limited"))
            return False
        try:
            command = parse_command(message, self.settings.limits)
        except RemoteProtocolError as exc:
            if exc.fatal:
                self._drop_streams()
                self.state = SessionState.CLOSED
                self._events.append(CloseConnection(exc.close_code, str(exc)))
                raise
            self._events.append(CommandIgnored("", str(exc)))
            return False
        if command is None:
            return False
        self._keepalive.pong_deadline = None  # any decoded command shows the client is alive
        self._now = now
        if self._apps.answering:  # in order: after the delegated command's answer
            if not self._app_channels().wait(command):
                self._ignore(command.command, "too many commands wait for the application")
            return True
        self._dispatch(command)
        return True

    def note_activity(self) -> None:
        """The transport heard from the client (e.g. a native pong): it is alive."""
        self._keepalive.pong_deadline = None

    def align_pings(self, grid: float) -> None:
        """Move the first ping up to the next multiple of ``grid`` (seconds, on the
        driver's clock); call it before the first ping.

        Sessions whose first pings land on the same multiple keep equal due times for
        as long as their interval is the same (each ping is due one interval after the
        one before), so a driver that wakes for one of them finds the others due too and
        sends them all at once, one frame for all. The first ping comes at most ``grid``
        later than its jittered time; the interval is unchanged. A ``grid`` of ``0``, or
        one that is not smaller than half the interval, changes nothing.
        """
        self._keepalive.align(grid)

    def handle_timer(self, now: float, *, unix_time: float) -> None:
        """Fire whatever is due at ``now``; ``unix_time`` stamps the ping."""
        if self.state is not SessionState.OPEN:
            return
        self._now = now
        hold = self._replay.deadline
        if hold is not None and now >= hold:
            self._events.extend(self._replay.release_all())
            self.held = self._replay.held
        keepalive = self._keepalive
        if keepalive.pong_deadline is not None and now >= keepalive.pong_deadline:
            self._close("no_pong", reconnect=True, code=1000, close_reason="No Pong")
            return
        if keepalive.next_ping is None or now < keepalive.next_ping:
            return
        self._send(self._ping(now, unix_time))
        if self.settings.native_pings:
            self._events.append(NativePing())

    def take_ping(self, now: float, *, unix_time: float) -> str | None:
        """The fast path of :meth:`handle_timer` when a plain ping is all that is due.

        When the session is open, nothing is pending in :meth:`events`, no hold or pong
        deadline has passed and native pings are off, this does what
        :meth:`handle_timer` would (advance the ping schedule, arm the pong deadline)
        but returns the ping message instead of queueing a :class:`SendMessage`: a
        driver waking many sessions at once can then send the same bytes to all of them
        (the text only depends on ``unix_time`` and the precision). Otherwise it does
        nothing and returns ``None``: call :meth:`handle_timer`.
        """
        if self.take_plain_ping(now) is None:
            return None
        return ping_message(unix_time, self.settings.ping_precision)

    def take_plain_ping(self, now: float, early: float = 0.0) -> float | None:
        """:meth:`take_ping` without the message: the session's next deadline once a
        plain ping was taken (the driver then sends
        ``ping_message(unix_time, settings.ping_precision)``), or ``None`` when
        anything else is due (call :meth:`handle_timer`).

        The hook for a driver pinging many sessions in a batch (see also plain_pings_at).

        ``early`` (seconds): also take a ping due that soon, up to a third of the
        interval (:data:`~.keepalive.EARLY_SHARE`), for a driver that writes to the
        session now anyway (a broadcast) and sends the ping in the same write; ``None``
        then also when no ping is due that soon. The schedule is unchanged.
        """
        if self.state is not SessionState.OPEN or self._events or self.settings.native_pings:
            return None
        best = self._keepalive.take_plain(now, self._replay.deadline, early)
        if best is not None:
            self._now = now
        return best

    def plain_pings_at(self) -> float | None:
        """The next ping's due time when all that is due until the driver's next call is
        plain pings (open, nothing pending, no native pings or pongs tracked, no hold),
        else ``None``: the driver may take them itself, each at ``keepalive.next_ping_after``,
        and reports the next one it did not take with :meth:`resume_pings` before its next call."""
        if self.state is not SessionState.OPEN or self._events or self.settings.native_pings:
            return None
        return None if self._replay.deadline is not None else self._keepalive.plain_from()

    def resume_pings(self, next_ping: float) -> None:
        """See :meth:`plain_pings_at`: the next ping the driver did not take is due then."""
        self._keepalive.next_ping = next_ping

    def _ping(self, now: float, unix_time: float) -> str:
        """The ping message due at ``now``; advances the schedule, arms the pong deadline."""
        self._keepalive.advance(now)
        return ping_message(unix_time, self.settings.ping_precision)

    def history_result(
        self, identifier: str, entries: Iterable[HistoryEntry] | None, *, epoch: str = ""
    ) -> None:
        """Answer a :class:`HistoryRequest`: the entries to replay, or ``None`` to reject.

        Replayed messages carry their stream position; ``confirm_history`` follows them.
        The held live messages are released without those replayed (per stream for an
        application channel, which may read several).
        """
        if self.state is not SessionState.OPEN:
            return
        if identifier not in self.subscriptions and identifier not in self._apps.streams:
            return
        if entries is None:
            self._send(history_reply("reject_history", identifier))
            self._release(identifier, None)
            return
        entries = list(entries)
        for text in replay_messages(identifier, entries, epoch):
            self._send(text)
        if identifier in self.subscriptions:
            self._release(identifier, entries[-1].offset if entries else None)
        else:
            self._release(identifier, replayed(entries))

    def _release(self, identifier: str, after: int | Mapping[str, int] | None) -> None:
        released = self._replay.release(identifier, after)
        if released is not None:
            self._events.append(released)

    def presence_result(self, identifier: str, records: list[tuple[str, object]] | None) -> None:
        """Answer a presence ``info`` request (``None`` when the broker failed)."""
        if self.state is not SessionState.OPEN or not self._presence_stream(identifier):
            return
        self._send(presence_message(identifier, records))

    # -- commands ------------------------------------------------------------------

    def _dispatch(self, command: Command) -> None:
        name = command.command
        if name not in KNOWN_COMMANDS:
            self._ignore(name, "unknown command")
        elif name == "ping":
            self._send(messages.pong())
        elif name == "pong":
            pass  # only refreshes keepalive (done above)
        elif command.identifier is None:
            self._ignore(name, "identifier is missing")
        elif (
            self.settings.delegate
            and name in DELEGATED
            and command.identifier not in self.subscriptions
            and not is_built_in(command.identifier, self.settings.policy)
        ):
            self._delegate(name, command.identifier, command.data)
            if name == "subscribe":
                self._app_channels().subscribing(
                    command.identifier, presence=command.presence, history=command.history
                )
        elif name == "subscribe":
            self._subscribe(command)
        elif name == "unsubscribe":
            self._unsubscribe(command.identifier)
        elif (
            command.identifier not in self.subscriptions
            and command.identifier not in self._apps.features
        ):
            self._ignore(name, "not subscribed")
        elif name == "history":
            self._history(command.identifier, command.history)
        elif name == "whisper":
            self._whisper(command.identifier, command.data)
        elif name == "join":
            self._join(command.identifier, command.presence)
        elif name == "leave":
            self._leave(command.identifier)
        elif name == "presence":
            self._presence_info(command.identifier)
        else:
            self._ignore(name, "not supported by built-in channels")

    def _subscribe(self, command: Command) -> None:
        identifier = command.identifier
        assert identifier is not None
        if identifier in self.subscriptions:
            self._ignore("subscribe", "already subscribed")
            return
        if len(self.subscriptions) >= self.settings.limits.max_subscriptions:
            self._send(messages.reject_subscription(identifier))
            return
        resolved = resolve(identifier, self.settings.policy)
        if resolved is None:
            self._send(messages.reject_subscription(identifier))
            return
        # an equal identifier shared by the sessions that subscribed with it (memory)
        identifier = resolved[0]
        self._add(identifier, resolved[1])
        self._send(messages.confirm_subscription(identifier))
        self._snapshot()
        if command.history is not None:
            self._history(identifier, command.history)
        if command.presence is not None:
            self._join(identifier, command.presence)

    def _add(self, identifier: str, found: Subscription) -> None:
        self.subscriptions[identifier] = found.stream
        self._events.append(StreamAdded(identifier, found.stream))

    def _unsubscribe(self, identifier: str) -> None:
        stream = self.subscriptions.pop(identifier, None)
        if stream is None:
            self._ignore("unsubscribe", "not subscribed")
            return
        self._replay.unhold(identifier)
        self._events.append(StreamRemoved(identifier, stream))
        if self._forget_presence(identifier) is not None:
            self._events.append(PresenceRequest("leave", identifier, stream))
        self._snapshot()

    def _history(self, identifier: str, request: Mapping[str, Any] | None) -> None:
        """Spec §7.4 over the subscription's streams (an application channel may read
        several: :mod:`.history`); all-or-nothing."""
        stream = self.subscriptions.get(identifier)
        streams = (stream,) if stream is not None else self._apps.streams.get(identifier, ())
        plan = plan_history(request, streams, enabled=self.settings.history)
        if plan.ignored:
            self._ignore("history", plan.ignored)
        elif plan.reject:
            self._send(history_reply("reject_history", identifier))
            self._release(identifier, None)
        elif not plan.queries:
            self._send(history_reply("confirm_history", identifier))
            self._release(identifier, None)
        else:
            # a broker may answer later (Redis): until it does, live messages of this
            # subscription are held, then released without those the history replayed
            self.held = self._holding().hold((identifier,), self._now)
            self._events.append(HistoryRequest(identifier, plan.queries))

    def _whisper(self, identifier: str, data: object) -> None:
        stream = self._whisper_stream(identifier)
        if not stream or data is None:
            self._ignore("whisper", "whispers are not enabled for this subscription")
            return
        self._events.append(whisper_event(stream, data, self.sid))

    def _join(self, identifier: str, presence: Mapping[str, Any] | None) -> None:
        stream = self._presence_stream(identifier)
        if not stream or not self.settings.presence:
            self._ignore("join", "presence is not enabled for this subscription")
            return
        joined = self._joining().join(identifier, stream, presence)
        if isinstance(joined, str):
            self._ignore("join", joined)
        else:
            self._events.append(joined)

    def _leave(self, identifier: str) -> None:
        left = None if self._presence is None else self._presence.leave(identifier)
        if left is None:
            self._ignore("leave", "not present")
        else:
            self._events.append(left)

    def _presence_info(self, identifier: str) -> None:
        stream = self._presence_stream(identifier)
        if not stream:
            self._ignore("presence", "presence is not enabled for this subscription")
            return
        if not self.settings.presence:
            self.presence_result(identifier, None)
            return
        self._events.append(PresenceRequest("info", identifier, stream))

    def _delegate(self, name: str, identifier: str, data: object) -> None:
        delegate = self._app_channels().delegate(name, identifier, data)
        if delegate is None:
            self._ignore(name, "data is not a string")  # AnyCable-Go: no RPC (rpc.md §4.4)
        else:
            self._events.append(delegate)

    def delegated_answered(self) -> None:
        """The driver applied the application's answer to the oldest :class:`Delegate`
        (or dropped it: no call, a failed one): the commands that arrived after it are
        processed now, in arrival order, up to the next one the application answers."""
        apps = self._app_channels()
        apps.answered()
        while not apps.answering and self.state is SessionState.OPEN:
            command = apps.next_waiting()
            if command is None:
                return
            self._dispatch(command)

    # -- what an application (RPC) decides ------------------------------------------

    def accept_delegated(self, identifiers: str) -> None:
        """The application accepted the connection; its own transmissions carry the
        welcome, so none is sent here."""
        self._require(SessionState.NEW, "accept")
        self.identifiers = identifiers
        self.state = SessionState.OPEN
        self._snapshot()

    def delegated_state(self, identifiers: tuple[str, ...], state: str) -> None:
        """The application's channels or state changed: kept in the snapshot (resumable
        sessions) so a restored session gets them back without RPC."""
        if self._app_channels().change(identifiers, state):
            self._snapshot()

    def transmit(self, text: str) -> None:
        """Send one message the application produced, verbatim (rpc.md §4.8)."""
        if self.state is not SessionState.CLOSED:
            self._send(text)

    def close_delegated(self, code: int, reason: str) -> None:
        """Close after what is queued, without a ``disconnect`` message of the server's
        own (the application's transmissions said what they had to)."""
        if self.state is SessionState.CLOSED:
            return
        self._drop_streams()
        self.state = SessionState.CLOSED
        self._events.append(CloseConnection(code, reason))

    def delegated_channel(
        self,
        identifier: str,
        *,
        whisper: str = "",
        presence: str = "",
        streams: tuple[str, ...] = (),
    ) -> None:
        """An application channel is subscribed; ``whisper`` and ``presence`` are the
        streams its state names (istate ``$w``, ``$p``; ``""``: none), which its client's
        ``whisper`` and ``join``/``leave``/``presence`` commands use (rpc.md §4.4);
        ``streams`` are those it reads, in the order its history replays them."""
        if self.state is not SessionState.CLOSED:
            self._app_channels().subscribed(identifier, whisper, presence, streams)

    def delegated_subscribe(
        self, identifier: str, *, history: Mapping[str, Any] | None = None
    ) -> None:
        """A subscribe the driver delegates itself (an event stream's opening): the
        history it carried is served once the application confirms it, as for a
        client's ``subscribe``."""
        self._app_channels().subscribing_history(identifier, history)

    def delegated_confirmed(self, identifier: str) -> None:
        """The application confirmed a subscribe: the presence the client sent with it
        (``@anycable/web`` re-joins so after a reconnect) joins now, as AnyCable-Go does
        after a confirmed subscribe. The history it asked for (``@anycable/web`` asks
        with every subscribe on the extended protocol) is served first, as AnyCable-Go's
        ``Subscribe`` does."""
        history, presence = self._app_channels().confirmed(identifier)
        if history is not None:
            self._history(identifier, history)
        if presence is not None:
            self._join(identifier, presence)

    def delegated_unsubscribed(self, identifier: str) -> None:
        """An application channel is gone: its presence in its stream is removed, its
        held live messages dropped."""
        self._app_channels().gone(identifier)
        self._replay.unhold(identifier)
        joined = self._forget_presence(identifier)
        if joined is not None and self.state is not SessionState.CLOSED:
            self._events.append(PresenceRequest("leave", identifier, joined[1]))

    def delegated_presence(
        self, identifier: str, kind: str, presence_id: str = "", info: object = None
    ) -> None:
        """The application joins (``kind`` ``join``) or removes (``leave``) this session
        in the presence set of ``identifier``'s presence stream (rpc.md §4.6 step 7)."""
        if self.state is not SessionState.OPEN or identifier not in self._apps.features:
            return
        if kind == "join":
            self._join(identifier, {"id": presence_id, "info": info})
        elif kind == "leave":
            self._leave(identifier)
        else:
            self._ignore("presence", f"unknown presence event {kind!r}")

    def delegated_stream(self, identifier: str, stream: str, *, added: bool) -> None:
        """An application channel starts (or stops) reading ``stream``."""
        if added:
            if self.state is not SessionState.CLOSED:
                self._events.append(StreamAdded(identifier, stream))
        else:
            self._events.append(StreamRemoved(identifier, stream))

    # -- helpers -------------------------------------------------------------------

    def _send(self, text: str) -> None:
        self._events.append(SendMessage(text))

    def _ignore(self, command: str, detail: str) -> None:
        self._events.append(CommandIgnored(command, detail))

    def _snapshot(self) -> None:
        if not (self.settings.resumable and self.settings.extended):
            return
        if self.state is not SessionState.OPEN or self.identifiers is None:
            return
        snapshot = SessionSnapshot(
            self.identifiers,
            tuple(self.subscriptions.items()),
            delegated=self._apps.identifiers,
            app=self._apps.state,
        )
        self._events.append(SessionChanged(self.sid, snapshot))

    def _drop_streams(self) -> None:
        for identifier, stream in self.subscriptions.items():
            self._events.append(StreamRemoved(identifier, stream))
        self.subscriptions.clear()
        self._clear_parts()
        self.held = NOTHING_HELD

    def _close(self, reason: str, *, reconnect: bool, code: int, close_reason: str) -> None:
        self._send(messages.disconnect(reason, reconnect=reconnect))
        self._drop_streams()
        self.state = SessionState.CLOSED
        self._events.append(CloseConnection(code, close_reason))

    def _require(self, state: SessionState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}")
