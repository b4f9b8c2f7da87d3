"""The Server-Sent Events endpoint (spec §10): one subscription stream per request.

The request is mapped to subscribe commands (GET query or ``Last-Event-ID``, or a POST
body of JSON lines), authenticated like a WebSocket, and subscribed *before* answering:
a rejected subscription is a ``400``, a bad token a ``401``, and nothing of the
buffered output is sent. Then ``200`` and the events: welcome, confirmations, history,
live messages and pings, until the client goes away or the server shuts down.

Events are written as HTTP/1.1 chunks built by hand (the framing depends only on the
payload, so one broadcast becomes the same bytes for every SSE client of a kind), or
close-delimited for HTTP/1.0 clients.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from typing import Protocol

import h11
import trio

from ..node.opening import SessionRules
from ..protocol.connection import CableConnection
from ..protocol.sse import (
    SSE_HEADERS,
    Refusal,
    cors_headers,
    message_to_event,
)
from .httpconn import VERSION_HEADER, Conn, Request, drain_body
from .session import Session, SessionHost

__all__ = ["SessionMaker", "SseSession", "handle_sse"]

log = logging.getLogger("cableway.sse")


class SessionMaker(SessionHost, Protocol):
    """What an endpoint that opens sessions (SSE, WebSocket) needs from the node."""

    @property
    def session_rules(self) -> SessionRules: ...

    @property
    def random(self) -> random.Random: ...


class SseSession(Session):
    """One event-stream client."""

    __slots__ = ("chunked", "raw", "unwrap", "wire_kind")

    def __init__(
        self,
        server: SessionHost,
        stream: trio.abc.Stream,
        core: CableConnection,
        *,
        unwrap: bool,
        raw: bool,
        chunked: bool,
    ) -> None:
        super().__init__(server, stream, core)
        self.unwrap = unwrap
        self.raw = raw
        self.chunked = chunked
        self.wire_kind = f"sse:{int(unwrap)}{int(raw)}{int(chunked)}"

    def encode(self, text: str) -> bytes | None:
        event = message_to_event(text, unwrap=self.unwrap, raw=self.raw)
        if event is None or not self.chunked:
            return event
        return b"%x\r\n%b\r\n" % (len(event), event)

    def _on_data(self, data: bytes) -> None:
        """An event-stream client sends nothing after its request; ignore it."""

    def _close_transport(self, code: int, reason: str) -> None:
        if self.chunked:
            self._send_control(b"0\r\n\r\n")


async def handle_sse(server: SessionMaker, conn: Conn, request: Request) -> None:
    """Serve ``/events``; returns when the stream ended (the connection then closes)."""
    config = server.config
    cors = cors_headers(request.headers.get("origin"), config.allowed_origins)

    def _cors(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [*cors, *headers]

    if request.method == "OPTIONS":
        await drain_body(conn, 0)
        await conn.respond(200, headers=_cors([]))
        return
    if request.method not in ("GET", "POST"):
        await conn.respond(405, b"Method Not Allowed", headers=_cors([]), close=True)
        return
    if request.method == "GET":
        body: bytes | None = await drain_body(conn, 0)
    else:
        body = await drain_body(conn, config.max_message_size)
        if body is None:
            await conn.respond(413, b"Payload Too Large", headers=_cors([]), close=True)
            return
    rules = server.session_rules
    opening = rules.sse_open(
        request.method,
        query=request.query,
        headers=request.headers,
        body=body or b"",
        fresh_sid=secrets.token_urlsafe(16)[:21],
        unix_time=time.time(),
        metrics=server.metrics,
    )
    if isinstance(opening, Refusal):
        await conn.respond(opening.status, opening.body, headers=_cors([]))
        return
    core = rules.sse_core(opening, now=trio.current_time(), ping_jitter=server.random.random())
    if isinstance(core, Refusal):
        await conn.respond(core.status, core.body, headers=_cors([]))
        return

    chunked = conn.h11.their_http_version == b"1.1"
    session = SseSession(
        server, conn.stream, core, unwrap=opening.unwrap, raw=opening.raw, chunked=chunked
    )
    # the stream is the whole exchange: it ends by closing the connection, so say so
    # (a keep-alive client or proxy must not reuse the socket afterwards)
    headers = _cors([*SSE_HEADERS, VERSION_HEADER, (b"connection", b"close")])
    await conn.send(h11.Response(status_code=200, headers=headers))
    server.node.sessions.add(session)
    server.metrics.inc("sse_clients_num")
    try:
        session.apply()  # welcome, confirmations, history: queued before live messages
        await session.run()
    finally:
        server.metrics.dec("sse_clients_num")
