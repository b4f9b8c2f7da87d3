"""The h11 front door: one port serves WebSocket upgrades and plain HTTP.

Every TCP connection starts here. The request head must arrive within the handshake
deadline (over the whole head, not per read, so trickling bytes does not help a
slowloris). Then the request is routed by path (literal, or a pattern as AnyCable-Go routes
it: :mod:`cableway.protocol.routes`): the WebSocket path(s) (upgrade
to :mod:`.ws`), the health path, the SSE path (:mod:`.sse`), the metrics path, the
broadcast path when this listener serves it (:mod:`.broadcast_endpoint`), the REST API
(:mod:`.api_endpoint`) when it does, or ``404``.
The connection itself (h11, the raw buffer, bodies, refusals) is :mod:`.httpconn`.

On a listener that serves broadcasts, unremarkable ``POST`` requests to the broadcast
path are served without h11 (:func:`.broadcast_endpoint.fast_requests`); on the main
listener otherwise, unremarkable WebSocket upgrades are (:func:`.upgrade.fast_upgrade`);
every other request is h11's.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Protocol

import h11
import trio

from ..protocol.routes import Router, endpoint_router, endpoint_routes
from .api_endpoint import ApiHost, presence, publish
from .broadcast_endpoint import broadcast, fast_requests
from .demo import handle_demo
from .httpconn import (
    HEALTH_BODY,
    RETRY_AFTER,
    VERSION_HEADER,
    Conn,
    FrontDoor,
    Overloaded,
    Request,
    bad_request,
    discard_body,
    refuse,
)
from .sse import handle_sse
from .upgrade import UpgradeHost, fast_upgrade, handshake_refusal, open_session, upgrade_at_once
from .ws import WebSocketSession

__all__ = ["CONNECTION_TASK", "FrontDoor", "HttpHost", "Request", "handle_connection", "serve_http"]

log = logging.getLogger("cableway.http")

#: the health answer's header under ``--workers``: ``<workers up>/<workers configured>``
WORKERS_HEADER = b"cableway-workers"

#: the name of every connection's task (one string: trio would make one per task from
#: its function, memory per idle connection)
CONNECTION_TASK = "cableway.transport.server.Server._handle"


class HttpHost(ApiHost, UpgradeHost, Protocol):
    """What the front door needs from the node (the trio server implements it)."""

    @property
    def max_header_bytes(self) -> int: ...

    @property
    def routers(self) -> dict[str, Router[str]]:
        """Each listener role's endpoint router, made once (:func:`_router`)."""
        ...

    def serves(self, role: str, what: str) -> bool:
        """Whether a listener of ``role`` serves ``what`` (``broadcast``, ``metrics``,
        ``api``)."""
        ...

    async def metrics_values(self) -> dict[str, float] | None:
        """``--workers``: every worker's metrics summed; None: this process's own."""
        ...

    async def workers_up(self) -> tuple[int, int] | None:
        """``--workers``: (workers up, workers configured); None: not a worker."""
        ...


async def handle_connection(
    server: HttpHost, stream: trio.abc.Stream, *, main: bool, role: str | None = None
) -> None:
    """Serve one TCP connection until it closes; never raises.

    Args:
        main: whether this is the main listener (WebSocket, health) rather than the
            separate broadcast listener.
    """
    session = await serve_http(server, stream, role or ("main" if main else "broadcast"))
    if session is not None:
        await session.run()


async def serve_http(
    server: HttpHost, stream: trio.abc.Stream, role: str
) -> WebSocketSession | None:
    """The HTTP side of one TCP connection: serve its requests until it closes (the
    stream is closed here) or upgrades to a WebSocket; never raises.

    Returns the upgraded session, joined, for the caller to await its
    :meth:`~.session.Session.run` at once (it closes the stream): in the caller's own
    frame, so that an idle WebSocket parks no frame of this module (memory per
    connection). The HTTP side (h11 state, the request and its headers) is gone by then.
    """
    session = None
    try:
        session = await _serve_http(server, stream, role)
        if session is not None:
            session.join()
        return session
    finally:
        if session is None:
            # also covers a cancellation before a session took the stream over
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()


