"""AnyCable's RPC over HTTP, on trio: the calls themselves (rpc.md §3).

:class:`HttpRpc` sends ``POST <rpc_host>/<call>`` over HTTP/1.1 (h11 on trio streams, TLS
for ``https://``), keeping idle connections for reuse, at most ``--rpc_concurrency`` calls
in flight (more wait for a slot, counted by ``rpc_pending_num``), each bounded by
``--rpc_request_timeout``. A call that got no response at all (refused, reset) is retried
after 0.1, 0.2, 0.4 … s while the timeout allows, as AnyCable-Go does; every attempt
passes AnyCable-Go's circuit breaker (:mod:`cableway.rpc.breaker`), which refuses calls
at once while the application keeps failing to answer. Every failure ends
as ``None`` for the caller plus a log line and a metric; what a failure means for the
session is :mod:`cableway.node.rpc`'s rule.

:class:`DisconnectQueue` runs Disconnect calls at most ``--disconnect_rate`` per second.
"""

from __future__ import annotations

import collections
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Sized
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import h11
import trio

from ..node.rpc import RpcSession, answer_delegated, release_delegated, request_url
from ..ops.metrics import Metric
from ..rpc.breaker import BreakerState, CircuitBreaker
from ..rpc.http import endpoint_url, request_headers
from ..rpc.messages import (
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DecodeError,
    DisconnectRequest,
    DisconnectResponse,
    Status,
)
from ..rpc.settings import RpcSettings
from .tls import is_tls, transport_socket

if TYPE_CHECKING:
    from ..ops.metrics import Metrics
    from .httpconn import Request

__all__ = [
    "RPC_DEFINITIONS",
    "DisconnectQueue",
    "HttpRpc",
    "RpcFailure",
    "answer_delegated",
    "new_rpc_session",
    "release_delegated",
]

log = logging.getLogger("cableway.rpc")

_T = TypeVar("_T")

#: Registered only by servers with ``--rpc_host`` (AnyCable-Go's names; rpc.md §3.4-§3.7).
RPC_DEFINITIONS: tuple[Metric, ...] = (
    Metric("rpc_call_total", "counter", "The total number of RPC calls"),
    Metric("rpc_error_total", "counter", "The total number of failed RPC calls"),
    Metric("rpc_retries_total", "counter", "The total number of retried RPC calls"),
    Metric("rpc_timeout_total", "counter", "The total number of timed out RPC calls"),
    Metric("rpc_canceled_total", "counter", "The total number of RPC calls canceled"),
    Metric("rpc_pending_num", "gauge", "The number of RPC calls waiting for a slot"),
    Metric(
        "rpc_disconnect_dropped_total",
        "counter",
        "The total number of Disconnect calls dropped because the queue was full",
    ),
    Metric(
        "rpc_circuit_open_total",
        "counter",
        "The total number of RPC calls refused at once by the open circuit breaker",
    ),
)

#: What a call refused by the open circuit breaker fails with (AnyCable-Go's words).
BREAKER_OPEN = "http rpc is temporarily unavailable"

#: Largest response body read (AnyCable-Go has none; a bound keeps memory bounded).
MAX_RESPONSE_BODY = 16 * 1024 * 1024
_READ_SIZE = 65536
_RETRY_BASE = 0.1


class RpcFailure(Exception):
    """A call that produced no usable answer; ``kind`` is ``timeout``, ``unavailable``,
    ``unauthorized``, ``status``, ``decode`` or ``breaker`` (refused by the open circuit
    breaker). ``responded``: the application sent an HTTP response (for the breaker, a
    success)."""

    def __init__(self, kind: str, detail: str, *, responded: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.responded = responded


class _Unavailable(Exception):
    """No response at all (refused, reset, EOF before a response): worth a retry."""


class _Connection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=65536)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.stream.aclose()


