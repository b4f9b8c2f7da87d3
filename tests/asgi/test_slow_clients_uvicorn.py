"""A client that stops reading, under a real uvicorn (each WebSocket implementation it ships).

The server's hardening probe, run against the ASGI app: a subscriber stops reading and 8 MB
of broadcasts follow. What the app can do inside ASGI (docs/asgi.md, "Slow clients under an
ASGI server"): uvicorn's ``send()`` waits while its transport buffer is over asyncio's
high-water mark, so the app's outbox bound and its write deadline (each awaited ``send()``
timed on the loop's clock) hold: the session ends as ``too_slow``, nothing more is queued for
it, uvicorn's buffer stays bounded, and the connection is closed (the client sees the end of
the stream once it drains what was already sent).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from cableway.asgi import CablewayApp

from ..integration.helpers import config
from .host import UvicornHost, hosted

PENDING = 64 * 1024  # ws_max_pending_size
WRITE_TIMEOUT = 1.0  # ws_write_timeout
MESSAGE = 8192  # bytes of data per broadcast
FLOOD = 1024  # broadcasts: 8 MB
HIGH_WATER = 64 * 1024  # asyncio's default transport high-water mark (uvicorn keeps it)
CHAT = json.dumps({"channel": "$pubsub", "stream_name": "chat"})


class Client:
    """A WebSocket client on a plain socket with a small receive buffer, read only on demand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.texts: list[str] = []
        self.accepted = False
        self.closed_by_frame = False
        request = Request(host="127.0.0.1", target="/cable", subprotocols=["actioncable-v1-json"])
        self.sock.sendall(self.ws.send(request))

    def read_once(self) -> int:
        """Read what is there (up to 1 MiB); the bytes read (0: the server closed)."""
        data = self.sock.recv(1 << 20)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, TextMessage):
                self.texts.append(event.data)
            elif isinstance(event, CloseConnection):
                self.closed_by_frame = True
        return len(data)

    def read_until(self, count: int) -> None:
        for _ in range(100):  # bounded: a few reads each
            if len(self.texts) >= count:
                return
            assert self.read_once(), "closed early"
        raise AssertionError(f"only {len(self.texts)} messages")

    def send(self, payload: dict[str, str]) -> None:
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(payload))))


def _buffered(host: UvicornHost) -> list[int]:
    """Bytes waiting in uvicorn's transport buffer, per open connection (on its loop)."""

    async def read() -> list[int]:
        return [
            c.transport.get_write_buffer_size()
            for c in host.server.server_state.connections
            if getattr(c, "transport", None) is not None
        ]

    return host.call(read)


@pytest.mark.parametrize("ws", ["wsproto", "websockets-sansio"])
def test_a_client_that_stops_reading_is_dropped_and_its_connection_closed(ws: str) -> None:
    cfg = config(public_streams=True, ws_max_pending_size=PENDING, ws_write_timeout=WRITE_TIMEOUT)
    app = CablewayApp(cfg)
    with hosted(app, ws=ws) as host:
        client = Client(host.port)
        client.read_until(1)  # welcome
        client.send({"command": "subscribe", "identifier": CHAT})
        client.read_until(2)  # confirmation
        assert json.loads(client.texts[1])["type"] == "confirm_subscription"
        (session,) = app.sessions

        async def flood() -> None:  # the client reads nothing from here on
            data = json.dumps("x" * MESSAGE)
            for _ in range(FLOOD):
                await app.broadcast("chat", data)
                await asyncio.sleep(0)

        host.call(flood, timeout=30)  # never waits for the slow client

        async def ended() -> None:
            async with asyncio.timeout(WRITE_TIMEOUT + 10):
                await session.done.wait()

        host.call(ended, timeout=WRITE_TIMEOUT + 15)
        assert not app.sessions
        assert len(app.hub) == 0
        metrics = app.metrics
        assert metrics.value("disconnected_slow_clients_total") == 1
        # its disconnect could not be written either: the write deadline ended the session
        assert metrics.value("timeout_server_msg_total") == 1
        assert metrics.value("server_msg_total") < FLOOD  # the rest was never queued
        for size in _buffered(host):  # uvicorn's own buffer: below high water + one frame
            assert size <= HIGH_WATER + MESSAGE + 1024

        # the client reads again: it gets whole frames, then the end of the connection
        received = 0
        deadline = time.monotonic() + 20
        for _ in range(10_000):  # bounded in count and time
            assert time.monotonic() < deadline, f"no end of stream after {received} bytes"
            n = client.read_once()
            if not n:
                break
            received += n
        else:
            raise AssertionError("the connection was not closed")
        assert received < FLOOD * MESSAGE
        client.sock.close()


def test_an_event_stream_that_stops_reading_is_dropped_and_closed() -> None:
    cfg = config(public_streams=True, ws_max_pending_size=PENDING, ws_write_timeout=WRITE_TIMEOUT)
    app = CablewayApp(cfg)
    with hosted(app) as host:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", host.port))
        sock.sendall(b"GET /events?stream=chat HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        for _ in range(100):  # bounded: the head, the welcome and the confirmation
            if head.count(b"\n\n") >= 3:
                break
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"confirm_subscription" in head
        (session,) = app.sessions

        async def flood() -> None:
            data = json.dumps("x" * MESSAGE)
            for _ in range(FLOOD):
                await app.broadcast("chat", data)
                await asyncio.sleep(0)

        host.call(flood, timeout=30)

        async def ended() -> None:
            async with asyncio.timeout(WRITE_TIMEOUT + 10):
                await session.done.wait()

        host.call(ended, timeout=WRITE_TIMEOUT + 15)
        assert not app.sessions
        metrics = app.metrics
        assert metrics.value("sse_clients_num") == 0
        assert metrics.value("disconnected_slow_clients_total") == 1
        assert metrics.value("timeout_server_msg_total") == 1
        received = 0
        deadline = time.monotonic() + 20
        for _ in range(10_000):  # bounded in count and time
            assert time.monotonic() < deadline, f"no end of stream after {received} bytes"
            data = sock.recv(1 << 20)
            if not data:
                break
            received += len(data)
        else:
            raise AssertionError("the connection was not closed")
        assert received < FLOOD * MESSAGE
        sock.close()
