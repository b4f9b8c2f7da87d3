"""A session's output: bytes straight to the socket when nothing waits, else the outbox
and a writer task (see :mod:`.session` for the whole session's resource handling).

:class:`SessionOutput` is the half of :class:`~.session.Session` that sends: pushing
pre-built frames (the fan-out and the timer task write around it on their fast path,
with the same rules), queueing behind pending bytes, the slow-client bound
(:meth:`SessionOutput._admit`), flushing, and the writer task that drains a socket that
did not take everything. Writes never interleave: a frame goes to the socket directly
only when nothing is queued and no writer runs; the rest of a frame the kernel took in
part is finished before anything else (:meth:`.Outbox.push_started`).

Writable now:
    :attr:`SessionOutput._writable` is one attribute the hot loops read instead of five
    (the fan-out's per-subscriber loop and the timer task's per-ping loop, for every
    session): ``True`` only while a frame may go straight to the socket, that is the
    session has a descriptor, is not closing and no close is pending, no writer runs
    and nothing is queued. Every place that breaks one of these clears it at once
    (queueing bytes, starting the writer, asking to close, setting ``_closing``,
    dropping the descriptor); it is set again only by :meth:`SessionOutput._recheck`,
    which tests all five (after a flush, when the writer ends, after a whole direct
    write). Stale ``False`` costs the general path (:meth:`SessionOutput._push`, the
    same checks); it is never stale ``True`` (``tests/transport/test_writable.py``
    checks it after random operations).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import trio

from ..node.session import NodeSession
from ..ops.metrics import Metrics
from .outbox import Outbox
from .tls import DirectStream, send_queued, write_queued

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["OutputHost", "SessionOutput", "raw_socket", "send_bytes"]

log = logging.getLogger("cableway.session")


#: a socket's ``send()``, called unbound as ``send_bytes(sock, data)``: every write of a
#: session made at once (the timer task's ping, the fan-out's and :meth:`_push`'s), the
#: one call for it (no bound method kept per session; ``sendto``'s kernel entry costs
#: less than ``write``'s, see docs/benchmarks.md). Only ever called with a socket: a
#: session has one while ``_fd >= 0`` (it sets ``_fd`` to -1 before it closes it).
send_bytes = cast("Callable[[socket.socket | None, bytes], int]", socket.socket.send)


def raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The standard-library socket under a plain trio socket stream (non-blocking, as
    trio keeps it), for writes that cannot wait; ``None`` for any other stream."""
    if not isinstance(stream, trio.SocketStream):
        return None
    sock = getattr(stream.socket, "_sock", None)  # trio's wrapper keeps it there
    return sock if isinstance(sock, socket.socket) else None


class OutputHost(Protocol):
    """What a session's output needs from its node: the counters and the ``ws_*`` limits."""

    @property
    def config(self) -> Config: ...

    @property
    def metrics(self) -> Metrics: ...


