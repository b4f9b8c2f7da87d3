"""The per-session Action Cable state machine.

Theory of operation
-------------------

A :class:`CableConnection` is one client session (WebSocket or SSE), with no I/O and
no clock. The driver:

1. creates it right after the transport handshake, then calls :meth:`accept` with the
   connection identifiers (or :meth:`reject` with an AnyCable disconnect reason);
2. feeds every client message to :meth:`receive_message` together with ``now``;
3. sleeps until :meth:`next_deadline` and then calls :meth:`handle_timer`;
4. after *every* call drains :meth:`events` and carries them out in order: send
   messages, add/remove streams in the hub, close the transport.

States move one way only::

    NEW --accept()--> OPEN --disconnect()/fatal error--> CLOSED
    NEW --reject()--> CLOSED

Commands are processed strictly in arrival order. Malformed input never raises out of
:meth:`receive_message` unless it is fatal (an oversized message): the command is
dropped and a :class:`~.events.CommandIgnored` event says why. Subscriptions are keyed
by the exact identifier string the client sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from . import messages
from .channels import StreamPolicy, resolve_stream
from .commands import KNOWN_COMMANDS, Command, parse_command
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    CloseConnection,
    CommandIgnored,
    Event,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from .limits import Limits

__all__ = ["CableConnection", "SessionSettings", "SessionState"]

_PRECISION = {"s": 1, "ms": 1_000, "ns": 1_000_000_000}


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
    """

    ping_interval: float = 3.0
    ping_precision: str = "s"
    limits: Limits = field(default_factory=Limits)
    policy: StreamPolicy = field(default_factory=StreamPolicy)


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
        self._events: list[Event] = []
        interval = settings.ping_interval
        self._next_ping: float | None = (
            now + interval * (0.5 + ping_jitter) if interval > 0 else None
        )

    # -- driver API -----------------------------------------------------------------

    def events(self) -> list[Event]:
        """Take every pending event, oldest first."""
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called; ``None`` for never."""
        return self._next_ping if self.state is not SessionState.CLOSED else None

    def accept(self, identifiers: str) -> None:
        """Authentication succeeded: remember ``identifiers`` and send ``welcome``."""
        self._require(SessionState.NEW, "accept")
        self.identifiers = identifiers
        self.state = SessionState.OPEN
        self._send(messages.welcome(self.sid))

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

    def receive_message(self, message: str | bytes, *, now: float) -> None:
        """Process one client message.

        Raises:
            RemoteProtocolError: only when fatal (message over the size limit); the
                session is then closed and a :class:`CloseConnection` is queued.
        """
        if self.state is not SessionState.OPEN:
            return
        try:
            command = parse_command(message, self.settings.limits)
        except RemoteProtocolError as exc:
            if exc.fatal:
                self._drop_streams()
                self.state = SessionState.CLOSED
                self._events.append(CloseConnection(exc.close_code, str(exc)))
                raise
            self._events.append(CommandIgnored("", str(exc)))
            return
        if command is not None:
            self._dispatch(command)

    def handle_timer(self, now: float, *, unix_time: float) -> None:
        """Fire whatever is due at ``now``; ``unix_time`` stamps the ping."""
        if self.state is SessionState.CLOSED or self._next_ping is None:
            return
        if now >= self._next_ping:
            stamp = int(unix_time * _PRECISION.get(self.settings.ping_precision, 1))
            self._send(messages.ping(stamp))
            interval = self.settings.ping_interval
            self._next_ping += interval
            if self._next_ping <= now:
                self._next_ping = now + interval

    # -- commands ------------------------------------------------------------------

    def _dispatch(self, command: Command) -> None:
        name = command.command
        if name not in KNOWN_COMMANDS:
            self._ignore(name, "unknown command")
        elif name == "ping":
            self._send(messages.pong())
        elif name == "pong":
            pass  # only refreshes keepalive
        elif command.identifier is None:
            self._ignore(name, "identifier is missing")
        elif name == "subscribe":
            self._subscribe(command.identifier)
        elif name == "unsubscribe":
            self._unsubscribe(command.identifier)
        elif command.identifier not in self.subscriptions:
            self._ignore(name, "not subscribed")
        elif name == "history":
            # No broker keeps history yet: every request is refused, as AnyCable's
            # default (legacy) broker does.
            self._send(
                '{"type":"reject_history","identifier":' + messages.dumps(command.identifier) + "}"
            )
        else:
            self._ignore(name, "not supported by built-in channels")

    def _subscribe(self, identifier: str) -> None:
        if identifier in self.subscriptions:
            self._ignore("subscribe", "already subscribed")
            return
        if len(self.subscriptions) >= self.settings.limits.max_subscriptions:
            self._send(messages.reject_subscription(identifier))
            return
        stream = resolve_stream(identifier, self.settings.policy)
        if stream is None:
            self._send(messages.reject_subscription(identifier))
            return
        self.subscriptions[identifier] = stream
        self._events.append(StreamAdded(identifier, stream))
        self._send(messages.confirm_subscription(identifier))

    def _unsubscribe(self, identifier: str) -> None:
        stream = self.subscriptions.pop(identifier, None)
        if stream is None:
            self._ignore("unsubscribe", "not subscribed")
            return
        self._events.append(StreamRemoved(identifier, stream))

    # -- helpers -------------------------------------------------------------------

    def _send(self, text: str) -> None:
        self._events.append(SendMessage(text))

    def _ignore(self, command: str, detail: str) -> None:
        self._events.append(CommandIgnored(command, detail))

    def _drop_streams(self) -> None:
        for identifier, stream in self.subscriptions.items():
            self._events.append(StreamRemoved(identifier, stream))
        self.subscriptions.clear()

    def _close(self, reason: str, *, reconnect: bool, code: int, close_reason: str) -> None:
        self._send(messages.disconnect(reason, reconnect=reconnect))
        self._drop_streams()
        self.state = SessionState.CLOSED
        self._events.append(CloseConnection(code, close_reason))

    def _require(self, state: SessionState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}")
