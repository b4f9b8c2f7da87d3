"""What every client session shares, whatever its transport (WebSocket or SSE).

Resource handling:
    One task per session, the *reader* (socket -> core), and no nursery of its own;
    idle on a socket, it is parked in the server's :class:`.ReadPoller`, whose task
    reads and handles a short command itself (:meth:`Session.readable`: one task step
    per read) and wakes the reader only for what needs it (an end of input, a close,
    an awaited call, an error).
    Timers (pings, pong and hold deadlines) are fired by the server's shared timer
    task. Output goes straight to the socket (a non-blocking write) whenever nothing is
    queued; only what the kernel does not take is left in the outbox, and then a
    *writer* task is started (in the server's handler nursery, or in a nursery of the
    session's own when the server is not running, as in tests) until the outbox is
    empty; a socket that takes nothing for ``ws_write_timeout`` ends the session. An
    idle session has no writer task. The session waits for its writer before it closes
    the stream. (That sending half is :mod:`.output`.)

Slow clients:
    A client is too slow when, as more output is due, more than ``ws_max_pending_size``
    bytes of *earlier* output are still queued here after the kernel took all it would
    (see :meth:`Session._admit`): the bytes being sent never count against themselves,
    so one publication of any size reaches a client that reads. Dropping it keeps the
    frame in flight whole (:meth:`.Outbox.drop_unstarted`), then sends ``disconnect``
    and the close.

References:
    Nothing the session owns points back at it (no bound methods in its outbox, timers
    hold it weakly), so a closed session is freed by reference counting alone.

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
import weakref
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import outcome
import trio

from ..node.backend import Answer
from ..node.dispatch import dispatch
from ..node.held import HeldMessages
from ..node.node import Node
from ..node.rpc import RpcSession
from ..protocol.connection import CableConnection
from ..protocol.events import Delegate
from .outbox import Outbox
from .output import OutputHost, SessionOutput, raw_socket
from .poller import ReadPoller, parked
from .rpc_client import answer_delegated, release_delegated
from .teardown import close_stream
from .tls import DirectStream

if TYPE_CHECKING:
    from .rpc_client import DisconnectQueue, HttpRpc

__all__ = ["Session", "SessionHost"]

log = logging.getLogger("cableway.session")

_READ_SIZE = 65536

#: what the poller's task tells a parked reader it rescheduled (:meth:`Session.readable`;
#: ``None``: woken, read the socket yourself): the peer is gone (end of input or reset),
#: or what was read is handled and the reader's task must go on from there. Distinct
#: bytes objects, told apart by identity (a read never returns one of them), so that
#: the reader's wait needs no variable of its own (memory per idle connection)
_GONE = bytes(bytearray(b"gone"))
_HANDLED = bytes(bytearray(b"handled"))


class _HandlerError(Exception):
    """What handling bytes the poller's task read raised, raised in the reader's task
    (as its cause): reported as a bug there, never taken for a reset."""


#: pings of every session are due on multiples of this many seconds (the first ping
#: of a session moves up to the next one, see CableConnection.align_pings): sessions
#: that connected within the same slice of time share their ping ticks, so the node's
#: timer task (.timers) sends each tick's frame to all of them in one batch
PING_GRID = 0.1


class SessionHost(OutputHost, Protocol):
    """What a session needs from its node: the trio server implements it.

    The node layer (registry, publishing, the backend: ``node``), the shared timer
    (``schedule``), the nursery writers and late answers start in, the counters, and
    the ``ws_*`` limits of ``config``.
    """

    @property
    def task_nursery(self) -> trio.Nursery | None: ...

    @property
    def poller(self) -> ReadPoller | None: ...

    @property
    def node(self) -> Node[Session, Any]: ...

    def schedule(self, session: Session) -> None: ...

    def file_pings(self, sessions: list[Session]) -> None: ...

    rpc: HttpRpc | None  # --rpc_host
    disconnects: DisconnectQueue | None


class Session(SessionOutput):
    """One client: a core session, an outbox and the socket.

    Subclasses set :attr:`wire_kind` and implement :meth:`encode` (one protocol message
    -> wire bytes), :meth:`_on_data` (bytes from the client) and :meth:`_close_transport`
    (queue whatever ends the transport, e.g. a close frame).
    """

    # no instance dictionary: one idle session per connection, every byte counts
    __slots__ = (
        "__weakref__",
        "_batching",
        "_delegated",
        "_direct",
        "_done",
        "_fd",
        "_finished",
        "_nursery",
        "_parked",
        "_pending_close",
        "_ping_at",
        "_ping_settings",
        "_sock",
        "_wake",
        "_wake_requested",
        "core",
        "counters",
        "held",
        "node",
        "outbox",
        "ref",
        "rpc",
        "scheduled_at",
        "server",
        "sid",
        "stream",
    )

    server: SessionHost

    #: sessions with the same kind get the same bytes for the same message
    wire_kind = "?"

    def __init__(self, server: SessionHost, stream: trio.abc.Stream, core: CableConnection) -> None:
        self.server = server
        self.node = server.node
        self.counters = server.metrics
        self.stream = stream
        self.core = core
        self.sid = core.sid
        core.align_pings(PING_GRID)
        self.outbox = Outbox(server.config.ws_max_pending_size)
        #: how the server's timer heap refers to this session (it never keeps it alive)
        self.ref = weakref.ref(self)
        #: where writers are started on demand, while the session runs
        self._nursery: trio.Nursery | None = None
        self._writer_active = False
        self._writer_done: trio.Event | None = None
        self._batching = False
        self._pending_close: tuple[str, bool, int, str] | None = None
        #: how the reader is woken to close: see _wake_reader
        self._wake_requested = False
        self._wake: trio.CancelScope | None = None
        #: the reader's task while it is parked on the socket, else None
        self._parked: trio.lowlevel.Task | None = None
        self._writer_parked = False
        self._closing = False
        #: the earliest deadline this session has in the server's timer heap
        self.scheduled_at = math.inf
        self._done: trio.Event | None = None  # created by wait_closed()
        self._finished = False
        # the socket's descriptor for direct writes (-1: go through the writer task)
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        #: the same socket for the timer task's ping (None: no direct writes)
        self._sock = raw_socket(stream)
        if self._sock is None:
            self._fd = -1
        #: the next plain ping the timer task may take without the core (inf: none),
        #: see timer_deadline; with its interval and precision
        self._ping_at = math.inf
        self._ping_settings = core.settings
        #: TLS: written at once like a socket, through the stream (see _send_direct)
        self._direct: DirectStream | None = (
            stream if hasattr(stream, "send_nowait") else None  # type: ignore[assignment]
        )
        #: live messages of subscriptions waiting for their history (cableway.node.held)
        self.held: HeldMessages[bytes] = HeldMessages(server.config.ws_max_pending_size)
        self.snapshot = None
        #: with --rpc_host: the application's state, the commands awaiting their call
        self.rpc: RpcSession | None = None
        self._delegated: deque[Delegate] | None = None  # created by the first delegate()

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

    def wire_size(self, frame: bytes) -> int:
        return len(frame)

    def _push_messages(self, identifier: str, frames: list[tuple[int | None, bytes]]) -> int:
        """Deliver broadcast frames (with their offsets) of one subscription, in order:
        held while the subscription waits for its history, else written together (one
        write). Returns the bytes written at once."""
        held = self.core.held
        if held and identifier in held:
            for offset, frame in frames:
                self.hold(identifier, offset, frame)
            return 0
        if not frames:
            return 0
        if len(frames) == 1:
            return self._push(frames[0][1])
        return self._push(b"".join(frame for _, frame in frames))

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        """Ask the session to send ``disconnect`` and close; returns at once."""
        if self._closing or self._pending_close is not None:
            return
        self._pending_close = (reason, reconnect, code, close_reason)
        self._writable = False
        self._wake_reader()

    async def wait_closed(self) -> None:
        if self._finished:
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    # -- the session ------------------------------------------------------------------

    def run(self) -> Coroutine[Any, Any, None]:
        """The session, to await until it has closed: one coroutine frame (an idle
        session parks its chain of frames, each memory per connection); a nursery of its
        own only when the server is not running (a test drives the connection)."""
        nursery = self.server.task_nursery
        return self._serve(nursery) if nursery is not None else self._serve_alone()

    async def _serve_alone(self) -> None:
        async with trio.open_nursery() as nursery:
            await self._serve(nursery)

    async def _serve(self, nursery: trio.Nursery) -> None:
        """Read and handle the client's bytes until the session closes, then close. A
        socket's descriptor is read directly once readable (parked in the server's
        :class:`.ReadPoller`, or ``wait_readable`` with no server); else ``receive_some``."""
        self._nursery = nursery
        try:
            self.apply()  # writes anything queued before the session started with it
            self._on_start()
            await self._run_delegated()
            while not self._closing:
                data: bytes | None = b""
                # timers are fired by the server's timer task: woken only to close
                if not self._wake_requested:
                    fd = self._fd
                    if fd >= 0:
                        self._parked = trio.lowlevel.current_task()
                        try:
                            if (poller := self.server.poller) is None:
                                await trio.lowlevel.wait_readable(fd)
                                data = os.read(fd, _READ_SIZE) or None
                            else:  # parked cheaply (see .poller): no trio wait chain
                                # (the task parks mostly once: later reads re-park
                                # in readable(), in the poller's task)
                                poller.park(fd, self, first=True)
                                # None: woken, read; else what readable() says
                                data = await parked(self._unpark)
                                if data is None:
                                    data = os.read(fd, _READ_SIZE) or None
                        except BlockingIOError:
                            data = b""
                        except trio.ClosedResourceError:
                            data = b"" if self._wake_requested else None
                        except OSError:
                            data = None  # reset
                        finally:
                            self._parked = None
                        if data is _HANDLED:  # by readable(), in the poller's task
                            await self._run_delegated()
                            continue
                        if data is _GONE:
                            data = None
                    else:
                        try:
                            with trio.CancelScope() as wake:
                                self._wake = wake
                                data = bytes(await self.stream.receive_some(_READ_SIZE)) or None
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            data = None  # EOF or reset
                        finally:
                            self._wake = None
                if self._wake_requested:
                    self._wake_requested = False
                    if self._pending_close is not None:
                        reason, reconnect, code, close_reason = self._pending_close
                        self.core.disconnect(
                            reason, reconnect=reconnect, code=code, close_reason=close_reason
                        )
                        self.apply()
                    continue  # what was read with the wake-up is not for a closing session
                if data is None:
                    break  # EOF or reset: the peer vanished
                if not data:
                    continue  # a spurious wake-up
                self.server.metrics.inc("data_rcvd_total", len(data))
                self._on_data(data)
                await self._run_delegated()
            else:
                await self._after_close()
            # done reading: the writer flushes what is queued (every write has a deadline)
            self.outbox.close()
            self._flush()
            done = self._writer_done
            if self._writer_active and done is not None:
                await done.wait()
        except Exception:
            # a bug must cost this session only: tell the client, log once, close
            log.exception("unexpected error in session sid=%s", self.sid)
            self._closing = True
            data = self._abort_bytes()
            if self._fd >= 0 and not self._writer_active:
                self._write_now()  # what is whole in the outbox first (e.g. a 101)
            # never after a frame cut in two (bytes of it are still pending)
            if data and not self._writer_active and not self.outbox.started:
                with (
                    trio.move_on_after(1),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await self.stream.send_all(data)
        finally:
            self._nursery = None
            self._closing = True
            self._fd = -1
            self.leave()
            # (a socket: at once, no checkpoint; no writer task: nothing waits on it)
            await close_stream(self.stream, waited_on=self._writer_active)
            self._finished = True
            if self._done is not None:
                self._done.set()

    def _wake_reader(self) -> None:
        """Wake the reader to close (``_wake_requested`` is seen at its next turn).

        In the poller: rescheduled from there; in ``wait_readable`` (no server): by
        ``notify_closing``, or by the writer once done if it waits on the fd; else
        (no descriptor, an RPC call) by cancelling its cancel scope.
        """
        self._wake_requested = True
        if self._wake is not None:
            self._wake.cancel()
        elif (task := self._parked) is not None:
            poller = self.server.poller
            if poller is not None:
                if poller.wake(self._fd):
                    trio.lowlevel.reschedule(task)
            elif not self._writer_parked:
                trio.lowlevel.notify_closing(self._fd)

    def readable(self) -> None:
        """The parked reader's socket is readable (:class:`.ReadPoller`, in its task):
        read it and handle what came here, and wait again (one task step per read);
        reschedule the reader's task only for what needs it: the peer gone, a close,
        a delegated command, a wake-up, an error (each handled there as if the task
        had read the bytes itself). Never raises."""
        task = self._parked
        poller = self.server.poller
        if task is None or poller is None:  # pragma: no cover - never while parked
            return
        fd = self._fd
        if self._wake_requested or self._closing or self._delegated:
            poller.wake(fd)  # (none of these is parked: the task reads)
            trio.lowlevel.reschedule(task)
            return
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:  # a spurious wake-up: wait again
            self._wait_again(poller, fd, task)
            return
        except OSError:
            data = b""  # reset
        if not data:
            poller.wake(fd)
            trio.lowlevel.reschedule(task, outcome.Value(_GONE))
            return
        # handled here, not parked meanwhile: a wake-up it asks for (e.g. a close by
        # another session's command) is seen below, not rescheduled by _wake_reader
        self._parked = None
        try:
            self.server.metrics.inc("data_rcvd_total", len(data))
            self._on_data(data)
        except Exception as exc:  # the task reports it (Session._serve)
            self._parked = task
            poller.wake(fd)
            error = _HandlerError("while handling bytes read by the poller")
            error.__cause__ = exc
            trio.lowlevel.reschedule(task, outcome.Error(error))
            return
        self._parked = task
        if self._closing or self._wake_requested or self._delegated or self._fd < 0:
            poller.wake(fd)
            trio.lowlevel.reschedule(task, outcome.Value(_HANDLED))
            return
        self._wait_again(poller, fd, task)

    @staticmethod
    def _wait_again(poller: ReadPoller, fd: int, task: trio.lowlevel.Task) -> None:
        """Stay parked in the poller; if the socket cannot be re-armed (never while the
        session holds it), the task reads it itself and meets the error there."""
        try:
            poller.rearm(fd)
        except OSError:
            poller.wake(fd)
            trio.lowlevel.reschedule(task)

    def _unpark(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        return self.server.poller.forget(self._fd)  # type: ignore[union-attr]  # parked there

    async def _run_delegated(self) -> None:
        """RPC for the delegated commands; reading waits meanwhile (as in AnyCable-Go)."""
        delegated = self._delegated
        if not delegated:
            return
        try:
            with trio.CancelScope() as wake:
                self._wake = wake
                if self._wake_requested:
                    wake.cancel()
                if self.server.rpc is not None and self.rpc is not None:
                    await answer_delegated(self.server.rpc, self.rpc, self, delegated)
        finally:
            self._wake = None
        if wake.cancelled_caught:
            self.server.metrics.inc("rpc_canceled_total", len(delegated) + 1)
            delegated.clear()

    def timer_deadline(self) -> float | None:
        """The core's next deadline (for :meth:`.Timers.schedule`), and what the timer
        task may do without the core until the next call on it: the plain pings of
        :meth:`CableConnection.plain_pings_at`, the next one due at ``_ping_at``
        (``inf``: none; the core stays the authority, this caches its answer)."""
        self.resume_pings()
        core = self.core
        deadline = core.next_deadline()
        self.lease_pings()
        return deadline

    def lease_pings(self) -> None:
        """Cache the core's :meth:`~CableConnection.plain_pings_at` in ``_ping_at``."""
        plain = self.core.plain_pings_at()
        self._ping_at = math.inf if plain is None else plain

    def resume_pings(self) -> None:
        """Give the core back the pings the timer task took without it; call it before
        any call on the core that reads its ping schedule."""
        if self._ping_at != math.inf:
            self.core.resume_pings(self._ping_at)
            self._ping_at = math.inf

    def take_plain_ping(self, now: float, early: float = 0.0) -> float | None:
        """:meth:`CableConnection.take_plain_ping`, the cached pings given back first."""
        self.resume_pings()
        return self.core.take_plain_ping(now, early)

    def on_timer(self, now: float, unix_time: float) -> int:
        """Fire the core's due timers (called by the node's timer task when more than a
        plain ping is due, see :meth:`.Timers.fire_due`); returns ``0`` (what is
        written goes through :meth:`apply`, which counts it)."""
        self.resume_pings()
        if self._closing:
            return 0
        self.core.handle_timer(now, unix_time=unix_time)
        self.apply()
        if self.closing:
            self._wake_reader()  # e.g. no_pong: let the reader finish the close
        return 0

    @property
    def closing(self) -> bool:
        """Whether the session stopped taking input (it is closing or closed)."""
        return self._closing

    def apply(self) -> None:
        """Carry out what the core asked for, until it asks for nothing more.

        What it queues is written once at the end (one write for e.g. a welcome and a
        confirmation that came out of the same read).
        """
        self._batching = True
        try:
            self._apply()
        finally:
            self._batching = False
        self._flush()
        self.server.schedule(self)

    def _apply(self) -> None:
        dispatch(self.core, self)

    # -- what the core's events mean here (cableway.node.dispatch.EventSink) ----------

    def send_message(self, text: str) -> bool:
        data = self.encode(text)
        if data is not None:
            if not self._admit():
                return False
            self.outbox.push(data)
            self._writable = False
        return True

    def close_transport(self, code: int, reason: str) -> None:
        self._close_transport(code, reason)
        self._closing = True

    def native_ping(self, payload: bytes) -> None:
        self._native_ping(payload)

    def delegate(self, command: Delegate) -> None:
        if self._delegated is None:
            self._delegated = deque()
        self._delegated.append(command)

    def answer_later(self, pending: Awaitable[Answer]) -> None:
        """A backend answers later (Redis): apply its answer in a task, if still open."""
        nursery = self._nursery or self.server.task_nursery
        if nursery is None:  # not running: nothing can wait for the answer
            close = getattr(pending, "close", None)
            if close is not None:
                close()
            return
        nursery.start_soon(self._apply_answer, pending)

    async def _apply_answer(self, pending: Awaitable[Answer]) -> None:
        try:
            answer = await pending
            if self._closing:
                return
            answer(self.core)
            self.apply()
        except Exception:  # a bug must cost one answer, never the server
            log.exception("unexpected error answering a broker request")

    def release_application(self) -> None:
        if self.rpc is not None:
            release_delegated(self.node.registry, self, self.rpc, self.server.disconnects)
