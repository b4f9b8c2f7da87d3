"""The ASGI application: routes, handshakes and the app's lifecycle (see :mod:`cableway.asgi`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from ..config import Config
from ..node.backend import MemoryBackend, NoBackend
from ..node.fanout import fan_out
from ..node.intake import TOO_LARGE, Invalid, account, invalid_answer, judge, screen
from ..node.node import Node
from ..node.opening import SSE_TOO_LARGE, SessionRules
from ..node.rpc import RpcSession, request_url
from ..node.sids import fresh_sid
from ..ops.logs import WarningGate
from ..ops.metrics import Metrics
from ..protocol.broadcast import Publication, RemoteDisconnect
from ..protocol.broker import MemoryBroker, PresenceEvent
from ..protocol.routes import endpoint_router, endpoint_routes
from ..protocol.sse import SSE_HEADERS, Refusal, SseOpen, cors_headers
from ..rpc.settings import DEFAULT_HEADERS, env_headers
from .http import (
    HEALTH_BODY,
    PROMETHEUS,
    VERSION_HEADER,
    Receive,
    Request,
    Scope,
    Send,
    normal,
    read_body,
    respond,
)
from .inprocess import InProcessRpc
from .session import Session, SseSession, WebSocketSession

__all__ = ["CablewayApp"]

if TYPE_CHECKING:
    from ..channels.application import Application

log = logging.getLogger("cableway.asgi")


class CablewayApp:
    """The Cableway server as an ASGI 3 application (see the module docstring).

    Args:
        config: the same configuration object the standalone server takes.
        http_broadcast: serve ``POST config.http_broadcast_path``. ``None`` (default):
            only when ``"http"`` is a broadcast adapter *and* a ``broadcast_key`` is set,
            since in an ASGI app the path is exposed wherever the app is; publish
            in-process with :meth:`broadcast` instead.

    Attributes:
        hub: stream -> sessions index used by the fan-out.
        sessions: every live session (WebSocket and SSE).
        broker: the in-memory broker (history, restore, presence), or ``None``.
    """

    def __init__(
        self,
        config: Config,
        *,
        http_broadcast: bool | None = None,
        channels: Application | None = None,
    ) -> None:
        redis = [
            name
            for name, used in [
                ("--broker=redis", config.broker == "redis"),
                ("--pubsub=redis", config.pubsub == "redis"),
                (
                    "the redis/redisx broadcast adapters",
                    bool({"redis", "redisx"} & set(config.broadcast_adapters)),
                ),
            ]
            if used
        ]
        if redis:
            # no Redis client on asyncio here: refuse rather than silently serve one process
            raise ValueError(
                f"{', '.join(redis)}: Redis is served by the standalone server "
                "(cableway serve); the ASGI app keeps history in memory"
            )
        if config.rpc is not None:
            # the RPC client runs in the standalone server only (docs/rpc.md)
            raise ValueError(
                "--rpc_host: the ASGI app does not call RPC; run the standalone server "
                "(cableway serve --rpc_host=...) in front of the RPC application"
            )
        self.config = config
        #: application channels answered in this process (no HTTP hop)
        self.rpc = InProcessRpc(channels) if channels is not None else None
        self.broker: MemoryBroker | None = config.new_broker()
        self.metrics = Metrics()
        backend = MemoryBackend(self.broker) if self.broker is not None else NoBackend()
        #: the rules of the node, shared with the trio server (cableway.node)
        self.node: Node[Session, object] = Node(
            backend, self.metrics, fan_out, wall_clock=time.time
        )
        #: how sessions open: settings, handshakes (cableway.node.opening)
        self.session_rules = SessionRules.from_config(
            config,
            backend,
            native_pings=False,  # ASGI cannot send WebSocket pings
        )
        self.hub = self.node.registry
        self.sessions = self.node.sessions
        self.node.serve_gauges(self.metrics)
        if http_broadcast is None:
            http_broadcast = config.broadcast_key is not None
        self.http_broadcast = http_broadcast and "http" in config.broadcast_adapters
        # one listener: the WebSocket paths, SSE, health, metrics and (when on) broadcasts
        serving = {"broadcast": self.http_broadcast, "metrics": True, "api": False}
        routes = endpoint_routes(config, serving.__getitem__, main=True)
        self.router = endpoint_router(tuple((normal(path), kind) for path, kind in routes))
        self.random = random.Random()
        #: a flood of invalid broadcasts costs a few log lines per window, as in the server
        self.broadcast_warnings = WarningGate(log, "invalid broadcast", clock=time.monotonic)
        self._sweeper: asyncio.Task[None] | None = None
        #: max_conn: live sessions; the excess waits before its handshake is answered
        self._slots: asyncio.Semaphore | None = None

    # -- the in-process API ----------------------------------------------------------------

    async def broadcast(
        self,
        stream: str,
        data: str,
        *,
        broadcast_type: str | None = None,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """Publish ``data`` (a string; delivered parsed when it is JSON) to ``stream``.

        Call it on the event loop that serves the app. It does not wait for delivery:
        the message is queued for every subscriber before it returns.
        """
        self.publish(
            [
                Publication(
                    stream,
                    data,
                    exclude_socket=exclude_socket,
                    transient=transient,
                    broadcast_type=broadcast_type,
                )
            ]
        )

    def publish(self, publications: Iterable[Publication]) -> None:
        """Store (when a broker keeps history) and deliver publications, never awaiting
        (:meth:`cableway.node.node.Node.publish`)."""
        self.node.publish(publications)

    def remote_disconnect(self, command: RemoteDisconnect) -> None:
        """Disconnect every session whose identifiers equal the command's."""
        self.node.remote_disconnect(command)

    def publish_presence(self, event: PresenceEvent) -> None:
        self.node.publish_presence(event)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of ``max_conn`` session slots (waits for one when all are taken)."""
        limit = self.config.max_conn
        if limit <= 0:
            yield
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(limit)
        async with self._slots:
            yield

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker's expiry task on the running loop (idempotent).

        Called by the ASGI lifespan and by every request, so a mounted app (which gets no
        lifespan events from Starlette) starts it with its first client.
        """
        backend = self.node.backend
        if backend.sweep_interval < math.inf and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def aclose(self, grace: float | None = None) -> None:
        """Graceful shutdown: every client gets ``server_restart`` (WebSockets close 1001,
        event streams end); waits up to ``grace`` seconds (default ``config.shutdown_timeout``)."""
        sessions = list(self.sessions)
        for session in sessions:
            session.request_close(
                "server_restart", reconnect=True, code=1001, close_reason="Server restart"
            )
        if sessions:
            limit = self.config.shutdown_timeout if grace is None else grace
            await asyncio.wait(
                [asyncio.ensure_future(s.done.wait()) for s in sessions], timeout=limit
            )
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        """Expire history, sessions and presence (once a second), in slices."""
        backend = self.node.backend
        while True:
            await asyncio.sleep(backend.sweep_interval)
            now = time.time()
            for _slice in itertools.count():
                if not self.node.sweep(now):
                    break
                await asyncio.sleep(0)  # let the sessions run between two slices

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        self.start()
        request = Request(scope)
        if kind == "websocket":
            await self._websocket(request, receive, send)
            return
        route = self._route(request)
        if route == "ws":
            # a plain request to the WebSocket path (the trio server says the same)
            await respond(send, 400, b"Bad Request", [(b"sec-websocket-version", b"13")])
        elif route == "broadcast":
            await self._broadcast(request, receive, send)
        elif route == "sse":
            await self._sse(request, receive, send)
        elif route == "metrics":
            body = self.metrics.render_prometheus(self.config.metrics_tags).encode()
            await respond(send, 200, body, content_type=PROMETHEUS)
        elif route == "health":
            await respond(send, 200, HEALTH_BODY, [VERSION_HEADER])
        else:
            await respond(send, 404, b"404 page not found")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _broadcast(self, request: Request, receive: Receive, send: Send) -> None:
        """``POST`` broadcast (spec §11.2): 201, 401, 413, 422, or 400 for bad bodies."""
        refusal = screen(
            request.method, request.headers.get("authorization"), self.config.broadcast_key
        )
        if refusal is not None:
            await respond(send, *refusal)
            return
        limit = self.config.max_broadcast_body
        length = request.headers.get("content-length")
        body = await read_body(receive, limit, declared=() if length is None else (length,))
        if body is None:
            await respond(send, *TOO_LARGE)
            return
        verdict = judge(body)
        account(verdict, self.metrics)
        if isinstance(verdict, Invalid):
            self.broadcast_warnings.warn("invalid broadcast: %s", verdict.detail)
            await respond(send, *invalid_answer(verdict))
            return
        if isinstance(verdict, RemoteDisconnect):
            self.remote_disconnect(verdict)
        else:
            self.publish(verdict)
        await respond(send, 201)

    def _route(self, request: Request) -> str | None:
        """The endpoint of ``request.path`` (patterns as AnyCable-Go routes them,
        :mod:`cableway.protocol.routes`); the trailing slash a ``*`` pattern ends with is
        optional here, as every trailing slash is."""
        route = self.router.lookup(request.path)
        if route is None and request.path != "/":
            route = self.router.lookup(request.path + "/")
        return route

    async def _websocket(self, request: Request, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if self._route(request) != "ws":
            await send({"type": "websocket.close", "code": 1000})  # the server answers 403
            return
        origins = [v for k, v in request.raw_headers if k == b"origin"]
        if self.session_rules.origin_refusal(origins) is not None:
            # ASGI has no status for a refused upgrade: a close before accepting
            await send({"type": "websocket.close", "code": 1008})
            return
        async with self._slot():
            await self._accept_websocket(request, receive, send)

    async def _accept_websocket(self, request: Request, receive: Receive, send: Send) -> None:
        rules = self.session_rules
        opening = rules.websocket_open(
            headers=request.headers,
            query=request.query,
            subprotocols=request.subprotocols,
            fresh_sid=fresh_sid(),
        )
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": opening.subprotocol,
                "headers": [VERSION_HEADER],
            }
        )
        loop = asyncio.get_running_loop()
        sid = opening.sid
        core = rules.websocket_core(
            opening,
            now=loop.time(),
            ping_jitter=self.random.random(),
            delegate=self.rpc is not None,
        )
        state = None
        if self.rpc is not None:
            state = RpcSession(
                sid,
                request_url(
                    request.headers.get("host"),
                    request.full_path,
                    request.query,
                    default_host="localhost",
                ),
                env_headers(request.raw_text_headers(), DEFAULT_HEADERS, request.client),
            )
        await rules.open_websocket(
            core,
            opening,
            application=None if self.rpc is None or state is None else (self.rpc, state),
            noauth=self.config.noauth or self.config.public,
            clock=loop.time,
            wall_clock=time.time,
            metrics=self.metrics,
        )
        await self._run_session(WebSocketSession(self, core, receive, send), state)

    async def _run_session(self, session: WebSocketSession, state: RpcSession | None) -> None:
        session.rpc = state
        session.join()
        session.apply()
        await session.run()

    async def _sse(self, request: Request, receive: Receive, send: Send) -> None:
        """Serve the event stream; returns when it ended."""
        config = self.config
        cors = cors_headers(request.headers.get("origin"), config.allowed_origins)
        rules = self.session_rules
        limit = rules.sse_request(request.method)
        if isinstance(limit, Refusal):
            await respond(send, limit.status, limit.body, cors)
            return
        body = b""
        if limit is not None:
            posted = await read_body(receive, limit)
            if posted is None:
                await respond(send, SSE_TOO_LARGE.status, SSE_TOO_LARGE.body, cors)
                return
            body = posted
        opening = rules.sse_open(
            request.method,
            query=request.query,
            headers=request.headers,
            body=body,
            fresh_sid=fresh_sid(),
            unix_time=time.time(),
            metrics=self.metrics,
        )
        if isinstance(opening, Refusal):
            await respond(send, opening.status, opening.body, cors)
            return
        async with self._slot():
            await self._stream_sse(opening, receive, send, cors)

    async def _stream_sse(
        self, opening: SseOpen, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        core = self.session_rules.sse_core(
            opening, now=asyncio.get_running_loop().time(), ping_jitter=self.random.random()
        )
        if isinstance(core, Refusal):
            # nothing was carried out yet (no hub entry): the core is just dropped
            await respond(send, core.status, core.body, cors)
            return
        session = SseSession(self, core, receive, send, unwrap=opening.unwrap, raw=opening.raw)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*cors, *SSE_HEADERS, VERSION_HEADER],
            }
        )
        session.join()
        session.apply()  # welcome, confirmations, history: queued before live messages
        await session.run()
