"""The HTTP/1.1 connection adapter: h11 over a trio stream, with the raw buffer the
fast paths (broadcasts, WebSocket upgrades) read, the node-wide body budget, and the
helpers every endpoint answers with (bodies drained within limits, refusals that close
cleanly).

Every answer either leaves the connection usable (the request was read to its end and
h11 agrees) or says ``Connection: close`` and closes it (:meth:`Conn.respond`). A request
whose body framing is ambiguous (:func:`~cableway.protocol.httphead.framing_error`) is
refused with ``400`` and closed; request bodies share a node-wide budget
(:class:`FrontDoor`, ``503`` past it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from typing import TYPE_CHECKING

import h11
import trio

from .. import __version__
from ..ops.logs import WarningGate
from ..protocol.httphead import framing_error, reason_phrase
from .request import Request

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "CREATED_CLOSE",
    "CREATED_KEEP_ALIVE",
    "HEALTH_BODY",
    "RETRY_AFTER",
    "VERSION_HEADER",
    "Conn",
    "FrontDoor",
    "Overloaded",
    "Request",
    "bad_request",
    "chunk_left",
    "discard_body",
    "drain_body",
    "h11_answer",
    "linger",
    "refuse",
]

log = logging.getLogger("cableway.http")

VERSION_HEADER = (b"x-anycable-version", f"cableway-{__version__}".encode())
HEALTH_BODY = b"Ah, ha, ha, ha, stayin' alive, stayin' alive."
_READ_SIZE = 16384
_HEAD_END = re.compile(rb"\n\r?\n")
# h11 events are immutable: the broadcast answer is validated once, not per request
_CREATED = h11.Response(
    status_code=201,
    headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"0")],
    reason=reason_phrase(201),
)
_END = h11.EndOfMessage()
#: what a refused request body may still send after the answer (read and dropped, so
#: that closing the socket does not reset the connection before the client read it)
_LINGER_BYTES = 4 << 20
_LINGER_SECONDS = 1.0
#: the most a route that takes no body reads (and drops) to keep the connection
_DISCARD_LIMIT = 65536
#: ``Retry-After`` of a ``503`` for a full body budget, in seconds
RETRY_AFTER = b"1"


class FrontDoor:
    """Node-wide state of the HTTP front door, shared by every connection and port.

    Attributes:
        body_limit: what the request bodies being received on this node may hold
            together, in bytes (``--max_bodies_in_flight``, at least one largest body).
        body_bytes: what they hold now (declared lengths, reserved up front).
        broadcast_warnings: the rate limit of "invalid broadcast" warnings.
        budget_warnings: the rate limit of "body budget full" warnings.
    """

    __slots__ = ("body_bytes", "body_limit", "broadcast_warnings", "budget_warnings")

    def __init__(self, config: Config) -> None:
        self.body_limit = max(
            config.max_bodies_in_flight,
            config.max_broadcast_body,
            config.max_message_size,
            _DISCARD_LIMIT,
        )
        self.body_bytes = 0
        self.broadcast_warnings = WarningGate(log, "invalid broadcast", clock=trio.current_time)
        self.budget_warnings = WarningGate(log, "body budget", clock=trio.current_time)


class Overloaded(Exception):
    """The node-wide body budget cannot take this request's body (``503``)."""


class _TooLarge(Exception):
    """A chunk size (with what came before) already exceeds the body limit (``413``)."""


def chunk_left(conn: h11.Connection) -> int:
    """The bytes h11 still expects of the chunk it is reading (0: none, or not chunked).

    h11 does not publish a chunk's declared size, only its data as it arrives; its
    chunked reader keeps the count in ``_bytes_in_chunk`` (h11 0.7 to 0.16).
    ``tests/transport/test_http_keepalive.py`` fails if that ever changes.
    """
    return int(getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0))


