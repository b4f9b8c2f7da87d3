"""What a session is (its state) and how it behaves (its settings): shared by the
state machine (:mod:`.connection`) and the parts it composes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .channels import StreamPolicy
from .limits import Limits

__all__ = ["SessionSettings", "SessionState"]


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
            channels become :class:`~.events.Delegate` events instead of rejections.
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
