"""The WebSocket upgrade: the handshake's checks, the ``101`` answer and the session it
opens, for both front-door paths.

A connection storm (a deploy, a network blip: every client reconnects at once) is paid
per connection, and h11's generality costs more than the rest of an upgrade. So on the
main listener an unremarkable upgrade is served without h11 (:func:`fast_upgrade`): the
head is read into the raw buffer of :class:`~.httpconn.Conn`, parsed by the strict
:func:`~cableway.protocol.httphead.parse_upgrade_head`, and when it is a ``GET`` to a
WebSocket path that the checks accept, the ``101`` is written from pre-built bytes; when
nothing is awaited before the session starts (no application, no restore) and the
connection is a plain socket, it is queued first in the session's outbox, so that it and
the ``welcome`` leave in one write.
Anything else (another path, a head h11 must judge, a refusal of any kind) is handed over
to h11 with every byte read, so it gets the answer it always got. Both paths go through
:func:`handshake_refusal` and :func:`open_session`, so their decisions are the same.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import h11
import trio
from wsproto.utilities import generate_accept_token

from ..node.sids import fresh_sid
from ..protocol.handshake import WebSocketOpen
from ..protocol.httphead import NEED_MORE, USE_GENERAL, head_size, parse_upgrade_head
from ..protocol.routes import Router
from .httpconn import VERSION_HEADER, Conn, Request
from .rpc_client import new_rpc_session
from .sse import SessionMaker
from .ws import WebSocketSession

__all__ = [
    "UpgradeHost",
    "answer_101",
    "fast_upgrade",
    "handshake_refusal",
    "open_session",
    "upgrade_at_once",
    "upgrade_headers",
]


class UpgradeHost(SessionMaker, Protocol):
    """What the upgrade needs from the node (the trio server implements it)."""

    @property
    def idle_scopes(self) -> set[trio.CancelScope]: ...

    @property
    def handshake_timeout(self) -> float: ...


def handshake_refusal(request: Request) -> int | None:
    """``400`` for a request that is not a WebSocket handshake (method, ``Upgrade``,
    ``Connection``, a key), ``426`` for a version other than 13; ``None``: go on."""
    if (
        request.method != "GET"
        or "websocket" not in request.headers.get("upgrade", "").lower()
        or "upgrade" not in [t.lower() for t in request.header_list("connection")]
        or not request.headers.get("sec-websocket-key")
    ):
        return 400
    if request.headers.get("sec-websocket-version") != "13":
        return 426
    return None


def upgrade_headers(key: str, opening: WebSocketOpen) -> list[tuple[bytes, bytes]]:
    """The headers of the ``101`` that accepts ``opening`` (a handshake with ``key``)."""
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", generate_accept_token(key.encode("latin-1"))),
        VERSION_HEADER,
    ]
    if opening.subprotocol is not None:
        headers.append((b"sec-websocket-protocol", opening.subprotocol.encode()))
    if opening.deflate is not None:
        headers.append((b"sec-websocket-extensions", opening.deflate.response.encode()))
    return headers


_STATUS_101 = b"HTTP/1.1 101 Switching Protocols\r\n"


def answer_101(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of a ``101`` with ``headers``, as :meth:`.Conn.send` writes it with h11
    (Go's reason phrase); ``tests/transport/test_upgrade_fast.py`` compares them."""
    return (
        _STATUS_101
        + b"".join([name + b": " + value + b"\r\n" for name, value in headers])
        + (b"\r\n")
    )


