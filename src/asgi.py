"""Cableway as an ASGI 3 application: the sans-IO core driven by asyncio.

:class:`CablewayApp` serves, from one :class:`~cableway.config.Config`, what the trio server
serves on its main port: the Action Cable WebSocket path(s), Server-Sent Events at
``config.sse_path``, ``POST`` broadcasts at ``config.http_broadcast_path`` and
``config.health_path``. Every protocol decision is taken by :mod:`cableway.protocol` and
:mod:`cableway.auth`, exactly as in the trio driver (:mod:`cableway.transport`); this
module only carries the core's events out on asyncio. No trio is imported on this path.

Theory of operation
-------------------

* One :class:`_Session` per client: a :class:`~cableway.protocol.connection.CableConnection`,
  a byte-bounded :class:`_Outbox` and two tasks: the *reader* (``receive()`` -> core) and
  the *writer* (outbox -> ``send()``, each send under ``ws_write_timeout``). The core's
  ``next_deadline()`` is kept armed as one ``loop.call_at`` timer per session (pings, pong
  deadline, held-message release). The core's clock is ``loop.time()``.
* Fan-out (:meth:`CablewayApp.publish`) never awaits: a publication is encoded once per
  distinct identifier and once per kind of session, and the same object is queued for
  every subscriber of that kind; an outbox over ``ws_max_pending_size`` disconnects its
  client as ``too_slow``.
* History, restore and presence come from the app's own
  :class:`~cableway.protocol.broker.MemoryBroker` (``config.broker == "memory"``), swept
  once a second by a task started with the first request (or by the ASGI lifespan).

Routes are matched on the path *below* the mount point (``scope["path"]`` minus
``scope["root_path"]``), so ``app.mount("/anycable", CablewayApp(config))`` in Starlette or
FastAPI serves ``/anycable/cable``, ``/anycable/events`` and so on. A trailing slash is
ignored and an empty route path counts as ``/``. See ``docs/asgi.md``.

Differences from the trio server, all due to ASGI: the ASGI server does the HTTP and
WebSocket framing (so "encode once" shares the message text, not the frame bytes), a
refused WebSocket (bad origin, unknown path) is answered ``403`` by the ASGI server, there
are no native WebSocket pings (``enable_native_pings`` is ignored), the broadcast path is
served on the same port as everything else (``http_broadcast_port`` is ignored), and
``/metrics`` is not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from . import __version__
from .auth.keys import check_bearer
from .auth.origin import origin_allowed
from .config import Config
from .protocol import messages, service
from .protocol.broadcast import EncodedBroadcast, Publication, RemoteDisconnect, parse_broadcast
from .protocol.broker import MemoryBroker, PresenceEvent
from .protocol.connection import CableConnection, SessionSettings
from .protocol.errors import RemoteProtocolError
from .protocol.events import (
    CloseConnection,
    CommandIgnored,
    HistoryRequest,
    NativePing,
    PresenceRequest,
    Publish,
    ReleaseHeld,
    SendMessage,
    SessionChanged,
    StreamAdded,
    StreamRemoved,
)
from .protocol.handshake import Accepted, Restored, identify, websocket_open
from .protocol.hub import Hub
from .protocol.routes import endpoint_router
from .protocol.sse import (
    SSE_HEADERS,
    Refusal,
    cors_headers,
    message_to_event,
    sse_connection,
    sse_open,
)

__all__ = ["CablewayApp"]

log = logging.getLogger("cableway.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

VERSION_HEADER = (b"x-anycable-version", f"cableway-{__version__}".encode())
HEALTH_BODY = b"Ah, ha, ha, ha, stayin' alive, stayin' alive."
_TEXT = b"text/plain; charset=utf-8"
#: a wire item: what one protocol message becomes for one kind of session, with its size
_Wire = tuple[str | bytes, int]


class _Outbox:
    """Pending wire items of one session, bounded in bytes; pushing never awaits."""

    __slots__ = ("_closed", "_items", "_ready", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: list[str | bytes] = []
        self._ready = asyncio.Event()
        self._closed = False

    def push(self, item: str | bytes, size: int) -> bool:
        """Queue ``item``; ``False`` (nothing queued) when over the bound or closed."""
        if self._closed or (self.max_bytes and self.size + size > self.max_bytes):
            return False
        self.push_control(item, size)
        return True

    def push_control(self, item: str | bytes, size: int) -> None:
        """Queue past the bound (the ``disconnect`` message after an overflow)."""
        if not self._closed:
            self._items.append(item)
            self.size += size
            self._ready.set()

    def clear(self) -> None:
        self._items.clear()
        self.size = 0

    def close(self) -> None:
        """Refuse further pushes; the writer still gets what is queued."""
        self._closed = True
        self._ready.set()

    async def take(self) -> list[str | bytes]:
        """Everything pending (waiting for some); ``[]`` once closed and empty."""
        while not self._items:
            if self._closed:
                return []
            await self._ready.wait()
            self._ready.clear()
        items, self._items = self._items, []
        self.size = 0
        return items


class _Session:
    """One client. Subclasses speak WebSocket or SSE over ASGI messages."""

    #: sessions of one kind get the same wire item for the same message
    wire_kind = "?"

    def __init__(self, app: CablewayApp, core: CableConnection, receive: Receive, send: Send):
        self.app = app
        self.core = core
        self.sid = core.sid
        self.receive = receive
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.outbox = _Outbox(app.config.ws_max_pending_size)
        #: (code, reason) once the core closed the session: sent after the outbox drained
        self.close_with: tuple[int, str] | None = None
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._held: dict[str, list[tuple[int | None, _Wire]]] = {}
        self._held_size = 0
        self.done = asyncio.Event()

    def __hash__(self) -> int:
        return id(self)

    # -- per kind ------------------------------------------------------------------------

    def encode(self, text: str) -> _Wire | None:
        """The wire item of one protocol message for this kind of session (None: drop)."""
        raise NotImplementedError

    async def _read(self) -> None:
        """Read from the client until it goes away."""
        raise NotImplementedError

    async def _write(self, items: list[str | bytes]) -> None:
        raise NotImplementedError

    async def _write_close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    # -- called from elsewhere (fan-out, shutdown, remote disconnect) ---------------------

    def push_frame(self, wire: _Wire) -> None:
        """Queue a shared wire item; on overflow disconnect the client as ``too_slow``."""
        if self._closing:
            return
        if not self.outbox.push(*wire):
            self.outbox.clear()
            self.request_close("too_slow", reconnect=True)

    def hold(self, identifier: str, offset: int | None, wire: _Wire) -> None:
        """Keep a live message of a restored subscription until its history is in."""
        self._held_size += wire[1]
        limit = self.outbox.max_bytes
        if limit and self._held_size > limit:
            self._held.clear()
            self._held_size = 0
            self.request_close("too_slow", reconnect=True)
            return
        self._held.setdefault(identifier, []).append((offset, wire))

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        """Send ``disconnect`` and close, soon (never inside another session's fan-out)."""
        if self._closing:
            return
        self._closing = True  # refuse further frames; the disconnect goes in next

        def close_now() -> None:
            self.core.disconnect(reason, reconnect=reconnect, code=code, close_reason=close_reason)
            self.apply()

        self.loop.call_soon(close_now)

    # -- the session ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the client leaves or the session closed; never raises (but cancel).

        A bug costs this session only: it is logged once and the client gets a 1011 close
        (the end of the stream for SSE), as in the trio driver.
        """
        self.app.sessions.add(self)
        reader = asyncio.ensure_future(self._read())
        writer = asyncio.ensure_future(self._writer())
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                self.fail(reader.exception())
                # let the writer send the 1011 close, bounded by the write deadline
                await asyncio.wait({writer}, timeout=self.app.config.ws_write_timeout + 1.0)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            self._cancel_timer()
            self._unregister()
            self.done.set()

    def fail(self, error: BaseException | None) -> None:
        """An unexpected error: log it, drop what is queued, close with 1011."""
        log.error("unexpected error in session sid=%s", self.sid, exc_info=error)
        self._closing = True
        self.close_with = (1011, "Internal Error")
        self.outbox.clear()
        self.outbox.close()

    async def _writer(self) -> None:
        timeout = self.app.config.ws_write_timeout or None
        try:
            while items := await self.outbox.take():
                async with asyncio.timeout(timeout):
                    await self._write(items)
            if self.close_with is not None:
                async with asyncio.timeout(timeout):
                    await self._write_close(*self.close_with)
        except (TimeoutError, OSError):
            log.debug("write failed sid=%s", self.sid)
        except Exception as error:  # a bug, or an ASGI server refusing a message
            log.error("unexpected error writing sid=%s", self.sid, exc_info=error)

    def apply(self) -> None:
        """Carry out what the core asked for, until it asks for nothing more."""
        app = self.app
        while events := self.core.events():
            overflow = False
            for event in events:
                if isinstance(event, SendMessage):
                    wire = self.encode(event.text)
                    if wire is not None and not overflow and not self.outbox.push(*wire):
                        overflow = True
                elif isinstance(event, StreamAdded):
                    app.hub.add(event.stream, event.identifier, self)
                elif isinstance(event, StreamRemoved):
                    app.hub.remove(event.stream, event.identifier, self)
                    self._drop_held(event.identifier)
                elif isinstance(event, ReleaseHeld):
                    after = event.after
                    for offset, wire in self._drop_held(event.identifier):
                        if after is None or offset is None or offset > after:
                            self.push_frame(wire)
                elif isinstance(event, CloseConnection):
                    self.close_with = (event.code, event.reason)
                    self._closing = True
                    self.outbox.close()
                elif isinstance(event, NativePing):
                    pass  # ASGI has no WebSocket ping message
                elif isinstance(event, Publish):
                    app.publish([event.publication])
                elif isinstance(event, HistoryRequest):
                    app.answer_history(self.core, event)
                elif isinstance(event, PresenceRequest):
                    app.answer_presence(self.core, event)
                elif isinstance(event, SessionChanged):
                    if app.broker is not None:
                        app.broker.save_session(event.sid, event.snapshot)
                elif isinstance(event, CommandIgnored):
                    log.debug(
                        "ignored command sid=%s command=%r reason=%r",
                        self.sid,
                        event.command,
                        event.detail,
                    )
            if overflow:
                # the client does not read what it asks for: drop it, as for broadcasts
                self.outbox.clear()
                self.core.disconnect("too_slow", reconnect=True)
        self._arm_timer()

    def receive_message(self, message: str | bytes) -> None:
        """One client message into the core, then carry out its events."""
        with contextlib.suppress(RemoteProtocolError):  # fatal: the close is queued
            self.core.receive_message(message, now=self.loop.time())
        self.apply()

    def _arm_timer(self) -> None:
        deadline = self.core.next_deadline()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        try:
            self.core.handle_timer(self.loop.time(), unix_time=time.time())
            self.apply()
        except Exception as error:
            self.fail(error)

    def _drop_held(self, identifier: str) -> list[tuple[int | None, _Wire]]:
        items = self._held.pop(identifier, [])
        self._held_size -= sum(wire[1] for _, wire in items)
        return items

    def _unregister(self) -> None:
        app = self.app
        for identifier, stream in self.core.subscriptions.items():
            app.hub.remove(stream, identifier, self)
        self.core.subscriptions.clear()
        app.sessions.discard(self)
        broker = app.broker
        if broker is not None:
            now = time.time()
            broker.release_session(self.sid, now=now)
            for _presence_id, stream in self.core.presence.values():
                broker.presence_disconnect(stream, self.sid, now=now)


class _WebSocketSession(_Session):
    wire_kind = "ws"

    def encode(self, text: str) -> _Wire:
        return text, len(messages.to_wire(text))

    async def _read(self) -> None:
        while True:
            message = await self.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            data: str | bytes | None = text if text is not None else message.get("bytes")
            if data is not None:
                self.receive_message(data)

    async def _write(self, items: list[str | bytes]) -> None:
        for item in items:
            await self.send({"type": "websocket.send", "text": item})

    async def _write_close(self, code: int, reason: str) -> None:
        await self.send({"type": "websocket.close", "code": code, "reason": reason})


class _SseSession(_Session):
    def __init__(
        self,
        app: CablewayApp,
        core: CableConnection,
        receive: Receive,
        send: Send,
        *,
        unwrap: bool,
        raw: bool,
    ) -> None:
        super().__init__(app, core, receive, send)
        self.unwrap = unwrap
        self.raw = raw
        self.wire_kind = f"sse:{int(unwrap)}{int(raw)}"

    def encode(self, text: str) -> _Wire | None:
        event = message_to_event(text, unwrap=self.unwrap, raw=self.raw)
        return None if event is None else (event, len(event))

    async def _read(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    async def _write(self, items: list[str | bytes]) -> None:
        body = b"".join(item if isinstance(item, bytes) else item.encode() for item in items)
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def _write_close(self, code: int, reason: str) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


class _Request:
    """The parts of an ASGI ``http``/``websocket`` scope the routes look at."""

    __slots__ = ("headers", "method", "path", "query", "raw_headers", "subprotocols")

    def __init__(self, scope: Scope) -> None:
        self.method = str(scope.get("method", "GET"))
        self.subprotocols = [str(p) for p in scope.get("subprotocols", ())]
        self.path = _route_path(scope)
        self.query = bytes(scope.get("query_string", b"")).decode("ascii", "replace")
        self.raw_headers: list[tuple[bytes, bytes]] = [
            (bytes(k).lower(), bytes(v)) for k, v in scope.get("headers", [])
        ]
        headers: dict[str, str] = {}
        for name, value in self.raw_headers:
            key = name.decode("ascii", "replace")
            text = value.decode("latin-1")
            headers[key] = headers[key] + ", " + text if key in headers else text
        self.headers = headers


def _route_path(scope: Scope) -> str:
    """The path below the mount point, without a trailing slash (``/`` at least)."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return _normal(path)


def _normal(path: str) -> str:
    return path.rstrip("/") or "/"


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

    def __init__(self, config: Config, *, http_broadcast: bool | None = None) -> None:
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
        self.config = config
        self.limits = config.limits()
        self.stream_policy = config.stream_policy()
        self.auth_policy = config.auth_policy()
        self.hub: Hub[_Session] = Hub()
        self.sessions: set[_Session] = set()
        self.broker: MemoryBroker | None = config.new_broker()
        if http_broadcast is None:
            http_broadcast = config.broadcast_key is not None
        self.http_broadcast = http_broadcast and "http" in config.broadcast_adapters
        routes = [(_normal(path), "ws") for path in config.path]
        if self.http_broadcast:
            routes.append((_normal(config.http_broadcast_path), "broadcast"))
        if config.sse:
            routes.append((_normal(config.sse_path), "sse"))
        routes.append((_normal(config.health_path), "health"))
        self.router = endpoint_router(tuple(routes))
        self.random = random.Random()
        self._sweeper: asyncio.Task[None] | None = None

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
        """Store (when a broker keeps history) and deliver publications, never awaiting.

        Each publication is encoded once per distinct identifier and once per kind of
        session; the same object is queued for every subscriber of that kind.
        """
        broker = self.broker
        for publication in publications:
            offset: int | None = None
            if broker is not None and not publication.transient:
                offset = broker.add(
                    publication.stream,
                    publication.data,
                    now=time.time(),
                    broadcast_type=publication.broadcast_type,
                )
            recipients = self.hub.recipients(publication.stream)
            if not recipients:
                continue
            encoded = EncodedBroadcast(
                publication, offset=offset, epoch=broker.epoch if broker is not None else None
            )
            exclude = publication.exclude_socket
            for identifier, sessions in recipients.items():
                text = encoded.for_identifier(identifier)
                wire: dict[str, _Wire | None] = {}
                for session in sessions:
                    if exclude is not None and session.sid == exclude:
                        continue
                    kind = session.wire_kind
                    if kind in wire:
                        item = wire[kind]
                    else:
                        item = wire[kind] = session.encode(text)
                    if item is None:
                        continue
                    held = session.core.held
                    if held and identifier in held:
                        session.hold(identifier, offset, item)
                    else:
                        session.push_frame(item)

    def remote_disconnect(self, command: RemoteDisconnect) -> None:
        """Disconnect every session whose identifiers equal the command's."""
        for session in list(self.sessions):
            if session.core.identifiers == command.identifier:
                session.request_close(
                    "remote", reconnect=command.reconnect, close_reason="Closed remotely"
                )

    # -- core requests -------------------------------------------------------------------

    def session_settings(
        self, ping_interval: float, ping_precision: str, *, extended: bool
    ) -> SessionSettings:
        config = self.config
        return SessionSettings(
            ping_interval=ping_interval,
            ping_precision=ping_precision,
            limits=self.limits,
            policy=self.stream_policy,
            extended=extended,
            pong_timeout=config.pong_timeout,
            history=self.broker is not None,
            presence=self.broker is not None,
            resumable=self.broker is not None and config.sessions_ttl > 0,
            native_pings=False,  # ASGI cannot send WebSocket pings
        )

    def answer_history(self, core: CableConnection, request: HistoryRequest) -> None:
        service.answer_history(self.broker, core, request, now=time.time())

    def answer_presence(self, core: CableConnection, request: PresenceRequest) -> None:
        publication = service.answer_presence(self.broker, core, request)
        if publication is not None:
            self.publish([publication])

    def publish_presence(self, event: PresenceEvent) -> None:
        self.publish(
            [service.presence_publication(event.stream, event.kind, event.presence_id, event.info)]
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker's expiry task on the running loop (idempotent).

        Called by the ASGI lifespan and by every request, so a mounted app (which gets no
        lifespan events from Starlette) starts it with its first client.
        """
        if self.broker is not None and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(self.broker))

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

    async def _sweep(self, broker: MemoryBroker) -> None:
        """Expire history, sessions and presence once a second."""
        while True:
            await asyncio.sleep(1)
            for event in broker.expire(time.time()):
                self.publish_presence(event)

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        self.start()
        request = _Request(scope)
        if kind == "websocket":
            await self._websocket(request, receive, send)
            return
        route = self._route(request)
        if route == "ws":
            # a plain request to the WebSocket path (the trio server says the same)
            await _respond(send, 400, b"Bad Request", [(b"sec-websocket-version", b"13")])
        elif route == "broadcast":
            await self._broadcast(request, receive, send)
        elif route == "sse":
            await self._sse(request, receive, send)
        elif route == "health":
            await _respond(send, 200, HEALTH_BODY, [VERSION_HEADER])
        else:
            await _respond(send, 404, b"404 page not found")

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

    async def _broadcast(self, request: _Request, receive: Receive, send: Send) -> None:
        """``POST`` broadcast (spec §11.2): 201, 401, 413, 422, or 400 for bad bodies."""
        key = self.config.broadcast_key
        if request.method != "POST":
            await _respond(send, 422, b"Unprocessable Entity")
            return
        if key is not None and not check_bearer(request.headers.get("authorization"), key):
            await _respond(send, 401, b"Unauthorized")
            return
        limit = self.config.max_broadcast_body
        length = request.headers.get("content-length")
        too_big = length is not None and length.isdigit() and int(length) > limit
        body = None if too_big else await _read_body(receive, limit)
        if body is None:
            await _respond(send, 413, b"Payload Too Large")
            return
        try:
            parsed = parse_broadcast(body)
        except RemoteProtocolError as exc:
            log.warning("invalid broadcast: %s", exc)
            await _respond(send, 400, f"Bad Request: {exc}".encode())
            return
        if isinstance(parsed, RemoteDisconnect):
            self.remote_disconnect(parsed)
        else:
            self.publish(parsed)
        await _respond(send, 201)

    def _route(self, request: _Request) -> str | None:
        """The endpoint of ``request.path`` (patterns as AnyCable-Go routes them,
        :mod:`cableway.protocol.routes`); the trailing slash a ``*`` pattern ends with is
        optional here, as every trailing slash is."""
        route = self.router.lookup(request.path)
        if route is None and request.path != "/":
            route = self.router.lookup(request.path + "/")
        return route

    async def _websocket(self, request: _Request, receive: Receive, send: Send) -> None:
        config = self.config
        if (await receive())["type"] != "websocket.connect":
            return
        origins = [v for k, v in request.raw_headers if k == b"origin"]
        origin = origins[0].decode("latin-1") if len(origins) == 1 else None
        if self._route(request) != "ws":
            await send({"type": "websocket.close", "code": 1000})  # the server answers 403
            return
        if len(origins) > 1 or not origin_allowed(origin, config.allowed_origins):
            # cross-site WebSocket hijacking protection: refuse before accepting
            log.info("WebSocket refused: origin %r is not allowed", origin)
            await send({"type": "websocket.close", "code": 1008})
            return
        opening = websocket_open(
            headers=request.headers,
            query=request.query,
            subprotocols=request.subprotocols,
            fresh_sid=secrets.token_urlsafe(16)[:21],
            jwt_param=config.jwt_param,
            ping_interval=config.ping_interval,
            ping_precision=config.ping_timestamp_precision,
        )
        subprotocol = opening.subprotocol
        await send(
            {"type": "websocket.accept", "subprotocol": subprotocol, "headers": [VERSION_HEADER]}
        )
        loop = asyncio.get_running_loop()
        sid = opening.sid
        core = CableConnection(
            sid=sid,
            settings=self.session_settings(
                opening.ping_interval, opening.ping_precision, extended=opening.extended
            ),
            now=loop.time(),
            ping_jitter=self.random.random(),
        )
        # extended sessions come back with their previous sid: no re-authentication
        snapshot = None
        if opening.restore_sid is not None and self.broker is not None:
            snapshot = self.broker.restore_session(opening.restore_sid, now=time.time())
        outcome = identify(
            core, opening, snapshot, policy=self.auth_policy, now=loop.time(), unix_time=time.time()
        )
        if isinstance(outcome, Restored):
            log.debug("restored sid=%s from=%s", sid, outcome.previous_sid)
        elif isinstance(outcome, Accepted):
            log.debug("connected sid=%s protocol=%s", sid, subprotocol)
        else:
            log.info("connection rejected sid=%s reason=%s", sid, outcome.reason)
        session = _WebSocketSession(self, core, receive, send)
        session.apply()
        await session.run()

    async def _sse(self, request: _Request, receive: Receive, send: Send) -> None:
        """Serve the event stream; returns when it ended."""
        config = self.config
        cors = cors_headers(request.headers.get("origin"), config.allowed_origins)
        if request.method == "OPTIONS":
            await _respond(send, 200, b"", cors)
            return
        if request.method not in ("GET", "POST"):
            await _respond(send, 405, b"Method Not Allowed", cors)
            return
        body = b""
        if request.method == "POST":
            posted = await _read_body(receive, config.max_message_size)
            if posted is None:
                await _respond(send, 413, b"Payload Too Large", cors)
                return
            body = posted
        opening = sse_open(
            request.method,
            query=request.query,
            headers=request.headers,
            body=body,
            fresh_sid=secrets.token_urlsafe(16)[:21],
            policy=self.auth_policy,
            jwt_param=config.jwt_param,
            ping_interval=config.ping_interval,
            ping_precision=config.ping_timestamp_precision,
            max_size=config.max_message_size,
            unix_time=time.time(),
        )
        if isinstance(opening, Refusal):
            await _respond(send, opening.status, opening.body, cors)
            return
        core = sse_connection(
            opening,
            settings=self.session_settings(
                opening.ping_interval, opening.ping_precision, extended=False
            ),
            now=asyncio.get_running_loop().time(),
            ping_jitter=self.random.random(),
        )
        if isinstance(core, Refusal):
            # nothing was carried out yet (no hub entry): the core is just dropped
            await _respond(send, core.status, core.body, cors)
            return
        session = _SseSession(self, core, receive, send, unwrap=opening.unwrap, raw=opening.raw)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*cors, *SSE_HEADERS, VERSION_HEADER],
            }
        )
        session.apply()  # welcome, confirmations, history: queued before live messages
        await session.run()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body; ``None`` when it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # http.disconnect
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    hdrs = [(b"content-type", _TEXT), (b"content-length", str(len(body)).encode())]
    hdrs.extend(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
