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

Commands are processed strictly in arrival order. Malformed input never raises out of
:meth:`receive_message` unless it is fatal (an oversized message): the command is
dropped and a :class:`~.events.CommandIgnored` event says why. Subscriptions are keyed
by the exact identifier string the client sent.

The broker is not called from here: history, presence and session storage leave as
request events, so the same machine serves an in-memory broker and a networked one.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from . import messages
from .broadcast import EncodedBroadcast, Publication
from .broker import HistoryEntry, SessionSnapshot
from .channels import StreamPolicy, Subscription, is_built_in, resolve_subscription
from .commands import KNOWN_COMMANDS, Command, parse_command
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    CloseConnection,
    CommandIgnored,
    Delegate,
    Event,
    HistoryRequest,
    NativePing,
    PresenceRequest,
    Publish,
    ReleaseHeld,
    SendMessage,
    SessionChanged,
    StreamAdded,
    StreamRemoved,
)
from .history import plan_history, replayed
from .limits import Limits

__all__ = ["CableConnection", "SessionSettings", "SessionState", "ping_message"]

_PRECISION = {"s": 1, "ms": 1_000, "ns": 1_000_000_000}
_MAX_PRESENCE_ID = 256
#: how long live messages of restored subscriptions wait for the client's history
#: request before they are delivered anyway
HOLD_SECONDS = 5.0

#: ``CableConnection.held`` of a session holding nothing (shared: no set per session)
_NOTHING_HELD: frozenset[str] = frozenset()
#: Client commands an application channel answers (rpc.md §4.4).
_DELEGATED = frozenset({"subscribe", "unsubscribe", "message"})


def ping_message(unix_time: float, precision: str) -> str:
    """The ping message at ``unix_time`` with its stamp in ``precision`` (``s``, ``ms`` or
    ``ns``; any other: seconds): the same for every session with that precision."""
    return messages.ping(int(unix_time * _PRECISION.get(precision, 1)))


