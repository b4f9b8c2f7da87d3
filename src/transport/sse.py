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
import time
from typing import Protocol

import h11
import trio

from ..node.opening import SSE_PREFLIGHT, SSE_TOO_LARGE, SessionRules
from ..node.rpc import RpcSession, connect_needed, open_event_stream
from ..node.sids import fresh_sid
from ..protocol.connection import CableConnection
from ..protocol.sse import (
    SSE_HEADERS,
    Refusal,
    SseOpen,
    cors_headers,
    message_to_event,
)
from .httpconn import VERSION_HEADER, Conn, Request, drain_body
from .rpc_client import new_rpc_session
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
    gauge = "sse_clients_num"

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

    rules = server.session_rules
    limit = rules.sse_request(request.method)
    if isinstance(limit, Refusal):
        preflight = limit is SSE_PREFLIGHT  # answered, and the connection stays usable
        if preflight:
            await drain_body(conn, 0)
        await conn.respond(limit.status, limit.body, headers=_cors([]), close=not preflight)
        return
    body = await drain_body(conn, limit or 0)
    if body is None and limit is not None:
        await conn.respond(SSE_TOO_LARGE.status, SSE_TOO_LARGE.body, headers=_cors([]), close=True)
        return
    opening = rules.sse_open(
        request.method,
        query=request.query,
        headers=request.headers,
        body=body or b"",
        fresh_sid=fresh_sid(),
        unix_time=time.time(),
        metrics=server.metrics,
    )
    if isinstance(opening, Refusal):
        await conn.respond(opening.status, opening.body, headers=_cors([]))
        return
    rpc_state: RpcSession | None = None
    if server.rpc is not None and config.rpc is not None:  # application channels too
        rpc_state = new_rpc_session(config.rpc, request, conn.stream, opening.sid, config.host)
        core: CableConnection | Refusal = await _open_with_rpc(server, rpc_state, opening)
    else:
        core = rules.sse_core(opening, now=trio.current_time(), ping_jitter=server.random.random())
    if isinstance(core, Refusal):
        await conn.respond(core.status, core.body, headers=_cors([]))
        return

    chunked = conn.h11.their_http_version == b"1.1"
    session = SseSession(
        server, conn.stream, core, unwrap=opening.unwrap, raw=opening.raw, chunked=chunked
    )
    session.rpc = rpc_state
    # the stream is the whole exchange: it ends by closing the connection, so say so
    # (a keep-alive client or proxy must not reuse the socket afterwards)
    headers = _cors([*SSE_HEADERS, VERSION_HEADER, (b"connection", b"close")])
    await conn.send(h11.Response(status_code=200, headers=headers))
    session.join()
    session.apply()  # welcome, confirmations, history: queued before live messages
    await session.run()


async def _open_with_rpc(
    server: SessionMaker, state: RpcSession, opening: SseOpen
) -> CableConnection | Refusal:
    """Connect and subscribe through the application (``cableway.node.rpc``); after a
    refusal, the Disconnect call of a session the application accepted is queued."""
    assert server.rpc is not None
    config = server.config
    rules = server.session_rules
    core = rules.sse_delegating_core(
        opening, now=trio.current_time(), ping_jitter=server.random.random()
    )
    refusal = await open_event_stream(
        server.rpc,
        state,
        core,
        opening,
        connect=connect_needed(
            opening.token, rules.auth, noauth=config.noauth or config.public, restored=False
        ),
        policy=rules.policy,
        now=trio.current_time(),
    )
    if refusal is None:
        return core
    if refusal.status == 401:
        server.metrics.inc("failed_auths_total")
    request = state.disconnect_request()
    if request is not None and server.disconnects is not None:
        server.disconnects.enqueue(state.sid, request)
    log.info("event stream refused sid=%s status=%d", opening.sid, refusal.status)
    return refusal
