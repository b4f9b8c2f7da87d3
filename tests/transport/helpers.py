"""Drive the transport over in-memory streams (no sockets), under trio's testing clock."""

from __future__ import annotations

import json
import socket
from typing import Any

import trio
import trio.testing
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Request,
    TextMessage,
)

from cableway.auth.signed_streams import sign_stream_name
from cableway.config import Config
from cableway.protocol.connection import CableConnection
from cableway.protocol.events import SendMessage
from cableway.protocol.handshake import websocket_open
from cableway.transport.fanout import fan_out
from cableway.transport.http import handle_connection
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

TURBO_KEY = "s3Krit"
CONFIG = Config(
    host="127.0.0.1",
    port=0,
    turbo_streams=True,
    turbo_streams_secret=TURBO_KEY,
    broadcast_key="k",
    http_broadcast_port=0,
)


def turbo_identifier(stream: str) -> str:
    signed = sign_stream_name(stream, TURBO_KEY)
    return json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed})


class Client:
    """A wsproto client over one end of an in-memory stream pair."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        self.closed: CloseConnection | None = None

    async def handshake(self, target: str = "/cable") -> None:
        await self.stream.send_all(
            self.ws.send(Request(host="test", target=target, subprotocols=["actioncable-v1-json"]))
        )
        event = await self.next_event()
        assert isinstance(event, AcceptConnection)

    async def next_event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def recv(self) -> dict[str, Any] | None:
        """Next JSON message (pings skipped); None once the server closed."""
        parts: list[str] = []
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                self.closed = event
                return None
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if not event.message_finished:
                    continue
                message: dict[str, Any] = json.loads("".join(parts))
                parts = []
                if message.get("type") != "ping":
                    return message

    async def send(self, payload: object) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))


async def connect(
    nursery: trio.Nursery, server: Server, *, lockstep: bool = False
) -> tuple[Client, trio.abc.Stream]:
    """Open a served connection; returns the client and the server-side stream."""
    pair = trio.testing.lockstep_stream_pair() if lockstep else trio.testing.memory_stream_pair()
    client_end, server_end = pair
    nursery.start_soon(lambda: handle_connection(server, server_end, main=True))
    return Client(client_end), server_end


def handle(server: Server, stream: trio.abc.Stream) -> Any:
    return handle_connection(server, stream, main=True)


def read_available(peer: socket.socket) -> bytes:
    """Everything a non-blocking socket holds now (until it would block or is closed)."""
    data = b""
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def nonblocking_pair(
    peers: list[socket.socket] | None = None,
) -> tuple[socket.socket, socket.socket]:
    """A connected pair of non-blocking sockets, (the server's end, the client's end);
    both are added to ``peers`` (when given) for the test to close."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    if peers is not None:
        peers += [ours, peer]
    return ours, peer


def accepted_core(
    server: Server,
    *,
    query: str = "",
    sid: str = "s1",
    jitter: float = 0.0,
    protocol: str = "actioncable-v1-json",
) -> CableConnection:
    """The core of a WebSocket session of ``server`` as its upgrade opens it (3 s pings,
    second precision), its connection accepted with an empty identity; its welcome is
    still in its events (taken, or written by the session when it starts)."""
    opening = websocket_open(
        headers={},
        query=query,
        subprotocols=[protocol],
        fresh_sid=sid,
        jwt_param="jid",
        ping_interval=3.0,
        ping_precision="s",
    )
    core = server.session_rules.websocket_core(opening, now=0.0, ping_jitter=jitter)
    core.accept("{}")
    return core


def socket_stream(ours: socket.socket) -> trio.SocketStream:
    """A trio stream over the server's end of a :func:`nonblocking_pair`."""
    return trio.SocketStream(trio.socket.from_stdlib_socket(ours))


def writable_session(
    server: Server, peers: list[socket.socket], query: str = "", jitter: float = 0.0
) -> WebSocketSession:
    """A WebSocket session on a new socket pair (its peer appended to ``peers``), its
    welcome written and read as a running session's would be, so that it is writable
    now, and filed with the server's timer task."""
    ours, peer = nonblocking_pair(peers)
    core = accepted_core(server, query=query, sid=f"s{len(peers)}", jitter=jitter)
    welcome = [e.text for e in core.events() if isinstance(e, SendMessage)]
    session = WebSocketSession(server, socket_stream(ours), core)
    for text in welcome:  # written as a running session writes it: writable now after it
        frame = session.encode(text)
        assert frame is not None
        session.push_frame(frame)
    assert session._writable  # so that its pings take the timer task's common tick
    read_available(peer)
    server.schedule(session)
    return session


def fan_out_at(when: float, sessions: list[WebSocketSession], text: str) -> tuple[int, int]:
    """One broadcast of ``text`` fanned out to ``sessions`` at ``when`` on trio's
    (virtual) clock: (deliveries, bytes sent)."""

    async def main() -> tuple[int, int]:
        clock.jump(when - trio.current_time())
        return fan_out(sessions, "x", [text], [None], None)

    clock = trio.testing.MockClock()
    return trio.run(main, clock=clock)


def server_texts(data: bytes) -> list[str]:
    """The text messages in a server's frames ``data``, parsed as a client would; every
    frame must be a whole text message."""
    ws = Connection(ConnectionType.CLIENT)
    ws.receive_data(data)
    out = []
    for event in ws.events():
        assert isinstance(event, TextMessage)
        assert event.message_finished
        out.append(event.data)
    return out