def h11_answer(events: list[h11.Event], *, close: bool) -> bytes:
    """The bytes h11 writes for ``events`` after a keep-alive (or ``close``) request."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n"
        + (b"connection: close\r\n" if close else b"")
        + b"\r\n"
    )
    while conn.next_event() is not h11.NEED_DATA and conn.their_state is not h11.DONE:
        pass
    return b"".join(conn.send(event) or b"" for event in events)


#: the fast path's answers to an accepted broadcast: what h11 would write
CREATED_KEEP_ALIVE = h11_answer([_CREATED, _END], close=False)
CREATED_CLOSE = h11_answer([_CREATED, _END], close=True)


class Conn:
    """An h11 connection bound to a stream, with a fast path in front of it.

    While :attr:`raw` is true, the bytes read are kept in :attr:`buf` and h11 has seen
    none of the current request: :func:`fast_requests` serves the unremarkable
    broadcasts there, :func:`~.upgrade.fast_upgrade` the unremarkable upgrades.
    Anything else is handed over to h11 (:meth:`hand_over`) with every byte read so
    far, and h11 serves that request exactly as it would have without a fast path; the
    next request starts in raw mode again (:meth:`next_cycle`).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        max_head: int,
        *,
        fast: bool = False,
        door: FrontDoor | None = None,
        body_timeout: float = math.inf,
    ) -> None:
        self.stream = stream
        self.max_head = max_head
        #: the node-wide body budget (``None``: unbounded, for harnesses)
        self.door = door
        #: how long a request body may take to arrive (then 408)
        self.body_timeout = body_timeout
        #: bytes of the body budget this connection holds for the current request
        self.held = 0
        #: the current request's body: its declared length (0 when it has none), or
        #: ``None`` when it is chunked
        self.declared: int | None = 0
        #: h11's side of the connection, made when first needed (see :attr:`h11`): an
        #: upgrade served by the fast path never needs one
        self._h11: h11.Connection | None = None
        #: the fast path may serve requests on this connection
        self.fast = fast
        #: h11 has seen nothing of the current request: the bytes read are in ``buf``
        self.raw = fast
        self.buf = bytearray()
        #: the client sent EOF (raw mode)
        self.eof = False
        #: where :func:`head_size` resumes looking for the end of the head in ``buf``
        self.scanned = 0
        #: the socket's descriptor for direct reads and writes (-1: trio's stream only)
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        #: the last direct read filled the buffer (more is likely waiting)
        self._full_read = False
        #: nothing was read yet: the first request is likely there already (a storm's
        #: connections wait in the backlog while their clients send), so read at once
        self._first_read = True
        #: the raw bytes read while waiting for a request head (bounded)
        self._head = bytearray()
        #: one cancel scope for the whole connection: its deadline is set while a head
        #: (or a broadcast body) is awaited, and lifted while a request is served
        self.deadline = trio.CancelScope()
        #: the deadline covers a request body (a timeout then answers 408)
        self.in_body = False
        #: answers held back while pipelined requests are already buffered: written
        #: together, before the connection next waits for the client (or answers
        #: anything else)
        self._out = b""
        #: the method of the request being answered (a HEAD answer has no body)
        self.method = b""

    async def next_event(
        self, room: int | None = None
    ) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event, reading as needed.

        Args:
            room: while a body is read, how many more bytes it may have: a chunk
                declared larger raises :class:`_TooLarge` before its data is awaited.
        """
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                if self.h11.their_state is h11.ERROR:
                    # h11 refused the head for its own reason (e.g. 501): a head over the
                    # limit is 431 and a framing another parser could misread 400, as when
                    # h11 accepts the head, however the bytes arrived
                    self._check_head()
                raise
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.Request):
                    self.method = event.method
                    self._framing(event)
                    self._check_head()
                return event
            if room is not None and chunk_left(self.h11) > room:
                raise _TooLarge
            if self._out:
                await self.flush()
            try:
                data = bytes(await self.stream.receive_some(_READ_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if self.h11.their_state is h11.IDLE and len(self._head) <= self.max_head + 4:
                self._head += data
                if self._head.startswith(b"HEAD "):
                    self.method = b"HEAD"  # known even if the head is refused unparsed
            self.h11.receive_data(data)

    def next_cycle(self) -> None:
        """Get ready for the next request on a kept-alive connection.

        Bytes already read past the previous request (a pipelined request) count
        towards the next head, so its size is measured like any other's. With the fast
        path, they go back to the raw buffer and a fresh h11 connection waits for the
        next hand-over (h11 cannot give its buffer back).
        """
        pending, closed = self.h11.trailing_data
        self.method = b""
        self.h11.start_next_cycle()  # raises if the cycle is not over, as before
        if self.fast:
            self.buf = bytearray(pending)
            self.eof = closed
            self.scanned = 0
            self._head = bytearray()
            self.raw = True
            self._h11 = None  # a fresh one for the next hand-over
        else:
            self._head = bytearray(pending[: self.max_head + 4])

    def hand_over(self) -> None:
        """Give h11 every byte of the current request read so far (and the EOF, if any).

        h11 then parses them as if it had read them itself; the raw head bytes are kept
        for :meth:`_check_head` as :meth:`next_event` keeps them.
        """
        data = bytes(self.buf)
        self.buf = bytearray()
        self.raw = False
        self._head = bytearray(data[: self.max_head + 4])
        if self._head.startswith(b"HEAD "):
            self.method = b"HEAD"
        if data:
            self.h11.receive_data(data)
        if self.eof:
            self.h11.receive_data(b"")

    async def wait_head(self, idle: set[trio.CancelScope], limit: float, *, armed: bool) -> None:
        """No whole head yet (raw mode): flush held answers, then wait for more bytes under
        the handshake deadline (``limit`` from a request's first wait; ``idle``: shutdown)."""
        self.scanned = len(self.buf) - 2
        deadline = self.deadline
        if not armed:
            deadline.deadline = trio.current_time() + limit
        idle.add(deadline)
        try:
            await self.flush()
            await self.fill()
        finally:
            idle.discard(deadline)

    async def fill(self) -> None:
        """Read more bytes into :attr:`buf` (raw mode); at the end of input set :attr:`eof`.

        On a socket, read the descriptor directly once it is readable (no trio stream
        machinery per read); a read that filled the buffer is followed by another at
        once (after a checkpoint), as more is likely waiting. The first read of a
        connection is tried before waiting (:meth:`read_first`).
        """
        fd = self._fd
        data = b""
        if fd < 0:
            try:
                data = bytes(await self.stream.receive_some(_READ_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
        else:
            if self._full_read:
                await trio.lowlevel.checkpoint()
            elif self.read_first():
                return
            else:
                await trio.lowlevel.wait_readable(fd)
            while True:
                try:
                    data = os.read(fd, _READ_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
                    continue
                except OSError:
                    pass  # a reset: the end of input, as for the stream
                break
        self._took(data)

    def read_first(self) -> bool:
        """The connection's first read, tried at once (raw mode, a socket): the request is
        likely there already (a storm's connections wait in the backlog while their
        clients send), and then no epoll registration and no deadline are needed. True
        when it read bytes or the end of input; False: nothing (:meth:`fill` waits)."""
        if self._fd < 0 or not self._first_read:
            return False
        self._first_read = False
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""  # a reset: the end of input
        self._took(data)
        return True

    def _took(self, data: bytes) -> bool:
        """Bytes read (raw mode) into :attr:`buf`; none: the end of input."""
        self._full_read = len(data) == _READ_SIZE
        if data:
            self.buf += data
        else:
            self.eof = True
        return bool(data)

    def top_up(self) -> bool:
        """Read into :attr:`buf`, without waiting, what the kernel already holds when the
        last read filled the buffer (raw mode, a socket only): the rest of a request cut
        at the read size. True when bytes were added; the end of input sets :attr:`eof`."""
        fd = self._fd
        if fd < 0 or not self._full_read or self.eof:
            return False
        try:
            data = os.read(fd, _READ_SIZE)
        except OSError:  # nothing yet (BlockingIOError), or a reset: fill() will tell
            return False
        return self._took(data)

    def _check_head(self) -> None:
        """Bound a request head by its raw size, however it arrived.

        h11 bounds a head that arrives in pieces (``max_incomplete_event_size``) but
        parses one that arrives whole without looking at its size; measuring the raw
        bytes here gives both cases the same outcome (431).
        """
        head, self._head = self._head, bytearray()
        end = _HEAD_END.search(head)  # where h11 ends a head: LF, optional CR, LF
        size = end.end() if end else len(head)
        if size > self.max_head:
            raise h11.RemoteProtocolError("request head too large", 431)
        # a framing h11 accepts but another parser could read otherwise (both
        # Content-Length and Transfer-Encoding: h11 goes by the latter): refused
        reason = framing_error(head[:size])
        if reason is not None:
            raise h11.RemoteProtocolError(reason, 400)

    def _framing(self, event: h11.Request) -> None:
        """Note how the body of request ``event`` is framed (see :attr:`declared`)."""
        self.declared = 0
        for name, value in event.headers:
            if name == b"transfer-encoding":
                self.declared = None
                return
            if name == b"content-length":
                self.declared = int(value)  # h11 checked it: digits, one value

    def reserve(self, size: int) -> None:
        """Take ``size`` bytes of the node-wide body budget for the current request."""
        door = self.door
        if door is None or size <= 0:
            return
        if door.body_bytes + size > door.body_limit:
            raise Overloaded
        door.body_bytes += size
        self.held += size

    def release(self, size: int | None = None) -> None:
        """Give back ``size`` bytes of the body budget (``None``: all this request holds)."""
        size = self.held if size is None else min(size, self.held)
        if size and self.door is not None:
            self.door.body_bytes -= size
            self.held -= size

    def body_unread(self) -> bool:
        """Whether the client may still be sending bytes of the current request."""
        return self.h11.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    async def flush(self) -> None:
        """Write the answers held back by :meth:`created`.

        On a socket, straight to the descriptor when the kernel takes it all (the usual
        case); the rest, or an error, goes through the stream, which waits or reports.
        """
        if self._out:
            data, self._out = self._out, b""
            fd = self._fd
            if fd >= 0:
                try:
                    sent = os.write(fd, data)
                except OSError:
                    sent = 0  # would block, or the peer is gone: send_all says which
                if sent == len(data):
                    return
                data = data[sent:]
            await self.stream.send_all(data)

    async def send(self, event: h11.Event) -> None:
        if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
            event = type(event)(
                status_code=event.status_code,
                headers=event.headers.raw_items(),
                http_version=event.http_version,
                reason=reason_phrase(event.status_code),
            )
        data = self._out + (self.h11.send(event) or b"")
        self._out = b""
        if data:
            await self.stream.send_all(data)

    def created(self) -> None:
        """``201`` with no body, the answer to every accepted broadcast (pre-built).

        Held back until the connection waits for more input, so a pipelined batch of
        broadcasts is answered with one write.
        """
        self._out += (self.h11.send(_CREATED) or b"") + (self.h11.send(_END) or b"")

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` h11 has not seen (a fast path's answer), after any held back;
        straight to the socket when it takes it all (:meth:`flush`)."""
        self._out += data
        await self.flush()

    def created_raw(self, answer: bytes) -> None:
        """Hold back a pre-built ``201`` of the fast path (h11 has not seen the request)."""
        self._out += answer

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: bytes = b"text/plain; charset=utf-8",
        headers: list[tuple[bytes, bytes]] | None = None,
        close: bool = False,
    ) -> None:
        """Answer the current request with ``status`` and ``body``.

        The connection stays usable for the next request only when the request was
        read to its end (and h11 agrees, e.g. not after HTTP/1.0): otherwise the
        answer says ``Connection: close``, and what the client still sends is read and
        dropped for a moment (bounded) so that it gets to read the answer instead of a
        reset. The connection's loop then closes it.
        """
        await self.flush()
        if self.h11.their_state is h11.SEND_BODY and self.declared == 0:
            # the end of an empty body: h11 has it, no read needed
            with contextlib.suppress(h11.RemoteProtocolError):
                self.h11.next_event()
        unread = self.body_unread()
        close = close or unread
        hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if close:
            hdrs.append((b"connection", b"close"))
        hdrs.extend(headers or [])
        reason = reason_phrase(status)
        if self.method == b"HEAD" and self.h11.their_state is h11.ERROR:
            # a HEAD head refused before h11 parsed it: h11 would want a body, the
            # client must not get one (same answer as for the head parsed whole)
            lines = [
                b"HTTP/1.1 %d %b\r\n" % (status, reason),
                *(k + b": " + v + b"\r\n" for k, v in hdrs),
            ]
            await self.stream.send_all(b"".join(lines) + b"\r\n")
        else:
            # the whole response in one write (one syscall per answer on the broadcast path)
            response = h11.Response(status_code=status, headers=hdrs, reason=reason)
            data = self.h11.send(response) or b""
            if body and self.method != b"HEAD":  # same headers, no body (RFC 9110 §9.3.2)
                data += self.h11.send(h11.Data(data=body)) or b""
            data += self.h11.send(h11.EndOfMessage()) or b""
            await self.stream.send_all(data)
        if unread:
            await linger(self.stream)

    # (last in the class: the name shadows the module in the class body)
    @property
    def h11(self) -> h11.Connection:
        """The h11 connection (made on first use)."""
        conn = self._h11
        if conn is None:
            conn = self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)
        return conn


async def refuse(
    conn: Conn, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``status`` with ``Connection: close``, if no answer was started yet."""
    if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        with trio.move_on_after(_LINGER_SECONDS + 1):
            await conn.respond(status, body, headers=headers, close=True)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def bad_request(conn: Conn, status: int) -> None:
    """Answer a request h11 refused (its status hint), closing the connection."""
    await refuse(conn, status, reason_phrase(status))


async def linger(
    stream: trio.abc.Stream,
    *,
    seconds: float = _LINGER_SECONDS,
    budget: int = _LINGER_BYTES,
) -> None:
    """After an answer that closes: end our side, then read and drop what the client
    still sends (bounded in time and bytes) until it closes, so that closing the
    socket with unread input does not reset the connection under the answer."""
    with trio.move_on_after(seconds):
        with contextlib.suppress(
            AttributeError, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await stream.send_eof()  # type: ignore[attr-defined]
        while budget > 0:
            try:
                data = await stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            budget -= len(data)


async def drain_body(conn: Conn, limit: int, *, hold: bool = False) -> bytes | None:
    """Read the request body; ``None`` when it exceeds ``limit`` bytes.

    Too large is known as soon as the declared ``Content-Length``, a chunk size or the
    running total says so: nothing more is read then (the caller answers ``413``,
    which closes the connection). The body must arrive within the connection's body
    timeout (then ``408``). Its bytes count against the node-wide body budget while
    it is read (and, with ``hold``, until the request is answered): past the budget
    :class:`Overloaded` is raised before a byte of it is read (``503``).
    """
    declared = conn.declared
    if declared is not None and declared > limit:
        return None
    reserved = conn.held
    conn.reserve(declared or 0)
    chunks: list[bytes] = []
    size = 0
    conn.in_body = True
    conn.deadline.deadline = trio.current_time() + conn.body_timeout
    try:
        while True:
            try:
                event = await conn.next_event(room=limit - size)
            except _TooLarge:
                return None
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    return None
                if declared is None:
                    conn.reserve(len(event.data))
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise h11.RemoteProtocolError("unexpected end of request", 400)
    finally:
        conn.deadline.deadline = math.inf
        # (after a timeout the connection's loop answers 408: it checks in_body)
        conn.in_body = conn.deadline.cancel_called
        if not hold:
            conn.release(conn.held - reserved)


async def discard_body(conn: Conn, limit: int = _DISCARD_LIMIT) -> bool:
    """Read and drop the body of a request whose route takes none.

    False when it is larger than ``limit`` (then nothing more is read, and the answer
    will close the connection).
    """
    declared = conn.declared
    if declared is not None and declared > limit:
        return False
    size = 0
    conn.in_body = True
    conn.deadline.deadline = trio.current_time() + conn.body_timeout
    try:
        while True:
            try:
                event = await conn.next_event(room=limit - size)
            except _TooLarge:
                return False
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    return False
            elif isinstance(event, h11.EndOfMessage):
                return True
            else:
                raise h11.RemoteProtocolError("unexpected end of request", 400)
    finally:
        conn.deadline.deadline = math.inf
        # (after a timeout the connection's loop answers 408: it checks in_body)
        conn.in_body = conn.deadline.cancel_called
