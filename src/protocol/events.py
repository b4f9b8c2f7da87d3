"""What the session state machine asks its driver to do.

Plain frozen dataclasses, one per kind, drained from
:meth:`cableway.protocol.connection.CableConnection.events`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CloseConnection",
    "CommandIgnored",
    "Event",
    "SendMessage",
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


Event = SendMessage | StreamAdded | StreamRemoved | CloseConnection | CommandIgnored
