"""The WebSocket session after an h11 upgrade (see :mod:`.session`).

Client frames of the common kind (a whole, final, masked text or binary frame, under the
message size limit, valid UTF-8 for text) are parsed by the pure
:func:`cableway.protocol.wsframe.parse_client_frame`; anything else (a
partial or fragmented frame, a control frame, an invalid one) hands the connection over
to wsproto for good, from that frame on. Until then the session keeps no wsproto
object, so an idle connection costs that much less memory. The commonest close is
answered without wsproto too (:func:`fast_close_reply`: a whole masked close frame with
no status or ``1000``/``1001``, the close of a browser tab or a client's
``disconnect()``): the reply is wsproto's, byte for byte, and the session then holds a
shared wsproto connection in the ``CLOSED`` state (:data:`_CLOSED`), as it would after
wsproto had answered (``fuzz/fuzz_ws_close_fast.py`` compares the two).

With permessage-deflate negotiated (``--enable_ws_compression``,
:class:`~cableway.protocol.handshake.Deflate`) the session's :meth:`encode` compresses
(:class:`~cableway.protocol.wsframe.Deflater`, shared by every session with the same
window, so the fan-out compresses a broadcast once per wire kind); a whole compressed
client frame is inflated by the fast path, and wsproto gets an inbound-only extension
(:class:`_InboundDeflate`) that inflates the rest with the same bounded
:class:`~cableway.protocol.wsframe.Inflater`.
"""

from __future__ import annotations

import os

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, Ping, Pong, TextMessage
from wsproto.events import CloseConnection as WsClose
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..protocol.connection import CableConnection
from ..protocol.handshake import Deflate
from ..protocol.messages import to_wire
from ..protocol.wsframe import (
    Deflater,
    FrameRefused,
    Inflater,
    deflater,
    parse_client_frame,
    text_frame,
)
from .session import Session, SessionHost

__all__ = ["WebSocketSession", "fast_close_reply"]

_READ_SIZE = 65536
_CLOSE_WAIT = 2.0

#: the close codes :func:`fast_close_reply` answers (the rest go through wsproto)
_FAST_CLOSE_CODES = {1000: b"\x88\x02\x03\xe8", 1001: b"\x88\x02\x03\xe9"}
_CLOSE_NO_STATUS = b"\x88\x00"


def fast_close_reply(data: bytes, i: int) -> bytes | None:
    """The server's reply to the client close frame at ``data[i:]``, when it is whole,
    masked, final, with no RSV bit and either no payload or exactly the code ``1000``
    or ``1001`` (no reason): wsproto's reply to it, byte for byte. ``None``: anything
    else (wsproto decides)."""
    if len(data) < i + 6 or data[i] != 0x88:
        return None
    length = data[i + 1]
    if length == 0x80:  # masked, no payload: wsproto replies without a status
        return _CLOSE_NO_STATUS
    if length != 0x82 or len(data) < i + 8:
        return None
    code = ((data[i + 6] ^ data[i + 2]) << 8) | (data[i + 7] ^ data[i + 3])
    return _FAST_CLOSE_CODES.get(code)


def _closed_connection() -> Connection:
    """A wsproto server connection that has answered a client's close (``CLOSED``)."""
    ws = Connection(ConnectionType.SERVER)
    ws.receive_data(b"\x88\x80\x00\x00\x00\x00")
    for event in ws.events():
        if isinstance(event, WsClose):
            ws.send(event.response())
    assert ws.state is ConnectionState.CLOSED
    return ws


#: what a session's wsproto connection is after :func:`fast_close_reply`, shared: in
#: the ``CLOSED`` state nothing is sent or read through it (every use checks the state)
_CLOSED = _closed_connection()


class _InboundDeflate(Extension):
    """permessage-deflate for wsproto, inbound only: the server's own data frames never
    go through wsproto (its control frames are never compressed). Each compressed
    message is inflated by a fresh bounded :class:`Inflater` (the client was asked for
    ``client_no_context_takeover``); too big closes 1009, bad data 1007."""

    name = "permessage-deflate"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: the compressed message being received, if any
        self._inflater: Inflater | None = None
        #: the current frame's payload is compressed data
        self._compressed = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:  # a server never offers
        return False

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._compressed = False
        elif opcode is Opcode.CONTINUATION:
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._compressed = self._inflater is not None
        else:
            self._inflater = Inflater(self.limit) if rsv.rsv1 else None
            self._compressed = rsv.rsv1
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._compressed or self._inflater is None:
            return data
        try:
            return self._inflater.feed(data)
        except FrameRefused as exc:
            return CloseReason(exc.code)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        inflater = self._inflater
        if not fin or not self._compressed or inflater is None:
            return None
        self._inflater = None
        try:
            return inflater.finish()
        except FrameRefused as exc:
            return CloseReason(exc.code)