class HttpRpc:
    """The HTTP RPC client of one server (shared by every session)."""

    def __init__(self, settings: RpcSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        parts = urlsplit(settings.host)
        self._tls = parts.scheme.lower() == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._tls else 80)
        self._authority = parts.netloc.rpartition("@")[2].encode("ascii", "replace")
        self._targets: dict[str, bytes] = {}
        for call in ("connect", "command", "disconnect"):
            url = urlsplit(endpoint_url(settings.host, call))
            target = url.path + (f"?{url.query}" if url.query else "")
            self._targets[call] = target.encode("ascii")
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self._tls else None
        self.limiter = trio.CapacityLimiter(settings.concurrency)
        self._idle: list[_Connection] = []
        #: its first window starts with the first call (the server may be built before
        #: trio runs)
        self.breaker = CircuitBreaker(now=-math.inf)

    def _inc(self, name: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.inc(name, n)

    # -- the three calls ------------------------------------------------------------

    async def connect(self, sid: str, request: ConnectionRequest) -> ConnectionResponse | None:
        return await self._call("connect", sid, request.to_bytes(), ConnectionResponse.from_json)

    async def command(self, sid: str, request: CommandMessage) -> CommandResponse | None:
        return await self._call("command", sid, request.to_bytes(), CommandResponse.from_json)

    async def disconnect(self, sid: str, request: DisconnectRequest) -> DisconnectResponse | None:
        return await self._call("disconnect", sid, request.to_bytes(), DisconnectResponse.from_json)

    async def _call(
        self, call: str, sid: str, body: bytes, decode: Callable[[bytes], _T]
    ) -> _T | None:
        self._inc("rpc_call_total")
        try:
            raw = await self.post(call, sid, body)
            answer = decode(raw)
        except RpcFailure as exc:
            self._inc("rpc_error_total")
            log.error("RPC %s failed sid=%s: %s", call, sid, exc)
            return None
        except DecodeError as exc:
            self._inc("rpc_error_total")
            log.error("RPC %s failed sid=%s: undecodable answer: %s", call, sid, exc)
            return None
        status = getattr(answer, "status", Status.SUCCESS)
        if status is Status.ERROR:
            self._inc("rpc_error_total")
            log.error(
                "RPC %s application error sid=%s: %s", call, sid, getattr(answer, "error_msg", "")
            )
        return answer

    # -- HTTP -------------------------------------------------------------------------

    async def post(self, call: str, sid: str, body: bytes) -> bytes:
        """The 200 body of ``POST <rpc_host>/<call>``, or :class:`RpcFailure`."""
        if self.breaker.state(trio.current_time()) is BreakerState.OPEN:
            self._inc("rpc_circuit_open_total")  # no wait for a slot to fail
            raise RpcFailure("breaker", BREAKER_OPEN)
        if self.metrics is not None:
            self.metrics.inc("rpc_pending_num")
        try:
            await self.limiter.acquire()
        finally:
            if self.metrics is not None:
                self.metrics.dec("rpc_pending_num")
        try:
            timeout = self.settings.request_timeout
            with trio.move_on_after(timeout if timeout > 0 else math.inf) as scope:
                attempt = 0
                while True:
                    try:
                        return await self._attempt(call, sid, body)
                    except _Unavailable as exc:
                        delay = _RETRY_BASE * 2**attempt
                        attempt += 1
                        if trio.current_time() + delay >= scope.deadline:
                            raise RpcFailure("unavailable", str(exc)) from None
                        self._inc("rpc_retries_total")
                        await trio.sleep(delay)
            self._inc("rpc_timeout_total")
            raise RpcFailure("timeout", f"no answer within {timeout:g} s")
        finally:
            self.limiter.release()

    async def _attempt(self, call: str, sid: str, body: bytes) -> bytes:
        """One attempt, through the circuit breaker (rpc.md §3.7): refused at once while
        it is open; no HTTP response (refused, reset, TLS, timeout) counts as a failure."""
        ticket = self.breaker.allow(trio.current_time())
        if ticket is None:  # open, or half-open with its trial calls under way
            self._inc("rpc_circuit_open_total")
            raise RpcFailure("breaker", BREAKER_OPEN)
        responded = False
        try:
            data = await self._exchange(call, sid, body)
            responded = True
            return data
        except RpcFailure as exc:
            responded = exc.responded
            raise
        finally:
            changed = self.breaker.done(ticket, success=responded, now=trio.current_time())
            if changed is BreakerState.OPEN:
                log.warning(
                    "RPC circuit breaker is open: calls fail at once for %g s",
                    self.breaker.open_seconds,
                )
            elif changed is BreakerState.CLOSED:
                log.info("RPC circuit breaker is closed")

    async def _open(self) -> _Connection:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        except OSError as exc:
            raise _Unavailable(f"cannot connect to {self._host}:{self._port}: {exc}") from None
        if self._ssl is not None:
            tls = trio.SSLStream(stream, self._ssl, server_hostname=self._host)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                await stream.aclose()
                raise RpcFailure("unauthorized", f"TLS: {exc}") from None
            stream = tls
        return _Connection(stream)

    async def _exchange(self, call: str, sid: str, body: bytes) -> bytes:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._open()
        try:
            result = await self._request(conn, call, sid, body)
        except _Unavailable:
            await conn.aclose()
            if reused:  # an idle connection the app closed meanwhile: once more, fresh
                return await self._exchange(call, sid, body)
            raise
        except BaseException:
            await conn.aclose()
            raise
        status, data, reusable = result
        if reusable and len(self._idle) < self.settings.concurrency:
            self._idle.append(conn)
        else:
            await conn.aclose()
        if status == 200:
            return data
        excerpt = data[:200].decode("utf-8", "replace")
        if status == 401:
            raise RpcFailure(
                "unauthorized",
                f"401 from the application (check the RPC secret) {excerpt!r}",
                responded=True,
            )
        raise RpcFailure("status", f"HTTP {status} {excerpt!r}", responded=True)

    async def _request(
        self, conn: _Connection, call: str, sid: str, body: bytes
    ) -> tuple[int, bytes, bool]:
        headers = [
            (b"host", self._authority),
            (b"content-length", str(len(body)).encode()),
            (b"user-agent", b"cableway"),
        ]
        headers += [(k.encode(), v.encode()) for k, v in request_headers(self.settings.key, sid)]
        out = conn.h11.send(h11.Request(method="POST", target=self._targets[call], headers=headers))
        out += conn.h11.send(h11.Data(data=body)) + conn.h11.send(h11.EndOfMessage())
        try:
            await conn.stream.send_all(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise _Unavailable(f"send failed: {exc}") from None
        status = 0
        chunks: list[bytes] = []
        size = 0
        got_response = False
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise RpcFailure("status", f"bad HTTP response: {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    data = await conn.stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    if got_response:
                        raise RpcFailure("status", f"response cut: {exc}", responded=True) from None
                    raise _Unavailable(f"connection lost: {exc}") from None
                if not data and not got_response:
                    raise _Unavailable("connection closed before a response")
                conn.h11.receive_data(bytes(data))
            elif isinstance(event, h11.Response):
                status = event.status_code
                got_response = True
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_RESPONSE_BODY:
                    raise RpcFailure("status", "response body too large", responded=True)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                reusable = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
                if reusable:
                    conn.h11.start_next_cycle()
                return status, b"".join(chunks), reusable
            elif isinstance(event, h11.ConnectionClosed):
                if not got_response:
                    raise _Unavailable("connection closed before a response")
                raise RpcFailure("status", "response cut", responded=True)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()


class DisconnectQueue:
    """Disconnect calls, started at most ``rate`` per second (rpc.md §4.9).

    Closed sessions are queued; :meth:`run` starts one call every ``1 / rate`` seconds,
    each as its own task so a slow application does not slow the rate down (the
    concurrency limit still bounds calls in flight).

    AnyCable-Go never drops one: beyond its 4 096-call buffer the closing session waits
    for room. Cableway does not make a closed session wait (its task and memory would be
    held instead); it keeps queueing up to the most sessions the node has had open at
    once (the size of ``sessions``, the node's open sessions, sampled at each enqueue),
    and at least ``backlog``. So a whole
    node disconnecting at once (a network cut, a load balancer restart) gets every
    Disconnect call, as with AnyCable-Go, while the queue never holds more requests than
    the node held sessions; only churn that outruns ``rate`` for longer than that drops
    calls, each with an error log line and ``rpc_disconnect_dropped_total``.
    """

    def __init__(
        self,
        call: Callable[[str, DisconnectRequest], Awaitable[object]],
        rate: int,
        sessions: Sized | None = None,
        *,
        backlog: int = 4096,
        metrics: Metrics | None = None,
    ) -> None:
        self._call = call
        self.interval = 1 / rate
        self._pending: collections.deque[tuple[str, DisconnectRequest]] = collections.deque()
        self._wake = trio.Event()
        self._closed = False
        self._flush = trio.Event()
        self.capacity = backlog
        self._sessions = sessions
        self.metrics = metrics
        self.done = trio.Event()

    @property
    def size(self) -> int:
        return len(self._pending)

    def enqueue(self, sid: str, request: DisconnectRequest) -> bool:
        if self._closed:  # after shutdown's flush
            log.warning("shutting down: no Disconnect call for sid=%s", sid)
            return False
        if self._sessions is not None:
            # +1: the closing session itself may already be gone from the node's sessions
            self.capacity = max(self.capacity, len(self._sessions) + 1)
        if len(self._pending) >= self.capacity:
            log.error("Disconnect queue full: dropped the Disconnect call of sid=%s", sid)
            if self.metrics is not None:
                self.metrics.inc("rpc_disconnect_dropped_total")
            return False
        self._pending.append((sid, request))
        self._wake.set()
        return True

    async def run(self) -> None:
        """Start the queued calls at the rate, until :meth:`finish` (then every call
        left is started at once and awaited)."""
        try:
            async with trio.open_nursery() as calls:
                while True:
                    if not self._pending:
                        if self._closed:
                            break
                        self._wake = trio.Event()
                        await self._wake.wait()
                        continue
                    sid, request = self._pending.popleft()
                    calls.start_soon(self._call, sid, request)
                    if not self._closed:
                        with trio.move_on_after(self.interval):
                            await self._flush.wait()
        finally:
            self.done.set()

    async def finish(self) -> None:
        """Shutdown: stop throttling, let the queued calls run, wait for them."""
        self.interval = 0.0
        self._closed = True
        self._wake.set()
        self._flush.set()
        await self.done.wait()


def new_rpc_session(
    settings: RpcSettings, request: Request, stream: trio.abc.Stream, sid: str, default_host: str
) -> RpcSession:
    """The application's view of a new session (WebSocket or event stream): the request
    URL and the forwarded headers, fixed at the handshake (rpc.md §2.2)."""
    return RpcSession(
        sid=sid,
        url=request_url(
            request.headers.get("host"),
            request.path,
            request.query,
            default_host=default_host,
            tls=is_tls(stream),
        ),
        headers=settings.env_headers(_text_headers(request), _peer_ip(stream)),
        disconnect_mode=settings.disconnect_mode,
    )


def _text_headers(request: Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


def _peer_ip(stream: trio.abc.Stream) -> str:
    """The client's IP address (no port), or ``""`` when the stream has no socket."""
    sock = transport_socket(stream)
    try:
        peer = sock.getpeername() if sock is not None else None
    except OSError:
        return ""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""
