"""The WebSocket session driver: wsproto after an h11 upgrade, one core per session.

Resource handling:
    Two tasks per connection in a nursery of their own: the *reader* (socket ->
    wsproto -> :class:`~cableway.protocol.connection.CableConnection`, and the
    session's timers, by waking at ``next_deadline()``), and the *writer* (outbox ->
    socket, every write under ``ws_write_timeout``). The stream is closed when both
    are done.

Error handling:
    Nothing a client sends raises out of :meth:`WebSocketSession.run`. Protocol
    errors close with the code wsproto or the core chose; a failed or timed-out write
    ends the session at once. The session always unregisters from the hub.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    Ping,
    TextMessage,
)
from wsproto.events import (
    CloseConnection as WsClose,
)

from ..protocol.connection import CableConnection
from ..protocol.errors import RemoteProtocolError
from ..protocol.events import (
    CloseConnection,
    CommandIgnored,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from ..protocol.wsframe import text_frame
from .outbox import Outbox

if TYPE_CHECKING:
    from .server import Server

__all__ = ["WebSocketSession"]

log = logging.getLogger("cableway.ws")

_READ_SIZE = 65536
_CLOSE_WAIT = 2.0


class WebSocketSession:
    """One WebSocket client: a core session, an outbox and the socket."""

    def __init__(
        self,
        server: Server,
        stream: trio.abc.Stream,
        core: CableConnection,
        *,
        trailing_data: bytes = b"",
    ) -> None:
        self.server = server
        self.stream = stream
        self.core = core
        self.sid = core.sid
        self.ws = Connection(ConnectionType.SERVER, trailing_data=trailing_data)
        self.outbox = Outbox(server.config.ws_max_pending_size)
        self._pending_close: tuple[str, bool, int, str] | None = None
        self._wake: trio.CancelScope | None = None
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        self._closing = False
        self._done = trio.Event()

    def __hash__(self) -> int:
        return id(self)

    # -- called from other tasks (fan-out, shutdown, remote disconnect) ---------------

    def push_frame(self, frame: bytes) -> None:
        """Queue a pre-built frame; on overflow disconnect the client as ``too_slow``."""
        if self._closing or self._pending_close is not None:
            return
        if not self.outbox.push(frame):
            self.outbox.clear()
            self.server.metrics_slow_clients += 1
            self.request_close("too_slow", reconnect=True, code=1000)

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        """Ask the session to send ``disconnect`` and close; returns at once."""
        if self._closing or self._pending_close is not None:
            return
        self._pending_close = (reason, reconnect, code, close_reason)
        if self._wake is not None:
            self._wake.cancel()

    async def wait_closed(self) -> None:
        await self._done.wait()

    # -- the session ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                # the reader is done: let the writer flush what is queued, bounded
                self.outbox.close()
        finally:
            self._closing = True
            self._unregister()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()
            self._done.set()

    async def _writer(self, scope: trio.CancelScope) -> None:
        timeout = self.server.config.ws_write_timeout
        while True:
            data = await self.outbox.take()
            if not data:
                return
            try:
                with trio.fail_after(timeout):
                    await self.stream.send_all(data)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
                log.debug("write failed sid=%s", self.sid)
                self._closing = True
                scope.cancel()
                return

    async def _reader(self) -> None:
        self._apply()
        while not self._closing:
            deadline = self.core.next_deadline()
            data: bytes | None = b""
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as wake:
                self._wake = wake
                if self._pending_close is not None:
                    wake.cancel()
                try:
                    data = bytes(await self.stream.receive_some(_READ_SIZE))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = None
            self._wake = None
            if wake.cancelled_caught:
                if self._pending_close is not None:
                    reason, reconnect, code, close_reason = self._pending_close
                    self.core.disconnect(
                        reason, reconnect=reconnect, code=code, close_reason=close_reason
                    )
                else:
                    self.core.handle_timer(trio.current_time(), unix_time=time.time())
                self._apply()
                continue
            if not data:
                return  # EOF or reset: the peer vanished
            self.ws.receive_data(data)
            self._handle_ws_events()
        await self._await_close_reply()

    def _handle_ws_events(self) -> None:
        limit = self.server.config.max_message_size
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                self._parts_size += len(event.data)
                if self._parts_size > limit:
                    self._fatal(1009, "message too big")
                    return
                if not event.message_finished:
                    continue
                message: str | bytes
                if len(self._parts) == 1:
                    message = self._parts[0]
                elif isinstance(event, TextMessage):
                    message = "".join(str(p) for p in self._parts)
                else:
                    message = b"".join(
                        p if isinstance(p, bytes) else p.encode() for p in self._parts
                    )
                self._parts, self._parts_size = [], 0
                # a fatal error (oversized) has already queued the close
                with contextlib.suppress(RemoteProtocolError):
                    self.core.receive_message(message, now=trio.current_time())
                self._apply()
            elif isinstance(event, Ping):
                if self.ws.state is ConnectionState.OPEN:
                    self.outbox.push_control(self.ws.send(event.response()))
            elif isinstance(event, WsClose):
                # client-initiated close, or a wsproto parse failure (code 1002/1007)
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.outbox.push_control(self.ws.send(event.response()))
                elif self.ws.state is ConnectionState.OPEN:
                    self.outbox.push_control(self.ws.send(WsClose(event.code, event.reason)))
                self._closing = True  # the client is gone: nothing more to send
                return
            if self._closing:
                return

    def _fatal(self, code: int, reason: str) -> None:
        self._send_close(code, reason)

    def _send_close(self, code: int, reason: str) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.outbox.push_control(self.ws.send(WsClose(code, reason)))
        self._closing = True

    def _apply(self) -> None:
        hub = self.server.hub
        while events := self.core.events():
            overflow = False
            for event in events:
                if isinstance(event, SendMessage):
                    if not overflow and not self.outbox.push(text_frame(event.text.encode())):
                        overflow = True
                elif isinstance(event, StreamAdded):
                    hub.add(event.stream, event.identifier, self)
                elif isinstance(event, StreamRemoved):
                    hub.remove(event.stream, event.identifier, self)
                elif isinstance(event, CloseConnection):
                    self._send_close(event.code, event.reason)
                elif isinstance(event, CommandIgnored):
                    self.server.metrics_failed_client_msg += 1
                    log.debug(
                        "ignored command sid=%s command=%r reason=%r",
                        self.sid,
                        event.command,
                        event.detail,
                    )
            if overflow:
                # the client does not read what it asks for: drop it, as for broadcasts
                self.outbox.clear()
                self.server.metrics_slow_clients += 1
                self.core.disconnect("too_slow", reconnect=True)

    async def _await_close_reply(self) -> None:
        """After our close frame, read until the client's close or EOF, bounded."""
        if self.ws.state is not ConnectionState.LOCAL_CLOSING:
            return
        with trio.move_on_after(_CLOSE_WAIT):
            while self.ws.state is ConnectionState.LOCAL_CLOSING:
                try:
                    data = await self.stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                self.ws.receive_data(bytes(data))
                for _event in self.ws.events():
                    pass

    def _unregister(self) -> None:
        hub = self.server.hub
        for identifier, stream in self.core.subscriptions.items():
            hub.remove(stream, identifier, self)
        self.core.subscriptions.clear()
        self.server.sessions.discard(self)
