"""Output on real sockets: direct writes, and the writer task a full socket needs.

A session writes straight to its socket; only when the kernel does not take everything
does it start a writer task (in the server's nursery), which waits for the socket and
ends once the outbox is empty. A client that reads late gets everything, in order; a
client that goes away ends its session.
"""

from __future__ import annotations

import json

import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Request, TextMessage

from cableway.protocol.broadcast import Publication
from cableway.transport.server import Server
from cableway.transport.session import Session

from .helpers import config, running, turbo_identifier

PAYLOAD = "x" * 60_000


async def _subscribe(server: Server, stream_name: str) -> tuple[trio.SocketStream, WSConnection]:
    """A raw WebSocket client subscribed to ``stream_name`` (welcome and confirmation read)."""
    sock = await trio.open_tcp_stream("127.0.0.1", server.main_port)
    ws = WSConnection(ConnectionType.CLIENT)
    await sock.send_all(ws.send(Request(host="x", target="/cable")))
    identifier = turbo_identifier(stream_name)
    seen: list[str] = []
    while not any("confirm_subscription" in text for text in seen):
        data = await sock.receive_some(65536)
        assert data
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                command = {"command": "subscribe", "identifier": identifier}
                await sock.send_all(ws.send(TextMessage(data=json.dumps(command))))
            elif isinstance(event, TextMessage):
                seen.append(event.data)
    return sock, ws


def _session(server: Server) -> Session:
    (session,) = server.sessions
    return session


async def _fill_until_queued(server: Server, session: Session) -> int:
    """Publish until the kernel stops taking the client's bytes; how many were sent."""
    sent = 0
    while not session.outbox.size:
        assert sent < 500, "the socket never filled up"
        server.publish([Publication("slow", json.dumps([sent, PAYLOAD]))])
        sent += 1
    return sent


async def test_a_late_reader_gets_everything_in_order_from_the_writer() -> None:
    async with running(config(ws_max_pending_size=64 << 20)) as server:
        sock, ws = await _subscribe(server, "slow")
        session = _session(server)
        sent = await _fill_until_queued(server, session)
        for extra in range(3):  # queued behind: the writer sends them in order
            server.publish([Publication("slow", json.dumps([sent + extra, PAYLOAD]))])
        sent += 3
        got: list[int] = []
        parts: list[str] = []
        with trio.fail_after(30):
            while len(got) < sent:
                data = await sock.receive_some(1 << 20)
                assert data
                ws.receive_data(data)
                for event in ws.events():
                    if not isinstance(event, TextMessage):
                        continue
                    parts.append(event.data)
                    if event.message_finished:
                        message = json.loads("".join(parts))
                        parts.clear()
                        if message.get("type") != "ping":
                            got.append(message["message"][0])
        assert got == list(range(sent))
        assert not session.outbox.size
        await sock.aclose()


async def test_a_client_gone_with_bytes_queued_ends_its_session() -> None:
    async with running(config(ws_max_pending_size=64 << 20)) as server:
        sock, _ws = await _subscribe(server, "slow")
        session = _session(server)
        await _fill_until_queued(server, session)
        sock.socket.setsockopt(
            trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        await sock.aclose()  # a reset: the writer's send fails
        with trio.fail_after(10):
            await session.wait_closed()
        assert not server.sessions
