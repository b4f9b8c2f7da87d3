"""A byte-bounded, non-blocking send queue for one connection.

Broadcasters :meth:`Outbox.push` without awaiting; the owner is told through the
``notify`` callback each time bytes are queued, and takes everything pending at once
with :meth:`Outbox.take_nowait` (one write per flush, coalescing frames). When the
pending bytes would pass ``max_bytes`` the push is refused and the owner disconnects the
client as ``too_slow`` (AnyCable's ``ws_max_pending_size``).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Outbox"]


def _ignore() -> None:
    pass


class Outbox:
    """Pending bytes for one connection.

    Args:
        max_bytes: bound on pending bytes; ``0`` means unbounded.
        notify: called after bytes were queued (the owner flushes or starts a writer).
    """

    __slots__ = ("_chunks", "_closed", "_notify", "max_bytes", "size")

    def __init__(self, max_bytes: int, notify: Callable[[], None] = _ignore) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._chunks: list[bytes] = []
        self._closed = False
        self._notify = notify

    def push(self, data: bytes) -> bool:
        """Queue ``data``; ``False`` (nothing queued) when over the bound or closed."""
        if self._closed:
            return False
        if self.max_bytes and self.size + len(data) > self.max_bytes:
            return False
        self._chunks.append(data)
        self.size += len(data)
        self._notify()
        return True

    def push_control(self, data: bytes) -> None:
        """Queue protocol-control bytes (close frames, disconnect) past the bound."""
        if not self._closed:
            self._chunks.append(data)
            self.size += len(data)
            self._notify()

    def unshift(self, data: bytes) -> None:
        """Put back, in front, the part of taken bytes that could not be written."""
        self._chunks.insert(0, data)
        self.size += len(data)

    def clear(self) -> None:
        """Drop everything pending (frames are whole, so nothing is cut in half)."""
        self._chunks.clear()
        self.size = 0

    def close(self) -> None:
        """Refuse further pushes; what is already queued can still be taken."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def take_nowait(self) -> bytes:
        """Every pending byte at once (``b""`` when nothing is pending)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        self.clear()
        return data
