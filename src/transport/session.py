"""What every client session shares, whatever its transport (WebSocket or SSE).

Resource handling:
    Two tasks per session in a nursery of their own: the *reader* (socket -> core, and
    the session's timers, by waking at ``next_deadline()``) and the *writer* (outbox ->
    socket, every write under ``ws_write_timeout``). The stream is closed when both are
    done.

Error handling:
    Nothing a client sends raises out of :meth:`Session.run`. A failed or timed-out
    write ends the session at once. The session always unregisters from the hub and
    hands its snapshot and presence to the broker's expiry.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import TYPE_CHECKING

import trio

from ..protocol.connection import CableConnection
from ..protocol.events import (
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
from .outbox import Outbox

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Session"]

log = logging.getLogger("cableway.session")

_READ_SIZE = 65536


class Session:
    """One client: a core session, an outbox and the socket.

    Subclasses set :attr:`wire_kind` and implement :meth:`encode` (one protocol message
    -> wire bytes), :meth:`_on_data` (bytes from the client) and :meth:`_close_transport`
    (queue whatever ends the transport, e.g. a close frame).
    """

    #: sessions with the same kind get the same bytes for the same message
    wire_kind = "?"

    def __init__(self, server: Server, stream: trio.abc.Stream, core: CableConnection) -> None:
        self.server = server
        self.stream = stream
        self.core = core
        self.sid = core.sid
        self.outbox = Outbox(server.config.ws_max_pending_size)
        self._pending_close: tuple[str, bool, int, str] | None = None
        self._wake: trio.CancelScope | None = None
        self._closing = False
        self._writing = False
        #: the earliest deadline this session has in the server's timer heap
        self.scheduled_at = math.inf
        self._done = trio.Event()
        # the socket's descriptor for direct writes (-1: go through the writer task)
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._held: dict[str, list[tuple[int | None, bytes]]] = {}
        self._held_size = 0

    def __hash__(self) -> int:
        return id(self)

    # -- to implement ------------------------------------------------------------------

    def encode(self, text: str) -> bytes | None:
        """Wire bytes of one protocol message for this kind of session (None: drop)."""
        raise NotImplementedError

    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _close_transport(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def _on_start(self) -> None:
        """Called once before the first read (e.g. to parse data read with the request)."""

    async def _after_close(self) -> None:
        """Called by the reader once the session is closing (e.g. await a close reply)."""

    def _native_ping(self, payload: bytes) -> None:
        """Send a transport-level ping, where the transport has one."""

    def _abort_bytes(self) -> bytes:
        """What to send when the session fails unexpectedly (e.g. a 1011 close frame)."""
        return b""

    # -- called from other tasks (fan-out, shutdown, remote disconnect) ---------------

    def push_frame(self, frame: bytes) -> None:
        """Send or queue pre-built bytes; on overflow disconnect the client as ``too_slow``.

        When nothing is queued and no write is in flight, the bytes go straight to the
        socket without waking the writer task (the common case of a fan-out: one
        non-blocking ``send`` per subscriber); only what the kernel does not take at
        once is queued for the writer, which applies the write deadline.
        """
        if self._closing or self._pending_close is not None:
            return
        fd = self._fd
        if fd >= 0 and not self._writing and not self.outbox.size:
            try:
                sent = os.write(fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # the peer is gone: the writer's send reports it and closes
            if sent:
                self.server.metrics.inc("data_sent_total", sent)
                if sent == len(frame):
                    return
                frame = frame[sent:]
        if not self.outbox.push(frame):
            self.outbox.clear()
            self.server.metrics.inc("disconnected_slow_clients_total")
            self.request_close("too_slow", reconnect=True, code=1000)

    def hold(self, identifier: str, offset: int | None, frame: bytes) -> None:
        """Keep a live message of a restored subscription until its history is in."""
        self._held_size += len(frame)
        limit = self.outbox.max_bytes
        if limit and self._held_size > limit:
            self._held.clear()
            self._held_size = 0
            self.server.metrics.inc("disconnected_slow_clients_total")
            self.request_close("too_slow", reconnect=True, code=1000)
            return
        self._held.setdefault(identifier, []).append((offset, frame))

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        """Ask the session to send ``disconnect`` and close; returns at once."""
        if self._closing or self._pending_close is not None:
            return
        self._pending_close = (reason, reconnect, code, close_reason)
        if self._wake is not None:
            self._wake.cancel()

    async def wait_closed(self) -> None:
        await self._done.wait()

    # -- the session ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                # the reader is done: let the writer flush what is queued, bounded
                self.outbox.close()
        except Exception:
            # a bug must cost this session only: tell the client, log once, close
            log.exception("unexpected error in session sid=%s", self.sid)
            self._closing = True
            data = self._abort_bytes()
            if data:
                with (
                    trio.move_on_after(1),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await self.stream.send_all(data)
        finally:
            self._closing = True
            self._fd = -1
            self._unregister()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()
            self._done.set()

    async def _writer(self, scope: trio.CancelScope) -> None:
        timeout = self.server.config.ws_write_timeout
        metrics = self.server.metrics
        while True:
            data = await self.outbox.take()
            if not data:
                return
            self._writing = True
            try:
                with trio.fail_after(timeout):
                    await self.stream.send_all(data)
                metrics.inc("data_sent_total", len(data))
                self._writing = False
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                metrics.inc(
                    "timeout_server_msg_total"
                    if isinstance(exc, trio.TooSlowError)
                    else "failed_server_msg_total"
                )
                log.debug("write failed sid=%s", self.sid)
                self._closing = True
                scope.cancel()
                return

    async def _reader(self) -> None:
        self.apply()
        self._on_start()
        while not self._closing:
            data: bytes | None = b""
            # timers (pings, pong and hold deadlines) are fired by the server's shared
            # timer task; this scope is only woken to close
            with trio.CancelScope() as wake:
                self._wake = wake
                if self._pending_close is not None:
                    wake.cancel()
                try:
                    data = bytes(await self.stream.receive_some(_READ_SIZE))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = None
            self._wake = None
            if wake.cancelled_caught:
                if self._pending_close is not None:
                    reason, reconnect, code, close_reason = self._pending_close
                    self.core.disconnect(
                        reason, reconnect=reconnect, code=code, close_reason=close_reason
                    )
                    self.apply()
                continue
            if not data:
                return  # EOF or reset: the peer vanished
            self.server.metrics.inc("data_rcvd_total", len(data))
            self._on_data(data)
        await self._after_close()

    def on_timer(self, now: float, unix_time: float) -> None:
        """Fire the core's due timers (called by the server's timer task)."""
        if self._closing:
            return
        self.core.handle_timer(now, unix_time=unix_time)
        self.apply()
        if self.closing and self._wake is not None:
            self._wake.cancel()  # e.g. no_pong: let the reader finish the close

    @property
    def closing(self) -> bool:
        """Whether the session stopped taking input (it is closing or closed)."""
        return self._closing

    def apply(self) -> None:
        """Carry out what the core asked for, until it asks for nothing more."""
        self._apply()
        self.server.schedule(self)

    def _apply(self) -> None:
        server = self.server
        while events := self.core.events():
            overflow = False
            for event in events:
                if isinstance(event, SendMessage):
                    data = self.encode(event.text)
                    if data is not None and not overflow and not self.outbox.push(data):
                        overflow = True
                elif isinstance(event, StreamAdded):
                    server.add_subscriber(event.stream, event.identifier, self)
                elif isinstance(event, StreamRemoved):
                    server.remove_subscriber(event.stream, event.identifier, self)
                    self._drop_held(event.identifier)
                elif isinstance(event, ReleaseHeld):
                    after = event.after
                    for offset, frame in self._drop_held(event.identifier):
                        if after is None or offset is None or offset > after:
                            self.push_frame(frame)
                elif isinstance(event, CloseConnection):
                    self._close_transport(event.code, event.reason)
                    self._closing = True
                elif isinstance(event, NativePing):
                    self._native_ping(event.payload)
                elif isinstance(event, Publish):
                    server.publish([event.publication])
                elif isinstance(event, HistoryRequest):
                    server.answer_history(self.core, event)
                elif isinstance(event, PresenceRequest):
                    server.answer_presence(self.core, event)
                elif isinstance(event, SessionChanged):
                    if server.broker is not None:
                        server.broker.save_session(event.sid, event.snapshot)
                elif isinstance(event, CommandIgnored):
                    server.metrics.inc("failed_client_msg_total")
                    log.debug(
                        "ignored command sid=%s command=%r reason=%r",
                        self.sid,
                        event.command,
                        event.detail,
                    )
            if overflow:
                # the client does not read what it asks for: drop it, as for broadcasts
                self.outbox.clear()
                server.metrics.inc("disconnected_slow_clients_total")
                self.core.disconnect("too_slow", reconnect=True)

    def _drop_held(self, identifier: str) -> list[tuple[int | None, bytes]]:
        frames = self._held.pop(identifier, [])
        self._held_size -= sum(len(frame) for _, frame in frames)
        return frames

    def _unregister(self) -> None:
        server = self.server
        for identifier, stream in self.core.subscriptions.items():
            server.remove_subscriber(stream, identifier, self)
        self.core.subscriptions.clear()
        server.sessions.discard(self)
        broker = server.broker
        if broker is not None:
            now = time.time()
            broker.release_session(self.sid, now=now)
            for _presence_id, stream in self.core.presence.values():
                broker.presence_disconnect(stream, self.sid, now=now)
