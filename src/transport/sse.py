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

import json
import logging
import secrets
import time
from typing import TYPE_CHECKING

import h11
import trio

from ..auth.origin import origin_allowed
from ..protocol.connection import CableConnection
from ..protocol.handshake import (
    Accepted,
    authenticate,
    find_token,
    parse_query,
    ping_settings,
    request_sid,
)
from ..protocol.sse import (
    SSE_HEADERS,
    history_from_request,
    identifier_from_query,
    message_to_event,
    parse_post_body,
)
from .session import Session

if TYPE_CHECKING:
    from .http import Request, _Conn
    from .server import Server

__all__ = ["SseSession", "handle_sse"]

log = logging.getLogger("cableway.sse")

_RAW_VALUES = frozenset({"1", "true", "t", "y"})
_CORS_HEADERS = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Origin, X-Requested-With, X-Request-ID, Content-Type, Accept, X-CSRF-Token, "
        b"Authorization, Last-Event-ID",
    ),
]


class SseSession(Session):
    """One event-stream client."""

    def __init__(
        self,
        server: Server,
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
            self.outbox.push_control(b"0\r\n\r\n")


def cors_headers(request: Request, allowed: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """CORS answer headers (spec §10.5, but never ``*`` together with credentials).

    Without an allow-list any origin may read the stream, without credentials. With
    one, an allowed ``Origin`` is echoed back with ``Allow-Credentials`` (so cookies
    and ``withCredentials`` event sources work); other origins get no
    ``Access-Control-Allow-Origin`` and the browser hides the response.
    """
    out = [*_CORS_HEADERS, (b"vary", b"Origin")]
    if not allowed or "*" in allowed:
        out.append((b"access-control-allow-origin", b"*"))
        return out
    origin = request.headers.get("origin")
    if origin is not None and "," not in origin and origin_allowed(origin, allowed):
        out.append((b"access-control-allow-origin", origin.encode("latin-1")))
        out.append((b"access-control-allow-credentials", b"true"))
    return out


async def handle_sse(server: Server, conn: _Conn, request: Request) -> None:
    """Serve ``/events``; returns when the stream ended (the connection then closes)."""
    from .http import VERSION_HEADER, _drain_body  # import cycle: http routes here

    config = server.config
    cors = cors_headers(request, config.allowed_origins)

    def _cors(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [*cors, *headers]

    if request.method == "OPTIONS":
        await _drain_body(conn, 0)
        await conn.respond(200, headers=_cors([]))
        return
    if request.method not in ("GET", "POST"):
        await conn.respond(405, b"Method Not Allowed", headers=_cors([]), close=True)
        return
    query = parse_query(request.query)
    commands: list[dict[str, object]]
    unwrap, raw = True, False
    try:
        if request.method == "GET":
            await _drain_body(conn, 0)
            identifier = identifier_from_query(query)
            if identifier is None:
                await conn.respond(400, b"Bad Request: no channel", headers=_cors([]))
                return
            command: dict[str, object] = {"command": "subscribe", "identifier": identifier}
            history = history_from_request(query, request.headers.get("last-event-id"))
            if history is not None:
                command["history"] = history
            commands = [command]
            raw = query.get("raw", "").lower() in _RAW_VALUES
        else:
            body = await _drain_body(conn, server.config.max_message_size)
            if body is None:
                await conn.respond(413, b"Payload Too Large", headers=_cors([]), close=True)
                return
            commands = [
                {
                    "command": "subscribe",
                    "identifier": line["identifier"],
                    "history": line.get("history"),
                }
                for line in parse_post_body(body, max_size=server.config.max_message_size)
            ]
            unwrap = False
    except ValueError as exc:
        await conn.respond(400, f"Bad Request: {exc}".encode(), headers=_cors([]))
        return

    sid = request_sid(request.headers.get("x-request-id"), secrets.token_urlsafe(16)[:21])
    token = find_token(
        headers=request.headers, query=query, subprotocols=[], param=config.jwt_param
    )
    outcome = authenticate(token, sid=sid, policy=server.auth_policy, now=time.time())
    if not isinstance(outcome, Accepted):
        server.metrics.inc("failed_auths_total")
        await conn.respond(401, b"Unauthorized", headers=_cors([]))
        return
    interval, precision = ping_settings(
        query, interval=config.ping_interval, precision=config.ping_timestamp_precision
    )
    core = CableConnection(
        sid=sid,
        settings=server.session_settings(interval, precision, extended=False),
        now=trio.current_time(),
        ping_jitter=server.random.random(),
    )
    core.accept(outcome.identifiers)
    for command in commands:
        if command.get("history") is None:
            command.pop("history", None)
        core.receive_message(json.dumps(command), now=trio.current_time())
        if command["identifier"] not in core.subscriptions:
            await conn.respond(400, b"Bad Request: subscription rejected", headers=_cors([]))
            return

    chunked = conn.h11.their_http_version == b"1.1"
    session = SseSession(server, conn.stream, core, unwrap=unwrap, raw=raw, chunked=chunked)
    await conn.send(h11.Response(status_code=200, headers=_cors([*SSE_HEADERS, VERSION_HEADER])))
    server.sessions.add(session)
    server.metrics.inc("sse_clients_num")
    try:
        session.apply()  # welcome, confirmations, history: queued before live messages
        await session.run()
    finally:
        server.metrics.dec("sse_clients_num")
