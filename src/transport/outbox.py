"""A byte-bounded, non-blocking send queue for one connection.

Broadcasters :meth:`Outbox.push` without awaiting; the connection's writer task takes
everything pending at once with :meth:`Outbox.take` (one ``send_all`` per wake-up,
coalescing frames). When the pending bytes would pass ``max_bytes`` the push is
refused and the owner disconnects the client as ``too_slow`` (AnyCable's
``ws_max_pending_size``).
"""

from __future__ import annotations

import trio

__all__ = ["Outbox"]


class Outbox:
    """Pending bytes for one connection.

    Args:
        max_bytes: bound on pending bytes; ``0`` means unbounded.
    """

    __slots__ = ("_chunks", "_closed", "_ready", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._chunks: list[bytes] = []
        self._ready = trio.Event()
        self._closed = False

    def push(self, data: bytes) -> bool:
        """Queue ``data``; ``False`` (nothing queued) when over the bound or closed."""
        if self._closed:
            return False
        if self.max_bytes and self.size + len(data) > self.max_bytes:
            return False
        self._chunks.append(data)
        self.size += len(data)
        self._ready.set()
        return True

    def push_control(self, data: bytes) -> None:
        """Queue protocol-control bytes (close frames, disconnect) past the bound."""
        if not self._closed:
            self._chunks.append(data)
            self.size += len(data)
            self._ready.set()

    def clear(self) -> None:
        """Drop everything pending (frames are whole, so nothing is cut in half)."""
        self._chunks.clear()
        self.size = 0

    def close(self) -> None:
        """Refuse further pushes; the writer still gets what is already queued."""
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def take(self) -> bytes:
        """Wait for pending bytes and return all of them; ``b""`` once closed and empty."""
        while not self._chunks:
            if self._closed:
                return b""
            await self._ready.wait()
            self._ready = trio.Event()
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self.clear()
        return data