class WebSocketSession(Session):
    """One WebSocket client."""

    __slots__ = (
        "_broken",
        "_deflater",
        "_parts",
        "_parts_size",
        "_trailing",
        "_ws",
        "deflate",
        "wire_kind",
    )

    def __init__(
        self,
        server: SessionHost,
        stream: trio.abc.Stream,
        core: CableConnection,
        *,
        trailing_data: bytes = b"",
        deflate: Deflate | None = None,
    ) -> None:
        super().__init__(server, stream, core)
        #: the negotiated permessage-deflate, if any
        self.deflate = deflate
        self._deflater: Deflater | None = None
        self.wire_kind = "ws"
        if deflate is not None:
            self._deflater = deflater(deflate.server_max_window_bits)
            self.wire_kind = deflate.wire_kind
        #: wsproto's connection, once a frame needed it (see the module docstring)
        self._ws: Connection | None = None
        self._trailing = trailing_data
        self._parts: list[str | bytes] | None = None  # a message's fragments, if any
        self._parts_size = 0
        self._broken = False

    @property
    def ws(self) -> Connection:
        """wsproto's connection, created on first use (in a clean state: every frame
        before it was whole and has been processed)."""
        ws = self._ws
        if ws is None:
            extensions: list[Extension] = []
            if self.deflate is not None:
                extensions.append(_InboundDeflate(self.server.config.max_message_size))
            ws = self._ws = Connection(ConnectionType.SERVER, extensions)
        return ws

    def encode(self, text: str) -> bytes:
        if self._deflater is not None:
            return self._deflater.frame(to_wire(text))
        return text_frame(to_wire(text))

    def _on_start(self) -> None:
        # frames that came in the same read as the upgrade request (h11's trailing data)
        data, self._trailing = self._trailing, b""
        if data:
            self._on_data(data)

    def _on_data(self, data: bytes) -> None:
        if self._ws is None:
            rest = self._fast_frames(data)
            if rest is None:
                return
            if self._closing:
                # as if wsproto had buffered what followed: the close wait may read it
                self.ws.receive_data(rest)
                return
            data = rest
        self.ws.receive_data(data)
        self._process()

    def _receive_message(self, message: str | bytes) -> None:
        """Hand one client message to the core (:meth:`.NodeSession.take_message`)."""
        self.take_message(message, now=trio.current_time())

    def _fast_frames(self, data: bytes) -> bytes | None:
        """Process the whole, simple frames at the start of ``data``
        (:func:`cableway.protocol.wsframe.parse_client_frame`).

        Returns ``None`` when everything was processed, else the bytes from the first
        frame left to wsproto (or left unread because the session is closing).
        """
        limit = self.server.config.max_message_size
        deflate = self.deflate is not None
        end = len(data)
        i = 0
        while i < end:
            try:
                parsed = parse_client_frame(data, i, limit, deflate=deflate)
            except FrameRefused as exc:  # a compressed message that cannot be one
                self._close_transport(exc.code, exc.reason)
                self._broken = True  # nothing after this frame is read
                self._closing = True
                return None
            if parsed is None:
                reply = fast_close_reply(data, i)
                if reply is None:
                    return data[i:]
                # as wsproto would: answer, and read nothing after the client's close
                self._ws = _CLOSED
                self._closing = True
                self._reply_close(reply)
                return None
            message, i = parsed
            self._receive_message(message)
            self.apply()
            if self._closing:
                return data[i:]
        return None

    def _reply_close(self, reply: bytes) -> None:
        """Send the reply to the client's close: straight to the socket when nothing is
        queued, else behind what is. A client that closed with a reset is gone by then:
        the failed write is counted as the writer counts it, without starting one."""
        fd = self._fd
        if fd >= 0 and not self._writer_active and not self.outbox.size:
            try:
                sent = os.write(fd, reply)
            except BlockingIOError:
                sent = 0
            except OSError:  # the peer is gone: nothing more can be sent
                self.write_failed(timed_out=False)
                return
            if sent:
                self.server.metrics.inc("data_sent_total", sent)
            if sent == len(reply):
                return
            if sent:
                self._put_back(memoryview(reply)[sent:])
                return
        self._send_control(reply)

    def _process(self) -> None:
        limit = self.server.config.max_message_size
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                part = event.data if isinstance(event.data, str) else bytes(event.data)
                parts = self._parts
                if parts is None:
                    parts = self._parts = []
                parts.append(part)
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
                if len(parts) == 1:
                    message = parts[0]
                elif isinstance(event, TextMessage):
                    message = "".join(str(p) for p in parts)
                else:
                    message = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
                self._parts, self._parts_size = None, 0
                self._receive_message(message)
                self.apply()
            elif isinstance(event, Ping):
                # pongs count against the outbox bound like everything else: a client
                # flooding pings while reading nothing is a slow client
                if self.ws.state is ConnectionState.OPEN:
                    if not self._admit():
                        self.too_slow()
                        self.core.disconnect("too_slow", reconnect=True)
                        self.apply()
                        return
                    self._send_control(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                self.core.note_activity()
            elif isinstance(event, WsClose):
                # client-initiated close, or a wsproto parse failure (code 1002/1007)
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send_control(self.ws.send(event.response()))
                elif self.ws.state is ConnectionState.OPEN:
                    # a frame wsproto could not parse: its parser stays failed, so the
                    # client's close reply could not be read either; close at once
                    self._send_control(self.ws.send(WsClose(event.code, event.reason)))
                    self._broken = True
                self._closing = True  # the client is gone: nothing more to send
                return
            if self._closing:
                return

    def _native_ping(self, payload: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self._send_control(self.ws.send(Ping(payload)))

    def _abort_bytes(self) -> bytes:
        if self.ws.state is ConnectionState.OPEN:
            return self.ws.send(WsClose(1011, "Internal Error"))
        return b""

    def _close_transport(self, code: int, reason: str) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self._send_control(self.ws.send(WsClose(code, reason)))

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
