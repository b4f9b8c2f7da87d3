"""The one chain that turns a session's core events into driver actions.

Both drivers (the trio session, the ASGI session) implement :class:`EventSink` with
their own I/O and call :func:`dispatch` after feeding the core: which event means what,
and the rule that a client that does not read what it asks for is dropped as
``too_slow``, live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..protocol.broadcast import Publication
from ..protocol.broker import SessionSnapshot
from ..protocol.connection import CableConnection
from ..protocol.events import (
    CloseConnection,
    CommandIgnored,
    Delegate,
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

__all__ = ["EventSink", "dispatch"]


class EventSink(Protocol):
    """What a driver's session does for each core event."""

    def send_message(self, text: str) -> bool:
        """Queue one message; False when the client is over its outbox bound."""
        ...

    def stream_added(self, stream: str, identifier: str) -> None: ...

    def stream_removed(self, stream: str, identifier: str) -> None: ...

    def release_held(self, identifier: str, after: int | Mapping[str, int] | None) -> None: ...

    def close_transport(self, code: int, reason: str) -> None: ...

    def native_ping(self, payload: bytes) -> None: ...

    def publish(self, publication: Publication) -> None: ...

    def history_request(self, request: HistoryRequest) -> None: ...

    def presence_request(self, request: PresenceRequest) -> None: ...

    def session_changed(self, sid: str, snapshot: SessionSnapshot) -> None: ...

    def command_ignored(self, command: str, detail: str) -> None: ...

    def delegate(self, command: Delegate) -> None:
        """Ask the application (RPC) to answer ``command``; later, in order."""
        ...

    def too_slow(self) -> None:
        """Drop what is queued for a client that does not read (a ``too_slow`` close follows)."""
        ...


def dispatch(core: CableConnection, sink: EventSink) -> None:
    """Carry out everything ``core`` asks for, until it asks for nothing more."""
    while events := core.events():
        overflow = False
        for event in events:
            if isinstance(event, SendMessage):
                if not overflow and not sink.send_message(event.text):
                    overflow = True
            elif isinstance(event, StreamAdded):
                sink.stream_added(event.stream, event.identifier)
            elif isinstance(event, StreamRemoved):
                sink.stream_removed(event.stream, event.identifier)
            elif isinstance(event, ReleaseHeld):
                sink.release_held(event.identifier, event.after)
            elif isinstance(event, CloseConnection):
                sink.close_transport(event.code, event.reason)
            elif isinstance(event, NativePing):
                sink.native_ping(event.payload)
            elif isinstance(event, Publish):
                sink.publish(event.publication)
            elif isinstance(event, HistoryRequest):
                sink.history_request(event)
            elif isinstance(event, PresenceRequest):
                sink.presence_request(event)
            elif isinstance(event, SessionChanged):
                sink.session_changed(event.sid, event.snapshot)
            elif isinstance(event, CommandIgnored):
                sink.command_ignored(event.command, event.detail)
            elif isinstance(event, Delegate):
                sink.delegate(event)
        if overflow:
            # the client does not read what it asks for: drop it, as for broadcasts
            sink.too_slow()
            core.disconnect("too_slow", reconnect=True)