class SessionState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Per-session behaviour, derived from the server configuration and the request.

    Attributes:
        ping_interval: seconds between pings; ``0`` disables them (``?pi=0``).
        ping_precision: unit of the ping timestamp: ``s``, ``ms`` or ``ns``.
        limits: size and count bounds.
        policy: which built-in channels are served and their secrets.
        extended: the session speaks ``actioncable-v1-ext-json``.
        pong_timeout: with ``extended``, seconds a client has to send any command after
            a ping before it is disconnected (``no_pong``); ``0`` disables the check.
        history: a broker keeps history (otherwise history requests are rejected).
        presence: a broker keeps presence (otherwise presence commands are ignored).
        resumable: snapshots are kept so the session can be restored (extended only).
        native_pings: also ask the transport for a native ping with every ping; the
            pong timeout then applies to every session and a native pong (or any
            command) answers it.
        delegate: an application serves the other channels (RPC): ``subscribe``,
            ``unsubscribe`` and ``message`` for identifiers that are not built-in
            channels become :class:`Delegate` events instead of rejections.
    """

    ping_interval: float = 3.0
    ping_precision: str = "s"
    limits: Limits = field(default_factory=Limits)
    policy: StreamPolicy = field(default_factory=StreamPolicy)
    extended: bool = False
    pong_timeout: float = 0.0
    history: bool = False
    presence: bool = False
    resumable: bool = False
    native_pings: bool = False
    delegate: bool = False


class CableConnection:
    """One Action Cable session, driven by calls (see the module docstring).

    Args:
        sid: the session id announced in ``welcome``.
        settings: ping and channel behaviour.
        now: the current time of the driver's monotonic clock, in seconds.
        ping_jitter: a number in ``[0, 1)``; the first ping is due after
            ``(0.5 + ping_jitter) * ping_interval`` so that reconnect storms spread.
    """

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
        #: identifier -> (presence id, stream) this session joined with
        self.presence: dict[str, tuple[str, str]] = {}
        self._features: dict[str, Subscription] = {}
        #: identifiers (restored, or waiting for a history answer) whose live messages
        #: the driver holds back until their history was replayed (so the client sees
        #: every message once, in order)
        self.held: AbstractSet[str] = _NOTHING_HELD  # a set of its own once needed
        self._hold_deadline: float | None = None
        self._now = now  # the driver's clock at the last call that passed it
        self._events: list[Event] = []
        interval = settings.ping_interval
        self._next_ping: float | None = (
            now + interval * (0.5 + ping_jitter) if interval > 0 else None
        )
        self._pong_deadline: float | None = None
        #: the application's part of the snapshot (RPC): its channels and opaque state
        self._delegated: tuple[str, ...] = ()
        self._app_state = ""
        #: subscribed application channel -> (whisper stream, presence stream), "" = none
        #: (the application names them in the channel's istate ``$w``/``$p``, rpc.md §2.2)
        self._app_channels: dict[str, tuple[str, str]] = {}
        #: application channel -> the presence its last ``subscribe`` carried, joined
        #: once the application confirms it (at most one per identifier)
        self._subscribe_joins: dict[str, Mapping[str, Any]] = {}
        #: subscribed application channel -> the streams it reads (its history's streams)
        self._app_streams: dict[str, tuple[str, ...]] = {}
        #: application channel -> the history its last ``subscribe`` asked for, served
        #: once the application confirms it (at most one per identifier)
        self._subscribe_history: dict[str, Mapping[str, Any]] = {}
        self._tokens = float(settings.limits.commands_burst)
        self._refilled_at = now

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
        best = self._next_ping
        pong, hold = self._pong_deadline, self._hold_deadline
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
            found = resolve_subscription(identifier, self.settings.policy)
            if found is None or identifier in self.subscriptions:
                continue  # secrets rotated since: drop it, the client re-subscribes
            self._add(identifier, found)
            restored.append(identifier)
        if self.settings.delegate:  # the application's channels come back too (RPC)
            self._delegated, self._app_state = snapshot.delegated, snapshot.app
            restored += snapshot.delegated
        if restored and self.settings.history:
            self._hold(restored)
            self._hold_deadline = now + HOLD_SECONDS
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
        if not self._take_token(now):
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
        self._pong_deadline = None  # any decoded command shows the client is alive
        self._now = now
        self._dispatch(command)
        return True

    def note_activity(self) -> None:
        """The transport heard from the client (e.g. a native pong): it is alive."""
        self._pong_deadline = None

    def _take_token(self, now: float) -> bool:
        limits = self.settings.limits
        if limits.commands_rate <= 0:
            return True
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        self._tokens = min(
            float(limits.commands_burst), self._tokens + elapsed * limits.commands_rate
        )
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

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
        next_ping = self._next_ping
        if next_ping is None or grid <= 0 or 2 * grid > self.settings.ping_interval:
            return
        self._next_ping = math.ceil(next_ping / grid) * grid

    def handle_timer(self, now: float, *, unix_time: float) -> None:
        """Fire whatever is due at ``now``; ``unix_time`` stamps the ping."""
        if self.state is not SessionState.OPEN:
            return
        self._now = now
        if self._hold_deadline is not None and now >= self._hold_deadline:
            self._release_all()
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._close("no_pong", reconnect=True, code=1000, close_reason="No Pong")
            return
        if self._next_ping is None or now < self._next_ping:
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

    def take_plain_ping(self, now: float) -> float | None:
        """:meth:`take_ping` without the message: the session's next deadline once a
        plain ping was taken (the driver then sends
        ``ping_message(unix_time, settings.ping_precision)``), or ``None`` when
        anything else is due (call :meth:`handle_timer`).

        The cheapest hook for a driver that pings many sessions in one batch: one call
        per session, no string built, and the deadline to re-schedule it at.
        """
        if self.state is not SessionState.OPEN or self._events:
            return None
        settings = self.settings
        next_ping = self._next_ping
        if next_ping is None or now < next_ping or settings.native_pings:
            return None
        hold, pong = self._hold_deadline, self._pong_deadline
        if (hold is not None and now >= hold) or (pong is not None and now >= pong):
            return None
        self._now = now
        best = self._advance_pings(now)
        pong = self._pong_deadline
        if pong is not None and pong < best:
            best = pong
        if hold is not None and hold < best:
            best = hold
        return best

    def _ping(self, now: float, unix_time: float) -> str:
        """The ping message due at ``now``; advances the schedule, arms the pong deadline."""
        self._advance_pings(now)
        return ping_message(unix_time, self.settings.ping_precision)

    def _advance_pings(self, now: float) -> float:
        """A ping is sent at ``now``: the next one's due time (returned), and the pong
        deadline armed where pongs are tracked."""
        assert self._next_ping is not None
        settings = self.settings
        interval = settings.ping_interval
        next_ping = self._next_ping + interval
        if next_ping <= now:
            next_ping = now + interval
        self._next_ping = next_ping
        timeout = settings.pong_timeout
        tracked = settings.extended or settings.native_pings
        if tracked and timeout > 0 and self._pong_deadline is None:
            self._pong_deadline = now + timeout
        return next_ping

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
        if identifier not in self.subscriptions and identifier not in self._app_streams:
            return
        if entries is None:
            self._send(_typed("reject_history", identifier))
            self._release(identifier, None)
            return
        entries = list(entries)
        for entry in entries:
            publication = Publication(entry.stream, entry.data, broadcast_type=entry.broadcast_type)
            encoded = EncodedBroadcast(publication, offset=entry.offset, epoch=epoch)
            self._send(encoded.for_identifier(identifier))
        self._send(_typed("confirm_history", identifier))
        if identifier in self.subscriptions:
            self._release(identifier, entries[-1].offset if entries else None)
        else:
            self._release(identifier, replayed(entries))

    def _hold(self, identifiers: Iterable[str]) -> None:
        held = self.held
        if not isinstance(held, set):
            held = self.held = set()  # most sessions never hold: no set until one does
        held.update(identifiers)

    def _unhold(self, identifier: str) -> None:
        held = self.held
        if isinstance(held, set):
            held.discard(identifier)

    def _release(self, identifier: str, after: int | Mapping[str, int] | None) -> None:
        if identifier in self.held:
            self._unhold(identifier)
            self._events.append(ReleaseHeld(identifier, after))
            if not self.held:
                self._hold_deadline = None

    def _release_all(self) -> None:
        for identifier in sorted(self.held):
            self._events.append(ReleaseHeld(identifier, None))
        self.held = _NOTHING_HELD
        self._hold_deadline = None

    def presence_result(self, identifier: str, records: list[tuple[str, object]] | None) -> None:
        """Answer a presence ``info`` request (``None`` when the broker failed)."""
        if self.state is not SessionState.OPEN or not self._presence_stream(identifier):
            return
        message = messages.presence_info(records)
        self._send(
            '{"type":"presence","identifier":'
            + messages.dumps(identifier)
            + ',"message":'
            + messages.dumps(message)
            + "}"
        )

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
            and name in _DELEGATED
            and command.identifier not in self.subscriptions
            and not is_built_in(command.identifier, self.settings.policy)
        ):
            self._delegate(name, command.identifier, command.data)
            if name == "subscribe":
                self._join_on_subscribe(command.identifier, command.presence)
                self._history_on_subscribe(command.identifier, command.history)
        elif name == "subscribe":
            self._subscribe(command)
        elif name == "unsubscribe":
            self._unsubscribe(command.identifier)
        elif (
            command.identifier not in self.subscriptions
            and command.identifier not in self._app_channels
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
        found = resolve_subscription(identifier, self.settings.policy)
        if found is None:
            self._send(messages.reject_subscription(identifier))
            return
        self._add(identifier, found)
        self._send(messages.confirm_subscription(identifier))
        self._snapshot()
        if command.history is not None:
            self._history(identifier, command.history)
        if command.presence is not None:
            self._join(identifier, command.presence)

    def _add(self, identifier: str, found: Subscription) -> None:
        self.subscriptions[identifier] = found.stream
        self._features[identifier] = found
        self._events.append(StreamAdded(identifier, found.stream))

    def _unsubscribe(self, identifier: str) -> None:
        stream = self.subscriptions.pop(identifier, None)
        if stream is None:
            self._ignore("unsubscribe", "not subscribed")
            return
        self._features.pop(identifier, None)
        self._unhold(identifier)
        self._events.append(StreamRemoved(identifier, stream))
        if self.presence.pop(identifier, None) is not None:
            self._events.append(PresenceRequest("leave", identifier, stream))
        self._snapshot()

    def _history(self, identifier: str, request: Mapping[str, Any] | None) -> None:
        """Spec §7.4 over the subscription's streams (an application channel may read
        several: :mod:`.history`); all-or-nothing."""
        stream = self.subscriptions.get(identifier)
        streams = (stream,) if stream is not None else self._app_streams.get(identifier, ())
        plan = plan_history(request, streams, enabled=self.settings.history)
        if plan.ignored:
            self._ignore("history", plan.ignored)
        elif plan.reject:
            self._send(_typed("reject_history", identifier))
            self._release(identifier, None)
        elif not plan.queries:
            self._send(_typed("confirm_history", identifier))
            self._release(identifier, None)
        else:
            # a broker may answer later (Redis): until it does, live messages of this
            # subscription are held, then released without those the history replayed
            self._hold((identifier,))
            if self._hold_deadline is None:
                self._hold_deadline = self._now + HOLD_SECONDS
            self._events.append(HistoryRequest(identifier, plan.queries))

    def _whisper_stream(self, identifier: str) -> str:
        """The stream whispers of ``identifier`` go to, ``""`` when it allows none."""
        features = self._features.get(identifier)
        if features is not None:
            return features.stream if features.whisper else ""
        return self._app_channels.get(identifier, ("", ""))[0]

    def _presence_stream(self, identifier: str) -> str:
        """The stream ``identifier``'s presence set lives on, ``""`` when it has none."""
        features = self._features.get(identifier)
        if features is not None:
            return features.stream if features.presence else ""
        return self._app_channels.get(identifier, ("", ""))[1]

    def _whisper(self, identifier: str, data: object) -> None:
        stream = self._whisper_stream(identifier)
        if not stream or data is None:
            self._ignore("whisper", "whispers are not enabled for this subscription")
            return
        publication = Publication(
            stream, messages.dumps(data), exclude_socket=self.sid, transient=True
        )
        self._events.append(Publish(publication))

    def _join(self, identifier: str, presence: Mapping[str, Any] | None) -> None:
        stream = self._presence_stream(identifier)
        if not stream or not self.settings.presence:
            self._ignore("join", "presence is not enabled for this subscription")
            return
        raw_id = presence.get("id") if presence else None
        if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if not isinstance(raw_id, str) or not raw_id or len(raw_id) > _MAX_PRESENCE_ID:
            self._ignore("join", "presence id must be a non-empty string")
            return
        joined = self.presence.get(identifier)
        if joined is not None and joined[0] != raw_id:
            self._ignore("join", "presence ID mismatch")
            return
        info = presence.get("info") if presence else None
        self.presence[identifier] = (raw_id, stream)
        self._events.append(
            PresenceRequest("join", identifier, stream, presence_id=raw_id, info=info)
        )

    def _leave(self, identifier: str) -> None:
        joined = self.presence.pop(identifier, None)
        if joined is None:
            self._ignore("leave", "not present")
            return
        self._events.append(PresenceRequest("leave", identifier, joined[1]))

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
        if name != "message":
            self._events.append(Delegate(name, identifier))
        elif isinstance(data, str):
            self._events.append(Delegate(name, identifier, data))
        else:
            self._ignore(name, "data is not a string")  # AnyCable-Go: no RPC (rpc.md §4.4)

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
        if (identifiers, state) != (self._delegated, self._app_state):
            self._delegated, self._app_state = identifiers, state
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
            self._app_channels[identifier] = (whisper, presence)
            self._app_streams[identifier] = streams

    def delegated_subscribe(
        self, identifier: str, *, history: Mapping[str, Any] | None = None
    ) -> None:
        """A subscribe the driver delegates itself (an event stream's opening): the
        history it carried is served once the application confirms it, as for a
        client's ``subscribe``."""
        self._history_on_subscribe(identifier, history)

    def _join_on_subscribe(self, identifier: str, presence: Mapping[str, Any] | None) -> None:
        self._remember(self._subscribe_joins, identifier, presence)

    def _history_on_subscribe(self, identifier: str, history: Mapping[str, Any] | None) -> None:
        self._remember(self._subscribe_history, identifier, history)

    def _remember(
        self, store: dict[str, Mapping[str, Any]], identifier: str, value: Mapping[str, Any] | None
    ) -> None:
        """Keep what a delegated ``subscribe`` carried until the application answers it
        (bounded: one per identifier, at most ``max_subscriptions``)."""
        if value is None:
            store.pop(identifier, None)
        elif identifier in store or len(store) < self.settings.limits.max_subscriptions:
            store[identifier] = value

    def delegated_confirmed(self, identifier: str) -> None:
        """The application confirmed a subscribe: the presence the client sent with it
        (``@anycable/web`` re-joins so after a reconnect) joins now, as AnyCable-Go does
        after a confirmed subscribe. The history it asked for (``@anycable/web`` asks
        with every subscribe on the extended protocol) is served first, as AnyCable-Go's
        ``Subscribe`` does."""
        history = self._subscribe_history.pop(identifier, None)
        if history is not None and identifier in self._app_channels:
            self._history(identifier, history)
        presence = self._subscribe_joins.pop(identifier, None)
        if presence is not None and identifier in self._app_channels:
            self._join(identifier, presence)

    def delegated_unsubscribed(self, identifier: str) -> None:
        """An application channel is gone: its presence in its stream is removed, its
        held live messages dropped."""
        self._app_channels.pop(identifier, None)
        self._app_streams.pop(identifier, None)
        self._unhold(identifier)
        joined = self.presence.pop(identifier, None)
        if joined is not None and self.state is not SessionState.CLOSED:
            self._events.append(PresenceRequest("leave", identifier, joined[1]))

    def delegated_presence(
        self, identifier: str, kind: str, presence_id: str = "", info: object = None
    ) -> None:
        """The application joins (``kind`` ``join``) or removes (``leave``) this session
        in the presence set of ``identifier``'s presence stream (rpc.md §4.6 step 7)."""
        if self.state is not SessionState.OPEN or identifier not in self._app_channels:
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
            delegated=self._delegated,
            app=self._app_state,
        )
        self._events.append(SessionChanged(self.sid, snapshot))

    def _drop_streams(self) -> None:
        for identifier, stream in self.subscriptions.items():
            self._events.append(StreamRemoved(identifier, stream))
        self.subscriptions.clear()
        self._features.clear()
        self._app_channels.clear()
        self._subscribe_joins.clear()
        self._app_streams.clear()
        self._subscribe_history.clear()
        self.held = _NOTHING_HELD
        self._hold_deadline = None

    def _close(self, reason: str, *, reconnect: bool, code: int, close_reason: str) -> None:
        self._send(messages.disconnect(reason, reconnect=reconnect))
        self._drop_streams()
        self.state = SessionState.CLOSED
        self._events.append(CloseConnection(code, close_reason))

    def _require(self, state: SessionState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}")


def _typed(kind: str, identifier: str) -> str:
    return '{"type":"' + kind + '","identifier":' + messages.dumps(identifier) + "}"