async def open_session(
    server: UpgradeHost, conn: Conn, request: Request, *, head: int | None = None
) -> WebSocketSession | None:
    """Accept a handshake :func:`handshake_refusal` passed: the origin check, the ``101``
    and the identified session (not running yet), or ``None`` after a refusal.

    Args:
        head: the size of the request head in the raw buffer when h11 has not seen
            the request (the fast path), else ``None``.
    """
    rules = server.session_rules
    refusal = rules.origin_refusal([v for k, v in request.raw_headers if k == b"origin"])
    if refusal is not None:
        if head is not None:
            conn.hand_over()  # h11 reads the head it would have read, and answers
            await conn.next_event()
        await conn.respond(*refusal, close=True)
        await conn.stream.aclose()
        return None
    opening = rules.websocket_open(
        headers=request.headers,
        query=request.query,
        subprotocols=request.header_list("sec-websocket-protocol"),
        fresh_sid=fresh_sid(),
    )
    headers = upgrade_headers(request.headers["sec-websocket-key"], opening)
    # the fast path's 101 rides the session's first write (with the welcome) when
    # nothing is awaited before the session starts (no application, no restore) and
    # that write is made at once, before the first read (a socket: see Session._flush)
    deferred = (
        head is not None
        and server.rpc is None
        and opening.restore_sid is None
        and isinstance(conn.stream, trio.SocketStream)
    )
    if head is None:
        await conn.send(h11.InformationalResponse(status_code=101, headers=headers))
        trailing = bytes(conn.h11.trailing_data[0])
    else:
        trailing = bytes(conn.buf[head:])
        conn.buf = bytearray()
        if deferred:
            await conn.flush()  # answers held back for earlier requests go first
        else:
            await conn.send_raw(answer_101(headers))

    config = server.config
    sid = opening.sid
    core = rules.websocket_core(
        opening,
        now=trio.current_time(),
        ping_jitter=server.random.random(),
        delegate=server.rpc is not None,
    )
    rpc_state = None
    if server.rpc is not None and config.rpc is not None:
        rpc_state = new_rpc_session(config.rpc, request, conn.stream, sid, config.host)
    await rules.open_websocket(
        core,
        opening,
        application=None if server.rpc is None or rpc_state is None else (server.rpc, rpc_state),
        noauth=config.noauth or config.public,
        clock=trio.current_time,
        wall_clock=time.time,
        metrics=server.metrics,
    )
    session = WebSocketSession(
        server, conn.stream, core, trailing_data=trailing, deflate=opening.deflate
    )
    session.rpc = rpc_state
    if deferred:
        # in front and never dropped (as a frame already on the wire): see Outbox
        session.outbox.push_started(answer_101(headers))
    return session


async def fast_upgrade(
    server: UpgradeHost, conn: Conn, router: Router[str]
) -> WebSocketSession | bool:
    """Serve an unremarkable WebSocket upgrade from the raw buffer, without h11.

    The head must arrive within the handshake deadline (armed when the connection has
    to wait; shutdown cancels a connection that waits for one), as with h11. It is
    served here when :func:`~cableway.protocol.httphead.parse_upgrade_head` accepts it
    (no body), its path routes to a WebSocket endpoint and :func:`handshake_refusal`
    passes it. Anything else is handed over to h11 with every byte read.

    Returns the session (not running yet), ``True`` when the connection must close (the
    client closed it before sending anything, or the origin was refused), ``False``
    once h11 has taken over the current request.
    """
    deadline = conn.deadline
    idle = server.idle_scopes
    max_head = conn.max_head
    armed = False
    while True:
        buf = conn.buf
        size = head_size(buf, max_head, conn.scanned)
        if size != NEED_MORE:
            break
        if conn.eof:
            if buf:
                conn.hand_over()  # h11: a request cut short
                return False
            return True
        await conn.wait_head(idle, server.handshake_timeout, armed=armed)
        armed = True
    deadline.deadline = math.inf
    return await _serve_head(server, conn, router, size)


async def upgrade_at_once(
    server: UpgradeHost, conn: Conn, router: Router[str]
) -> WebSocketSession | bool | None:
    """:func:`fast_upgrade` when the connection's first read, tried at once, holds the
    whole head (the common case: the client sent it with its connection), which needs no
    deadline, so the caller may call this before it enters the connection's deadline
    scope (trio's cancel scope and its deadline cost a few microseconds per
    connection). ``None``: not so (nothing read yet, or only part of a head): serve the
    connection as before, under its deadline, with what was read."""
    if not conn.read_first():
        return None
    size = head_size(conn.buf, conn.max_head, conn.scanned)
    if size == NEED_MORE:
        return None  # (or the end of input: fast_upgrade says what it means)
    return await _serve_head(server, conn, router, size)


async def _serve_head(
    server: UpgradeHost, conn: Conn, router: Router[str], size: int
) -> WebSocketSession | bool:
    """Serve the whole head of ``size`` bytes in the raw buffer (see :func:`fast_upgrade`)."""
    buf = conn.buf
    parsed = None if size == USE_GENERAL else parse_upgrade_head(buf, size)
    if parsed is None:
        conn.hand_over()
        return False
    request = Request.from_head(parsed.method, parsed.target, parsed.headers)
    if router.lookup(request.path) != "ws" or handshake_refusal(request) is not None:
        conn.hand_over()
        return False
    session = await open_session(server, conn, request, head=size)
    return True if session is None else session
