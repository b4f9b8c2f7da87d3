"""What the session state machine asks its driver to do.

Plain frozen dataclasses, one per kind, drained from
:meth:`cableway.protocol.connection.CableConnection.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .broadcast import Publication
from .broker import HistoryQuery, SessionSnapshot

__all__ = [
    "CloseConnection",
    "CommandIgnored",
    "Delegate",
    "Event",
    "HistoryQuery",
    "HistoryRequest",
    "NativePing",
    "PresenceRequest",
    "Publish",
    "ReleaseHeld",
    "SendMessage",
    "SessionChanged",
    "StreamAdded",
    "StreamRemoved",
]


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send ``text`` to the client as one message (a WebSocket text frame)."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamAdded:
    """The session now reads ``stream`` through subscription ``identifier``."""

    identifier: str
    stream: str


@dataclass(frozen=True, slots=True)
class StreamRemoved:
    """The session no longer reads ``stream`` through ``identifier``."""

    identifier: str
    stream: str


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the transport after everything queued before it was sent.

    ``code`` and ``reason`` are the WebSocket close code and reason phrase.
    """

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CommandIgnored:
    """A client command was ignored; ``detail`` says why (for logs and metrics)."""

    command: str
    detail: str


@dataclass(frozen=True, slots=True)
class NativePing:
    """Send a transport-level ping (a WebSocket PING frame) with ``payload``."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``publication`` to the streams' subscribers (whispers, presence events)."""

    publication: Publication


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """Fetch history, then call ``CableConnection.history_result(identifier, …)``."""

    identifier: str
    queries: tuple[HistoryQuery, ...]


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    """A presence operation for the broker.

    ``kind`` is ``join`` (with ``presence_id`` and ``info``), ``leave``, or ``info``
    (answer with ``CableConnection.presence_result(identifier, records)``).
    """

    kind: str
    identifier: str
    stream: str
    presence_id: str = ""
    info: object = None


@dataclass(frozen=True, slots=True)
class ReleaseHeld:
    """Deliver the live messages held for ``identifier`` since a restore.

    Held messages with an offset at or below ``after`` were already replayed from
    history and are dropped; the rest are sent in order. ``after`` is ``None`` to send
    them all; for a subscription reading several streams (an application channel) it
    maps each stream to the last offset replayed of it.
    """

    identifier: str
    after: int | Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """A resumable session's state changed: store ``snapshot`` under ``sid``."""

    sid: str
    snapshot: SessionSnapshot


@dataclass(frozen=True, slots=True)
class Delegate:
    """A client command for a channel the server does not serve itself: the driver asks
    the application (RPC ``Command``, rpc.md §4.4) and applies the answer to the core.

    ``command`` is ``subscribe``, ``unsubscribe`` or ``message``; ``data`` is the
    client's ``data`` string for ``message`` (else ``""``).
    """

    command: str
    identifier: str
    data: str = ""


Event = (
    SendMessage
    | StreamAdded
    | StreamRemoved
    | CloseConnection
    | CommandIgnored
    | NativePing
    | Publish
    | ReleaseHeld
    | HistoryRequest
    | PresenceRequest
    | SessionChanged
    | Delegate
)
