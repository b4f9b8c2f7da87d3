"""Raw WebSocket frames over a real socket, for the security-table tests."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Event, Request, TextMessage

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def frame(opcode: int, payload: bytes, *, fin: bool = True, length: int | None = None) -> bytes:
    """A client frame masked with a zero key (so the payload goes as is).

    ``length`` overrides the declared length (for lying headers).
    """
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


class RawWs:
    """A wsproto client that parses what the server sends; we write raw frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        self.eof = False

    async def next_event(self) -> Event | None:
        """The next event from the server; None at EOF."""
        while not self.pending:
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
                self.ws.receive_data(None)
            else:
                self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def json(self) -> dict[str, Any] | None:
        """Next protocol message, skipping pings; None on close/EOF."""
        while True:
            event = await self.next_event()
            if event is None or isinstance(event, CloseConnection):
                return None
            if isinstance(event, TextMessage):
                message: dict[str, Any] = json.loads(event.data)
                if message.get("type") != "ping":
                    return message

    async def send_raw(self, data: bytes) -> None:
        # the server may have closed already: what it sent is still readable
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(data)


async def open_raw(port: int, target: str = "/cable") -> RawWs:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = RawWs(stream)
    await stream.send_all(
        client.ws.send(
            Request(host="127.0.0.1", target=target, subprotocols=["actioncable-v1-json"])
        )
    )
    event = await client.next_event()
    assert isinstance(event, AcceptConnection)
    return client
