"""Accepting a listener's connections, for less than ``trio.SocketListener.accept``.

Per connection, trio's :class:`trio.SocketStream` sets ``TCP_NODELAY`` and
``TCP_NOTSENT_LOWAT`` (16 KiB) on the accepted socket: two ``setsockopt`` system calls.
Linux copies both from a listening socket to every socket it accepts, so an
:class:`Acceptor` sets them once on its listener, and builds the stream of each
accepted socket without them. Whether that holds is checked once per listener, on its
first connection (which gets trio's own stream): the two options read back from the
accepted socket before trio set them, and trio's stream holding nothing but what
:func:`_lean_stream` gives it. When either is not so (another system, another trio),
every connection gets trio's own stream, as before. The accept itself is the
standard-library socket's, waited on with ``trio.lowlevel.wait_readable``, with the
checkpoints and the errors of trio's ``SocketListener.accept``: a cancelled caller
accepts nothing, one scheduling point per connection, an aborted connection skipped, a
closed listener ``trio.ClosedResourceError``, anything else raised.
"""

from __future__ import annotations

import contextlib
import errno
import socket

import trio

try:  # what trio's SocketStream holds besides its socket (trio 0.2x-0.3x)
    from trio._util import ConflictDetector
except ImportError:  # pragma: no cover - another trio: its own streams
    ConflictDetector = None  # type: ignore[assignment,misc]

__all__ = ["Acceptor"]

#: what trio's SocketStream sets on every socket (its values)
_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
if hasattr(socket, "TCP_NOTSENT_LOWAT"):
    _OPTIONS.append((socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14))

#: trio.SocketListener.accept's: a listener closed under it, and what it skips
_CLOSED = {errno.EBADF, errno.ENOTSOCK}
_SKIPPED = {
    getattr(errno, name) for name in ("ECONNABORTED", "EPROTO", "EPERM") if hasattr(errno, name)
}
_SEND_CONFLICT = "another task is currently sending data on this SocketStream"
_STREAM_PARTS = {"socket", "_send_conflict_detector"}


def _lean_stream(sock: trio.socket.SocketType) -> trio.SocketStream:
    """A :class:`trio.SocketStream` of ``sock`` without the ``setsockopt`` calls of its
    constructor (the socket inherited both options); only once :class:`Acceptor`
    checked that trio's stream holds exactly this."""
    stream = object.__new__(trio.SocketStream)
    stream.socket = sock
    stream._send_conflict_detector = ConflictDetector(_SEND_CONFLICT)
    return stream


class Acceptor:
    """The connections of one listener, as :class:`trio.SocketStream` objects."""

    __slots__ = ("_lean", "_raw", "listener")

    def __init__(self, listener: trio.SocketListener) -> None:
        self.listener = listener
        sock = getattr(listener.socket, "_sock", None)  # trio's wrapper keeps it there
        #: the standard-library listening socket (None: trio's accept, as before)
        self._raw = sock if isinstance(sock, socket.socket) else None
        #: whether accepted sockets get the lean stream (None: not known yet)
        self._lean: bool | None = None if ConflictDetector is not None else False
        if self._raw is not None and self._lean is None:
            for level, option, value in _OPTIONS:
                with contextlib.suppress(OSError):  # (a check below says if it took)
                    self._raw.setsockopt(level, option, value)

    @property
    def lean(self) -> bool:
        """Whether connections now get a stream without per-socket ``setsockopt``."""
        return bool(self._lean)

    async def accept(self) -> trio.SocketStream:
        """The next connection (see the module docstring)."""
        raw = self._raw
        if raw is None:
            return await self.listener.accept()
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                sock, _ = raw.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(raw)
                waited = True
                continue
            except OSError as exc:
                if exc.errno in _CLOSED:
                    raise trio.ClosedResourceError from None
                if exc.errno not in _SKIPPED:
                    raise
                continue
            break
        if not waited:  # one scheduling point per connection, as trio's accept
            await trio.lowlevel.cancel_shielded_checkpoint()
        try:
            tsock = trio.socket.from_stdlib_socket(sock)
        except BaseException:
            sock.close()
            raise
        if self._lean:
            return _lean_stream(tsock)
        if self._lean is None:
            try:
                inherited = all(
                    sock.getsockopt(level, option) == value for level, option, value in _OPTIONS
                )
            except OSError:
                inherited = False
            stream = trio.SocketStream(tsock)
            self._lean = inherited and set(vars(stream)) == _STREAM_PARTS
            return stream
        return trio.SocketStream(tsock)
