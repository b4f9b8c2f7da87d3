"""The WebSocket session: wsproto after an h11 upgrade (see :mod:`.session`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, Ping, Pong, TextMessage
from wsproto.events import CloseConnection as WsClose

from ..protocol.connection import CableConnection
from ..protocol.errors import RemoteProtocolError
from ..protocol.messages import to_wire
from ..protocol.wsframe import text_frame
from .session import Session

if TYPE_CHECKING:
    from .server import Server

__all__ = ["WebSocketSession"]

_READ_SIZE = 65536
_CLOSE_WAIT = 2.0


class WebSocketSession(Session):
    """One WebSocket client."""

    wire_kind = "ws"

    def __init__(
        self,
        server: Server,
        stream: trio.abc.Stream,
        core: CableConnection,
        *,
        trailing_data: bytes = b"",
    ) -> None:
        super().__init__(server, stream, core)
        self.ws = Connection(ConnectionType.SERVER, trailing_data=trailing_data)
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        self._broken = False

    def encode(self, text: str) -> bytes:
        return text_frame(to_wire(text))

    def _on_start(self) -> None:
        # frames that came in the same read as the upgrade request (h11's trailing
        # data, handed to wsproto at construction) are waiting already
        self._process()

    def _on_data(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._process()

    def _process(self) -> None:
        limit = self.server.config.max_message_size
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                part = event.data if isinstance(event.data, str) else bytes(event.data)
                self._parts.append(part)
                # the limit is in bytes: a text part's UTF-8 size (ASCII: its length)
                if isinstance(part, str) and not part.isascii():
                    self._parts_size += len(part.encode("utf-8", "surrogatepass"))
                else:
                    self._parts_size += len(part)
                if self._parts_size > limit:
                    self._close_transport(1009, "message too big")
                    self._closing = True
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
                self.apply()
            elif isinstance(event, Ping):
                # pongs count against the outbox bound like everything else: a client
                # flooding pings while reading nothing is a slow client
                if self.ws.state is ConnectionState.OPEN and not self.outbox.push(
                    self.ws.send(event.response())
                ):
                    self.outbox.clear()
                    self.server.metrics.inc("disconnected_slow_clients_total")
                    self.core.disconnect("too_slow", reconnect=True)
                    self.apply()
                    return
            elif isinstance(event, Pong):
                self.core.note_activity()
            elif isinstance(event, WsClose):
                # client-initiated close, or a wsproto parse failure (code 1002/1007)
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.outbox.push_control(self.ws.send(event.response()))
                elif self.ws.state is ConnectionState.OPEN:
                    # a frame wsproto could not parse: its parser stays failed, so the
                    # client's close reply could not be read either; close at once
                    self.outbox.push_control(self.ws.send(WsClose(event.code, event.reason)))
                    self._broken = True
                self._closing = True  # the client is gone: nothing more to send
                return
            if self._closing:
                return

    def _native_ping(self, payload: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.outbox.push_control(self.ws.send(Ping(payload)))

    def _abort_bytes(self) -> bytes:
        if self.ws.state is ConnectionState.OPEN:
            return self.ws.send(WsClose(1011, "Internal Error"))
        return b""

    def _close_transport(self, code: int, reason: str) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.outbox.push_control(self.ws.send(WsClose(code, reason)))

    async def _after_close(self) -> None:
        """After our close frame, read until the client's close or EOF, bounded."""
        if self._broken or self.ws.state is not ConnectionState.LOCAL_CLOSING:
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