class SessionOutput(NodeSession[bytes]):
    """The sending half of a :class:`~.session.Session` (see the module docstring)."""

    # the output's own state; the rest (declared below) is the session's
    __slots__ = ("_stopping", "_writable", "_writer_active", "_writer_done", "_writer_parked")

    _stopping: bool
    _writable: bool
    _writer_active: bool
    _writer_done: trio.Event | None
    _writer_parked: bool

    server: OutputHost
    stream: trio.abc.Stream
    outbox: Outbox
    sid: str
    _fd: int
    _sock: socket.socket | None
    _direct: DirectStream | None
    _nursery: trio.Nursery | None
    _batching: bool
    _pending_close: tuple[str, bool, int, str] | None
    _parked: trio.lowlevel.Task | None
    _wake_requested: bool

    def _wake_reader(self) -> None:
        raise NotImplementedError

    @property
    def _closing(self) -> bool:
        """Whether the session stopped: nothing more is sent but what is queued."""
        return self._stopping

    @_closing.setter
    def _closing(self, value: bool) -> None:
        self._stopping = value
        self._writable = False  # (also its first value: the session sets _closing first)

    def _recheck(self) -> None:
        """Set :attr:`_writable` from what it stands for (see the module docstring)."""
        self._writable = (
            self._fd >= 0
            and not self._stopping
            and self._pending_close is None
            and not self._writer_active
            and not self.outbox.size
        )

    def push_frame(self, frame: bytes) -> None:
        """Send or queue pre-built bytes (straight to the socket when nothing waits, see
        the module docstring); on overflow disconnect the client as ``too_slow``."""
        sent = self._push(frame)
        if sent:
            self.server.metrics.inc("data_sent_total", sent)

    def _push(self, frame: bytes) -> int:
        """:meth:`push_frame` without the metrics: the bytes written at once."""
        if self._closing or self._pending_close is not None:
            return 0
        if self._fd >= 0 and not self._writer_active and not self.outbox.size:
            try:
                sent = send_bytes(self._sock, frame)
            except OSError:  # BlockingIOError, or the peer is gone (the writer reports it)
                sent = 0
            if sent == len(frame):
                self._writable = True  # every condition of it just held
                return sent
            return self._short_write(frame, sent)
        self._enqueue(frame)
        return 0

    def _short_write(self, frame: bytes, sent: int) -> int:
        """After a write made at once took ``sent`` bytes of ``frame``, fewer than all
        (0: refused, or the peer is gone): the rest goes behind, through the outbox
        (the rest of a started frame is never refused; a frame not started is bounded
        like any queued one). Returns ``sent``. The one home of this rule for every
        inlined write (the fan-out's, ``fan_out_one``'s, the timer's ping, :meth:`_push`)."""
        if sent:
            self._put_back(memoryview(frame)[sent:])
        else:
            self._enqueue(frame)
        return sent

    def _enqueue(self, frame: bytes) -> None:
        """Queue whole frames behind what is pending, unless the client is too slow."""
        if not self._admit():
            self.overflow()
            return
        self.outbox.push(frame)
        self._writable = False
        self._kick()

    def _put_back(self, rest: memoryview) -> None:
        """Queue the rest of bytes the kernel took in part (never refused: it finishes
        a frame already on the wire)."""
        self.outbox.push_started(rest)
        self._writable = False
        self._kick()

    def _send_control(self, data: bytes) -> None:
        """Queue protocol-control bytes (pings, close frames) without the bound."""
        self.outbox.push(data)
        self._writable = False
        self._kick()

    def _admit(self) -> bool:
        """Whether the client may be sent more output, or is too slow (the module
        docstring says when: what is about to be queued never counts)."""
        outbox = self.outbox
        if not outbox.over:
            return True
        if self._fd >= 0:
            self._write_now()
            return not outbox.over
        if self._direct is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                self._send_direct()
            return not outbox.over
        return False

    def drop_unsent(self) -> None:
        """The client is too slow: drop its unstarted output (the frame in flight is
        finished first)."""
        self.outbox.drop_unstarted()

    def _kick(self) -> None:
        """Bytes were queued: flush them at once (unless batching or a writer runs)."""
        if not self._batching and not self._writer_active:
            self._flush()

    def _write_now(self) -> int:
        """Give the socket what it takes of the outbox now, without waiting; the bytes
        written (a gone peer is left for the writer to report)."""
        try:
            sent = self.outbox.write_to(self._fd)
        except OSError:  # BlockingIOError, or the peer is gone
            return 0
        if sent:
            self.server.metrics.inc("data_sent_total", sent)
        return sent

    def _send_direct(self) -> bool:
        """TLS: :func:`.tls.send_queued`; ``True`` when nothing is left to send."""
        assert self._direct is not None
        return send_queued(self._direct, self.outbox, self.server.metrics)

    def _flush(self) -> None:
        """Write what is queued straight to the socket; leave the rest to a writer task.

        Returns at once. The writer, started in the session's nursery only when the
        kernel did not take everything (or the stream has no descriptor), waits for the
        socket under the write deadline and ends when the outbox is empty.
        """
        outbox = self.outbox
        if self._writer_active:
            return
        if not outbox.size:
            self._recheck()
            return
        if self._fd >= 0:
            self._write_now()
            if not outbox.size:
                self._recheck()
                return
        elif self._direct is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                if self._send_direct():
                    return  # (a broken connection: the writer reports it)
        nursery = self._nursery
        if nursery is not None:
            self._writer_active = True
            self._writable = False
            self._writer_done = trio.Event()
            nursery.start_soon(self._writer, self._writer_done)

    async def _writer(self, done: trio.Event) -> None:
        """Write the outbox until it is empty; on failure end the session. Never raises.

        On a socket, each wait for it to take more is bounded by ``ws_write_timeout``
        (the deadline moves whenever the kernel takes bytes: a client that reads is
        never cut off in the middle of a long backlog). Writes go through the outbox,
        so nothing is ever in flight outside it (see :meth:`_admit`).
        """
        timeout = self.server.config.ws_write_timeout
        metrics = self.server.metrics
        outbox = self.outbox
        try:
            fd = self._fd
            direct = self._direct
            if direct is not None:
                await write_queued(direct, outbox, metrics, timeout)
            elif fd < 0:
                while data := outbox.take_nowait():
                    with trio.fail_after(timeout):
                        await self.stream.send_all(data)
                    metrics.inc("data_sent_total", len(data))
            else:
                deadline = trio.current_time() + timeout
                while outbox.size:
                    # the session sets _fd to -1 before it closes the socket: never
                    # write to a descriptor that may since belong to another connection
                    fd = self._fd
                    if fd < 0:
                        raise trio.ClosedResourceError
                    try:
                        sent = outbox.write_to(fd)
                    except BlockingIOError:
                        sent = 0
                    if sent:
                        metrics.inc("data_sent_total", sent)
                        if not outbox.size:
                            break
                        deadline = trio.current_time() + timeout
                    self._writer_parked = True
                    try:
                        with trio.move_on_at(deadline) as waited:
                            await trio.lowlevel.wait_writable(fd)
                    finally:
                        self._writer_parked = False
                        if self._wake_requested and self._parked:
                            self._wake_reader()  # deferred while this task waited
                    if waited.cancelled_caught:
                        raise trio.TooSlowError
        except (
            trio.TooSlowError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
        ) as exc:
            self.write_failed(timed_out=isinstance(exc, trio.TooSlowError))
            self._write_failed()
        except Exception:
            # it may run in the server's nursery: a bug must cost this session only
            log.exception("unexpected error in the writer of session sid=%s", self.sid)
            self._write_failed()
        finally:
            self._writer_active = False
            self._recheck()
            done.set()

    def _write_failed(self) -> None:
        """Stop the session: nothing more can be sent, and the reader stops reading."""
        self._closing = True
        self.outbox.clear()
        self.outbox.close()
        self._wake_reader()
