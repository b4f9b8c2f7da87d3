"""The asyncio sessions: one per client, a core, a bounded outbox, a reader and a writer.

Each session is the :class:`~cableway.node.dispatch.EventSink` of its core; the node's
fan-out (:func:`cableway.node.fanout.fan_out`) queues broadcasts through :meth:`Session.push_frame`
and :meth:`~cableway.node.session.NodeSession.hold`. See :mod:`cableway.asgi` for the whole
driver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol

from ..config import Config
from ..node.backend import Answer
from ..node.bound import over_bound
from ..node.dispatch import dispatch
from ..node.held import HeldMessages
from ..node.node import Node
from ..node.rpc import RpcSession, answer_delegated, release_delegated
from ..node.session import NodeSession
from ..ops.metrics import Metrics
from ..protocol import messages
from ..protocol.connection import CableConnection
from ..protocol.events import Delegate
from ..protocol.sse import message_to_event
from .http import Message, Receive, Send
from .inprocess import InProcessRpc

__all__ = ["Outbox", "Session", "SessionHost", "SseSession", "WebSocketSession"]

log = logging.getLogger("cableway.asgi")


class SessionHost(Protocol):
    """What an asyncio session needs from the app: the node, the counters, the limits."""

    @property
    def config(self) -> Config: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def node(self) -> Node[Session, Any]: ...

    rpc: InProcessRpc | None  # application channels in this process


#: a wire item: what one protocol message becomes for one kind of session, with its size
_Wire = tuple[str | bytes, int]


class Outbox:
    """Pending wire items of one session, bounded in bytes; pushing never awaits.

    :attr:`size` counts every item not yet handed to the ASGI server: the writer takes
    one WebSocket message at a time, so what waits behind a ``send()`` that blocks is
    here, counts against the bound, and is what a too slow client's drop drops.
    """

    __slots__ = ("_closed", "_items", "_ready", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: deque[_Wire] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def push(self, item: str | bytes, size: int) -> bool:
        """Queue ``item``; ``False`` (nothing queued) when closed, or when what already
        waits is over the bound (:mod:`cableway.node.bound`: ``item`` itself never counts)."""
        if self._closed or over_bound(self.size, self.max_bytes):
            return False
        self._items.append((item, size))
        self.size += size
        self._ready.set()
        return True

    def clear(self) -> None:
        self._items.clear()
        self.size = 0

    def close(self) -> None:
        """Refuse further pushes; the writer still gets what is queued."""
        self._closed = True
        self._ready.set()

    async def take(self, one: bool) -> list[str | bytes]:
        """The next item (``one``) or everything pending, waiting for some; ``[]`` once
        closed and empty."""
        items = self._items
        while not items:
            if self._closed:
                return []
            await self._ready.wait()
            self._ready.clear()
        if one:
            item, size = items.popleft()
            self.size -= size
            return [item]
        taken = [item for item, _ in items]
        self.clear()
        return taken


class Session(NodeSession[_Wire]):
    """One client. Subclasses speak WebSocket or SSE over ASGI messages."""

    #: sessions of one kind get the same wire item for the same message
    wire_kind = "?"
    #: each wire item is its own ASGI message (WebSocket), or what is pending goes in one
    one_by_one = True

    def __init__(self, app: SessionHost, core: CableConnection, receive: Receive, send: Send):
        self.app = app
        self.node = app.node
        self.counters = app.metrics
        self.core = core
        self.sid = core.sid
        self.receive = receive
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.outbox = Outbox(app.config.ws_max_pending_size)
        #: (code, reason) once the core closed the session: sent after the outbox drained
        self.close_with: tuple[int, str] | None = None
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: live messages of subscriptions waiting for their history (cableway.node.held)
        self.held: HeldMessages[_Wire] = HeldMessages(app.config.ws_max_pending_size)
        self.snapshot = None
        self.done = asyncio.Event()
        #: in-process application channels: this session's state and waiting commands
        self.rpc: RpcSession | None = None
        self._delegated: deque[Delegate] = deque()

    def __hash__(self) -> int:
        return id(self)

    # -- per kind ------------------------------------------------------------------------

    async def _read(self) -> None:
        """Read from the client until it goes away."""
        raise NotImplementedError

    def _messages(self, items: list[str | bytes]) -> list[Message]:
        """The ASGI messages that send ``items`` (each one awaited under the deadline)."""
        raise NotImplementedError

    def _close_message(self, code: int, reason: str) -> Message:
        raise NotImplementedError

    # -- called from elsewhere (fan-out, shutdown, remote disconnect) ---------------------

    def wire_size(self, frame: _Wire) -> int:
        return frame[1]

    def push_frame(self, wire: _Wire) -> None:
        """Queue a shared wire item; on overflow disconnect the client as ``too_slow``."""
        if self._closing:
            return
        if not self.outbox.push(*wire):
            self.overflow()

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
            self.leave()
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
        metrics = self.app.metrics
        try:
            # each awaited send() has the whole deadline (timed on the loop's clock): it
            # moves whenever the ASGI server takes a message, as the trio driver's moves
            # whenever the kernel takes bytes; a send() that waits longer is a client
            # that stopped reading (every uvicorn send() waits while its buffer is full)
            while items := await self.outbox.take(self.one_by_one):
                for message in self._messages(items):
                    async with asyncio.timeout(timeout):
                        await self.send(message)
                metrics.inc("data_sent_total", sum(len(item) for item in items))
            if self.close_with is not None:
                async with asyncio.timeout(timeout):
                    await self.send(self._close_message(*self.close_with))
        except TimeoutError:
            # the ASGI server took nothing for ws_write_timeout: its buffer is full of
            # bytes for a client that stopped reading (docs/asgi.md): end the session
            self.write_failed(timed_out=True)
        except OSError:  # the client is gone (uvicorn: ClientDisconnected)
            self.write_failed(timed_out=False)
        except Exception as error:  # a bug, or an ASGI server refusing a message
            log.error("unexpected error writing sid=%s", self.sid, exc_info=error)

    def apply(self) -> None:
        """Carry out what the core asked for, until it asks for nothing more."""
        dispatch(self.core, self)
        self._arm_timer()

    # -- what the core's events mean here (cableway.node.dispatch.EventSink) -------------

    def send_message(self, text: str) -> bool:
        wire = self.encode(text)
        return wire is None or self.outbox.push(*wire)

    def close_transport(self, code: int, reason: str) -> None:
        self.close_with = (code, reason)
        self._closing = True
        self.outbox.close()

    @property
    def closing(self) -> bool:
        """Whether the session stopped taking output (it is closing or closed)."""
        return self._closing

    def native_ping(self, payload: bytes) -> None:
        """ASGI has no WebSocket ping message."""

    def delegate(self, command: Delegate) -> None:
        self._delegated.append(command)

    def drop_unsent(self) -> None:
        self.outbox.clear()

    def answer_later(self, pending: Awaitable[Answer]) -> None:
        """The memory backend answers at once; an awaitable answer is applied later."""
        self.loop.create_task(self._apply_answer(pending))

    async def _apply_answer(self, pending: Awaitable[Answer]) -> None:
        answer = await pending
        if not self._closing:
            answer(self.core)
            self.apply()

    def receive_message(self, message: str | bytes) -> None:
        """One client message into the core, then carry out its events."""
        self.take_message(message, now=self.loop.time())
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

    def release_application(self) -> None:
        if self.rpc is not None:
            release_delegated(self.node.registry, self, self.rpc, self.app.rpc)


class WebSocketSession(Session):
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
                size = len(data) if isinstance(data, bytes) else len(data.encode())
                self.app.metrics.inc("data_rcvd_total", size)
                self.receive_message(data)
                rpc = self.app.rpc
                if self._delegated and rpc is not None and self.rpc is not None:
                    await answer_delegated(rpc, self.rpc, self, self._delegated)

    def _messages(self, items: list[str | bytes]) -> list[Message]:
        return [{"type": "websocket.send", "text": item} for item in items]

    def _close_message(self, code: int, reason: str) -> Message:
        return {"type": "websocket.close", "code": code, "reason": reason}


class SseSession(Session):
    gauge = "sse_clients_num"
    one_by_one = False  # what is pending goes out as one body chunk

    def __init__(
        self,
        app: SessionHost,
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

    def _messages(self, items: list[str | bytes]) -> list[Message]:
        body = b"".join(item if isinstance(item, bytes) else item.encode() for item in items)
        return [{"type": "http.response.body", "body": body, "more_body": True}]

    def _close_message(self, code: int, reason: str) -> Message:
        return {"type": "http.response.body", "body": b"", "more_body": False}
