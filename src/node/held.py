"""Live messages held back for a subscription until its history is in (pure).

After a restore or a history request the core holds a subscription's live messages
(``CableConnection.held``) until ``ReleaseHeld``; the driver keeps what the fan-out
delivered meanwhile here, in the driver's own wire form ``W``, and sends what is newer
than the history once it is released. One home for the bound and the release rule, for
the trio and the asyncio driver alike.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .bound import over_bound

__all__ = ["HeldMessages"]

W = TypeVar("W")


class HeldMessages(Generic[W]):
    """Held live messages per identifier, with their offsets, bounded in bytes.

    Args:
        max_bytes: the bound (the session's outbox bound); ``0``: unbounded.
    """

    __slots__ = ("_items", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: dict[str, list[tuple[int | None, W, int]]] = {}

    def __contains__(self, identifier: str) -> bool:
        return identifier in self._items

    def held(self, identifier: str) -> list[tuple[int | None, W]]:
        """What ``identifier`` holds: (offset, wire item), in arrival order."""
        return [(offset, item) for offset, item, _ in self._items.get(identifier, ())]

    def hold(self, identifier: str, offset: int | None, item: W, size: int) -> bool:
        """Keep ``item`` (``size`` bytes). ``False`` when what is already held exceeds
        the bound: everything is dropped and the client is too slow (the driver closes
        it as ``too_slow``). What is already held counts, not this message."""
        if over_bound(self.size, self.max_bytes):
            self._items.clear()
            self.size = 0
            return False
        self.size += size
        self._items.setdefault(identifier, []).append((offset, item, size))
        return True

    def release(self, identifier: str, after: int | None) -> list[W]:
        """Forget what ``identifier`` holds and return what is still to be sent: the
        messages newer than ``after`` (the last offset its history delivered; ``None``:
        all), and every message without an offset."""
        return [
            item
            for offset, item in self.drop(identifier)
            if after is None or offset is None or offset > after
        ]

    def drop(self, identifier: str) -> list[tuple[int | None, W]]:
        """Forget what ``identifier`` holds (unsubscribed); returns it."""
        items = self._items.pop(identifier, [])
        self.size -= sum(size for _, _, size in items)
        return [(offset, item) for offset, item, _ in items]
