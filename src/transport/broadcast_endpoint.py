"""The broadcast endpoint (spec §11.2): ``POST /_broadcast`` from the application.

Unremarkable requests are served from the raw buffer without h11
(:func:`fast_requests`, with the strict parser of :mod:`cableway.protocol.httphead`);
every other one goes through h11 (:func:`broadcast`). Both judge the body with the one
intake of the node layer (:mod:`cableway.node.intake`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import h11
import trio

from ..auth.keys import check_bearer
from ..node.intake import TOO_LARGE, Invalid, account, invalid_answer, judge, screen
from ..ops.metrics import Metrics
from ..protocol.broadcast import Publication, RemoteDisconnect
from ..protocol.httphead import (
    NEED_MORE,
    USE_GENERAL,
    RequestHead,
    head_size,
    parse_head,
    reason_phrase,
)
from .httpconn import (
    CREATED_CLOSE,
    CREATED_KEEP_ALIVE,
    Conn,
    FrontDoor,
    Request,
    drain_body,
    h11_answer,
)
from .scaleout import Acknowledgement, acknowledged

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "REFUSED",
    "REFUSED_CLOSE",
    "REFUSED_KEEP_ALIVE",
    "BroadcastHost",
    "broadcast",
    "fast_requests",
    "wait_body",
]

log = logging.getLogger("cableway.http")

#: the answer to a broadcast whose publishing was not acknowledged (``--pubsub=redis``
#: or the workers' hub unavailable), what is logged then, and the bytes the fast path
#: writes for it (what :meth:`.Conn.respond` writes through h11)
REFUSED = (503, b"Service Unavailable: Redis pub/sub is unavailable")
REFUSED_LOG = "broadcast refused: Redis pub/sub is unavailable"
_REFUSED_EVENTS: list[h11.Event] = [
    h11.Response(
        status_code=REFUSED[0],
        headers=[
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(REFUSED[1])),
        ],
        reason=reason_phrase(REFUSED[0]),
    ),
    h11.Data(data=REFUSED[1]),
    h11.EndOfMessage(),
]
REFUSED_KEEP_ALIVE = h11_answer(_REFUSED_EVENTS, close=False)
REFUSED_CLOSE = h11_answer(_REFUSED_EVENTS, close=True)


class BroadcastHost(Protocol):
    """What the broadcast endpoint needs from the node."""

    @property
    def config(self) -> Config: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def front_door(self) -> FrontDoor: ...

    @property
    def idle_scopes(self) -> set[trio.CancelScope]: ...

    @property
    def handshake_timeout(self) -> float: ...

    @property
    def max_broadcast_body(self) -> int: ...

    @property
    def publishing_waits(self) -> bool:
        """Whether publishing waits for an acknowledgement (Redis, the workers' hub): the
        answer then waits for :meth:`publish_confirmed` or :meth:`remote_command`."""
        ...

    def publish(self, publications: Iterable[Publication]) -> None: ...

    def remote_disconnect(self, command: RemoteDisconnect) -> None: ...

    @property
    def confirm_timeout(self) -> float:
        """How long a publication waits for its acknowledgement (then 503)."""
        ...

    def post_publications(self, publications: Iterable[Publication]) -> Acknowledgement: ...

    def post_remote(self, command: RemoteDisconnect) -> Acknowledgement: ...

    async def publish_confirmed(self, publications: Iterable[Publication]) -> bool: ...

    async def remote_command(self, command: RemoteDisconnect) -> bool: ...


async def fast_requests(server: BroadcastHost, conn: Conn) -> bool:
    """Serve unremarkable broadcasts from the raw buffer, without h11.

    A request is served here when its whole head is in the buffer and
    :func:`~cableway.protocol.httphead.parse_head` accepts it, it is a ``POST`` to the
    broadcast path with the right key, its body is in the buffer too, within the size
    limit, and it parses: everything then ends in ``201``, as with h11, and the answer
    is written with the others before the connection next waits for the client.
    When publishing waits for an acknowledgement (``--pubsub=redis``, the workers' hub:
    :attr:`BroadcastHost.publishing_waits`), every request already in the buffer is
    published at once, in order, and they are answered in order once acknowledged
    (before the connection waits for the client or hands over to h11; no deadline but
    the acknowledgement's own meanwhile): ``201``, or ``503`` for one refused, byte for
    byte as h11 would. A pipelining client thus costs one round trip per read, not
    one per request.
    A body not read whole yet is waited for here (:func:`wait_body`: the body
    deadline and budget of h11's path, with its 408 and 503). Anything else (another
    path or method, a missing key, a body too large, a bad body, a head h11 must
    judge, the end of input in a head or a body) is handed over to h11 with every byte
    read, so it gets the answer it always got.

    The deadline is the same as with h11: the whole head within the handshake
    deadline (armed only when the connection has to wait), shutdown cancelling a
    connection that waits for one; then the body within the body timeout.

    Returns True when the connection must close (the client closed it, or asked to
    with ``Connection: close``), False once h11 has taken over the current request.
    """
    config = server.config
    path = config.http_broadcast_path.encode()
    key = config.broadcast_key
    limit = server.max_broadcast_body
    max_head = conn.max_head
    deadline = conn.deadline
    idle = server.idle_scopes
    metrics = server.metrics
    publish = server.publish
    waits = server.publishing_waits
    #: publishing waits: the requests published and not answered yet, in order
    unanswered: list[Unanswered] = []
    created_raw = conn.created_raw
    armed = False  # the head deadline runs for the request being awaited
    topped = False  # the buffer was topped up since the connection last waited
    # the last head served here, byte for byte, and its parse: an application's client
    # repeats its head (only Content-Length varies, within a few values), and the same
    # bytes are the same head with the same verdict (head_size's end: the bytes end with
    # their first empty line; parse_head and the checks below: functions of the bytes
    # and of this call's settings), so a repeat skips finding, parsing and checking it
    known = b""
    known_head: RequestHead | None = None
    try:
        while True:
            buf = conn.buf
            if known_head is not None and buf.startswith(known):
                size = len(known)
                head = known_head
                armed = False  # (as below: the head is in)
            else:
                size = head_size(buf, max_head, conn.scanned)
                if size == NEED_MORE:
                    if unanswered:
                        await _answer(server, conn, unanswered)
                        armed = False  # (the wait below arms the head deadline anew)
                    if conn.eof:
                        if buf:
                            conn.hand_over()  # h11: a request cut short
                            return False
                        return True
                    await conn.wait_head(idle, server.handshake_timeout, armed=armed)
                    armed = True
                    topped = False
                    continue
                # the head is in: its deadline is left set (nothing awaits before the
                # next wait re-arms it or wait_body sets the body's; lifted on leaving)
                armed = False
                parsed = None if size == USE_GENERAL else parse_head(buf, size)
                if (
                    parsed is None
                    or parsed.method != b"POST"
                    or parsed.target.partition(b"?")[0] != path
                    or (
                        key is not None
                        and not check_bearer(parsed.headers.get(b"authorization"), key)
                    )
                    or parsed.content_length > limit
                ):
                    if unanswered:
                        await _answer(server, conn, unanswered)
                    conn.hand_over()
                    return False
                head = known_head = parsed
                known = bytes(buf[:size])
            end = size + head.content_length
            if len(buf) < end:
                # the body was cut by the read size: its rest is likely read already, once
                # per wait for the client (so a client that never stops sending cannot
                # starve the others); a body still incomplete is waited for here, as h11
                # would (wait_body: body deadline and budget, else h11 serves it)
                if not topped and conn.top_up():
                    topped = True
                    continue
                if unanswered:
                    await _answer(server, conn, unanswered)
                if not await wait_body(conn, end, head.content_length):
                    conn.hand_over()
                    return False
                topped = False
            verdict = judge(bytes(buf[size:end]))
            if type(verdict) is list:  # publications: the usual verdict, tested first
                account(verdict, metrics)
                if waits:
                    pending = server.post_publications(verdict)
                else:
                    publish(verdict)
            elif isinstance(verdict, RemoteDisconnect):
                account(verdict, metrics)
                if waits:
                    pending = server.post_remote(verdict)
                else:
                    server.remote_disconnect(verdict)
            else:  # Invalid
                if unanswered:
                    await _answer(server, conn, unanswered)
                conn.release()  # (h11's path holds the budget again while it reads)
                conn.hand_over()  # h11's path judges it again, logs, counts and answers 400
                return False
            if conn.held:
                conn.release()  # the body budget a waited-for body held
            del buf[:end]
            conn.scanned = 0
            if waits:
                ends = trio.current_time() + server.confirm_timeout
                unanswered.append((pending, ends, head.keep_alive))
                if not head.keep_alive:
                    await _answer(server, conn, unanswered)
                    return True
                continue
            if not head.keep_alive:
                created_raw(CREATED_CLOSE)
                return True
            created_raw(CREATED_KEEP_ALIVE)
    finally:
        deadline.deadline = math.inf


#: a request published while publishing waits: what tells whether it was accepted,
#: until when it may wait (trio time), and whether the connection stays open after it
Unanswered = tuple[Acknowledgement, float, bool]


async def _answer(server: BroadcastHost, conn: Conn, unanswered: list[Unanswered]) -> None:
    """Raw mode, publishing waits: the answers held back are written (they must not wait
    for Redis or the hub), then each request of ``unanswered`` gets its answer, in
    order, once acknowledged (held back with the others: ``201``, or ``503`` when it was
    refused or not acknowledged in time). No head or body deadline runs meanwhile, as on
    h11's path: a request being served is not cut."""
    conn.deadline.deadline = math.inf
    await conn.flush()
    for pending, ends, keep_alive in unanswered:
        if await acknowledged(pending, ends):
            conn.created_raw(CREATED_KEEP_ALIVE if keep_alive else CREATED_CLOSE)
        else:
            log.warning(REFUSED_LOG)
            conn.created_raw(REFUSED_KEEP_ALIVE if keep_alive else REFUSED_CLOSE)
    unanswered.clear()


async def wait_body(conn: Conn, end: int, size: int) -> bool:
    """Raw mode: the parsed head of a request whose body (``size`` bytes) ends at
    ``end`` in ``conn.buf`` is read, not all of its body: wait for the rest here, as
    :func:`.drain_body` would through h11, with the same outcomes: answers held back
    are written first; the body holds its share of the node-wide body budget until the
    request is answered (:meth:`.Conn.release`; :class:`.Overloaded` past it, 503); it
    must arrive within the body timeout (the connection's loop answers 408).

    True once ``conn.buf`` holds the whole body; False, nothing held, when the input
    ended first (h11 is to answer the cut request, as before).
    """
    conn.reserve(size)
    deadline = conn.deadline
    conn.in_body = True
    deadline.deadline = trio.current_time() + conn.body_timeout
    try:
        await conn.flush()
        while len(conn.buf) < end and not conn.eof:
            await conn.fill()
    finally:
        deadline.deadline = math.inf
        # (after a timeout the connection's loop answers 408: it checks in_body)
        conn.in_body = deadline.cancel_called
    if len(conn.buf) < end:
        conn.release()
        return False
    return True


async def broadcast(server: BroadcastHost, conn: Conn, request: Request, key: str | None) -> None:
    """``POST /_broadcast`` (spec §11.2): 201, 401, 413, 422, or 400 for bad bodies.

    503 when ``--pubsub=redis`` and Redis did not accept the publication (unreachable).
    ``key``: the bearer key asked for (``--broadcast_key``; the REST API's own for
    ``<api_path>/publish``), or None for none.
    """
    refusal = screen(request.method, request.headers.get("authorization"), key)
    if refusal is not None:
        status, text = refusal
        allow = [(b"allow", b"POST")] if status == 422 else None
        await conn.respond(status, text, headers=allow, close=True)
        return
    # the body has the same deadline as the head: a trickled body is cut (408); it
    # holds its share of the node's body budget until it is answered
    body = await drain_body(conn, server.max_broadcast_body, hold=True)
    if body is None:
        # refused before buffering it (the respond reads and drops a bounded amount of
        # what the client is still sending, so that it reads the 413, not a reset)
        await conn.respond(*TOO_LARGE, close=True)
        return
    verdict = judge(body)
    account(verdict, server.metrics)
    if isinstance(verdict, Invalid):
        server.front_door.broadcast_warnings.warn("invalid broadcast: %s", verdict.detail)
        await conn.respond(*invalid_answer(verdict))
        return
    if server.publishing_waits:
        await conn.flush()  # the answers before this one must not wait for Redis
    if isinstance(verdict, RemoteDisconnect):
        accepted = await server.remote_command(verdict)
    else:
        accepted = await server.publish_confirmed(verdict)
    if not accepted:
        # --pubsub=redis and Redis is unreachable: refuse rather than drop it silently
        log.warning(REFUSED_LOG)
        await conn.respond(*REFUSED)
        return
    conn.created()