async def _serve_http(
    server: HttpHost, stream: trio.abc.Stream, role: str
) -> WebSocketSession | None:
    """Serve HTTP requests until the connection closes or upgrades to a WebSocket.

    Returns the upgraded session, not yet running, or ``None``.
    """
    config = server.config
    router = _router(server, role)
    fast = (
        server.serves(role, "broadcast")
        and router.lookup(config.http_broadcast_path) == "broadcast"
    )
    # the main listener's upgrades have a fast path too (unless its broadcasts do)
    upgrades = role == "main" and not fast
    conn = Conn(
        stream,
        server.max_header_bytes,
        fast=fast or upgrades,
        door=server.front_door,
        body_timeout=server.handshake_timeout,
    )
    try:
        # an upgrade whose head came whole with the first read needs no deadline scope
        early = await upgrade_at_once(server, conn, router) if upgrades else None
        if early is not None and early is not False:
            await conn.flush()
            return None if early is True else early
        with conn.deadline:
            session = await _serve_requests(server, conn, role, router, upgrades=upgrades)
            await conn.flush()  # answers held back behind the last requests
            return session
        if conn.in_body:  # the deadline passed while a body trickled in
            await refuse(conn, 408, b"Request Timeout")
    except h11.RemoteProtocolError as exc:
        await bad_request(conn, exc.error_status_hint)
    except Overloaded:
        # every byte of the node's body budget is taken by bodies being received
        door = server.front_door
        door.budget_warnings.warn(
            "request refused with 503: %d bytes of request bodies in flight, the budget is %d "
            "(--max_bodies_in_flight)",
            door.body_bytes,
            door.body_limit,
        )
        await refuse(
            conn,
            503,
            b"Service Unavailable: too many request bodies in flight",
            headers=[(b"retry-after", RETRY_AFTER)],
        )
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
    except h11.LocalProtocolError:
        log.debug("h11 state error; closing connection")
    finally:
        conn.release()
    return None


async def _serve_requests(
    server: HttpHost, conn: Conn, role: str, router: Router[str], *, upgrades: bool
) -> WebSocketSession | None:
    config = server.config
    main = role == "main"
    timeout = server.handshake_timeout
    deadline = conn.deadline
    idle = server.idle_scopes
    while True:
        if conn.raw:  # the fast path of this listener: upgrades, or else broadcasts
            if not upgrades:
                if await fast_requests(server, conn):
                    return None
            else:
                upgraded = await fast_upgrade(server, conn, router)
                if upgraded is True:
                    return None
                if upgraded is not False:
                    return upgraded
        # (after the fast path, h11 has every byte of the current request read so far)
        # the whole head must arrive within the deadline; shutdown cancels the
        # connections that wait for one
        deadline.deadline = trio.current_time() + timeout
        idle.add(deadline)
        try:
            event = await conn.next_event()
        finally:
            idle.discard(deadline)
        deadline.deadline = math.inf
        if not isinstance(event, h11.Request):
            return None
        request = Request(event)
        route = router.lookup(request.path)
        if route == "ws":
            return await _websocket(server, conn, request)
        if route == "broadcast":
            await broadcast(server, conn, request, config.broadcast_key)
        elif route == "api_publish":
            await publish(server, conn, request)
        elif route == "api_presence":
            await presence(server, conn, request)
        elif route == "sse":
            # a refusal leaves the connection usable; a stream ends it (see below)
            await handle_sse(server, conn, request)
        elif route == "metrics":
            await discard_body(conn)
            values = await server.metrics_values()
            await conn.respond(
                200,
                server.metrics.render_prometheus(config.metrics_tags, values).encode(),
                content_type=b"text/plain; version=0.0.4; charset=utf-8",
            )
        elif route == "health":
            await discard_body(conn)
            headers = [VERSION_HEADER]
            workers = await server.workers_up()
            if workers is not None:
                headers.append((WORKERS_HEADER, b"%d/%d" % workers))
            await conn.respond(200, HEALTH_BODY, headers=headers)
        elif main and config.demo and await handle_demo(config, conn, request):
            pass  # the demo page and its assets (--demo)
        else:
            await discard_body(conn)
            await conn.respond(404, b"404 page not found")
        conn.release()
        # the next request only when both sides are done with this one (h11 decides:
        # an answer with Connection: close, HTTP/1.0, an event stream that ended...)
        if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
            return None
        conn.next_cycle()


def _router(server: HttpHost, role: str) -> Router[str]:
    """The endpoints a listener of ``role`` serves, by path, routed as AnyCable-Go does
    (the route table: :func:`cableway.protocol.routes.endpoint_routes`); made once per
    role (it depends on the node's configuration only), not per connection."""
    routers = server.routers
    router = routers.get(role)
    if router is None:
        serves = functools.partial(server.serves, role)
        router = routers[role] = endpoint_router(
            endpoint_routes(server.config, serves, main=role == "main")
        )
    return router


async def _websocket(server: HttpHost, conn: Conn, request: Request) -> WebSocketSession | None:
    """The WebSocket handshake; the upgraded session (not running yet), or ``None``."""
    status = handshake_refusal(request)
    if status == 400:
        await discard_body(conn)
        await conn.respond(
            400, b"Bad Request", headers=[(b"sec-websocket-version", b"13")], close=True
        )
        await conn.stream.aclose()
        return None
    if status is not None:
        await conn.respond(
            426, b"Upgrade Required", headers=[(b"sec-websocket-version", b"13")], close=True
        )
        await conn.stream.aclose()
        return None
    return await open_session(server, conn, request)
