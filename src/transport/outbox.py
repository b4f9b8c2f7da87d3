"""A non-blocking send queue for one connection, that never cuts a frame in two.

The session pushes whole frames (or runs of whole frames) without awaiting and writes
what is pending with :meth:`Outbox.write_to` (one ``write``/``writev`` for everything
queued, whenever the socket may take more) or, for a stream without a descriptor, takes
it all at once with :meth:`Outbox.take_nowait`.

Bytes of a chunk the kernel took only part of are *started*: they stay at the front and
are never dropped, so that whatever follows on the wire (a ``disconnect`` message and a
close frame, or more frames) starts on a frame boundary. :meth:`drop_unstarted` drops
everything else.

The outbox itself refuses nothing: whether a client may be sent more is the session's
decision (see :attr:`backlog` and ``docs/operations.md``, "Slow clients").
"""

from __future__ import annotations

import os

from ..node.bound import over_bound

__all__ = ["Outbox"]

try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, ValueError, OSError):  # pragma: no cover - not on Linux
    _IOV_MAX = 16

Chunk = bytes | memoryview


class Outbox:
    """Pending bytes for one connection.

    Args:
        max_bytes: the bound on :attr:`backlog` (``ws_max_pending_size``; ``0``: none).

    Attributes:
        size: every pending byte.
        started: how many of them, at the front, finish a chunk already partly written
            (``0`` or the length of the first chunk).
    """

    __slots__ = ("_chunks", "_closed", "max_bytes", "size", "started")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.started = 0
        self._chunks: list[Chunk] = []
        self._closed = False

    @property
    def backlog(self) -> int:
        """Pending bytes not yet started on the wire (what :meth:`drop_unstarted` drops)."""
        return self.size - self.started

    @property
    def over(self) -> bool:
        """Whether :attr:`backlog` is past ``max_bytes`` (:mod:`cableway.node.bound`)."""
        return over_bound(self.size - self.started, self.max_bytes)

    def push(self, data: Chunk) -> None:
        """Queue whole frames behind what is pending (nothing once closed)."""
        if not self._closed and data:
            self._chunks.append(data)
            self.size += len(data)

    def push_started(self, rest: Chunk) -> None:
        """Queue the unwritten rest of bytes the kernel took only part of, in front.

        Only while nothing else is pending (the caller wrote around the outbox).
        """
        if rest:
            self._chunks.insert(0, rest)
            self.size += len(rest)
            self.started = len(rest)

    def write_to(self, fd: int) -> int:
        """Write what the kernel takes now (one system call); the bytes written.

        Raises:
            OSError: from ``write``/``writev`` (``BlockingIOError`` when it takes nothing).
        """
        chunks = self._chunks
        if not chunks:
            return 0
        sent = os.write(fd, chunks[0]) if len(chunks) == 1 else os.writev(fd, chunks[:_IOV_MAX])
        if sent <= 0:
            return 0
        self.size -= sent
        left = sent
        done = 0
        for chunk in chunks:
            n = len(chunk)
            if left < n:
                break
            left -= n
            done += 1
        del chunks[:done]
        if left:
            # the first chunk left is on the wire in part: finish it before anything else
            head = chunks[0]
            chunks[0] = (head if isinstance(head, memoryview) else memoryview(head))[left:]
            self.started = len(chunks[0])
        elif done:
            self.started = 0
        return sent

    def take_nowait(self) -> bytes:
        """Every pending byte at once (``b""`` when nothing is pending)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = b"".join(chunks) if len(chunks) > 1 else bytes(chunks[0])
        self.clear()
        return data

    def drop_unstarted(self) -> int:
        """Drop everything but the started bytes; the bytes dropped."""
        dropped = self.size - self.started
        if self.started:
            del self._chunks[1:]
            self.size = self.started
        else:
            self.clear()
        return dropped

    def clear(self) -> None:
        """Drop everything pending (only when nothing more will be written)."""
        self._chunks.clear()
        self.size = 0
        self.started = 0

    def close(self) -> None:
        """Refuse further pushes; what is already queued can still be written."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed
