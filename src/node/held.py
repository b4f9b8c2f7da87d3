"""Live messages held back for a subscription until its history is in (pure).

After a restore or a history request the core holds a subscription's live messages
(``CableConnection.held``) until ``ReleaseHeld``; the driver keeps what the fan-out
delivered meanwhile here, in the driver's own wire form ``W``, and sends what is newer
than the history once it is released. One home for the bound and the release rule, for
the trio and the asyncio driver alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from .bound import over_bound

__all__ = ["HeldMessages"]

W = TypeVar("W")

#: the empty items of every HeldMessages that never held anything (never mutated:
#: only ``hold`` adds, and it takes a dictionary of its own first)
_NOTHING: dict[str, list[tuple[int | None, Any, int, str]]] = {}


class HeldMessages(Generic[W]):
    """Held live messages per identifier, with their offsets, bounded in bytes.

    Args:
        max_bytes: the bound (the session's outbox bound); ``0``: unbounded.
    """

    __slots__ = ("_items", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        #: identifier -> (offset, item, size, stream) in arrival order; most sessions
        #: never hold anything: a dictionary of their own by the first hold
        self._items: dict[str, list[tuple[int | None, W, int, str]]] = _NOTHING

    def __contains__(self, identifier: str) -> bool:
        return identifier in self._items

    def held(self, identifier: str) -> list[tuple[int | None, W]]:
        """What ``identifier`` holds: (offset, wire item), in arrival order."""
        return [(offset, item) for offset, item, _, _ in self._items.get(identifier, ())]

    def hold(
        self, identifier: str, offset: int | None, item: W, size: int, stream: str = ""
    ) -> bool:
        """Keep ``item`` (``size`` bytes) of ``stream``. ``False`` when what is already held exceeds
        the bound: everything is dropped and the client is too slow (the driver closes
        it as ``too_slow``). What is already held counts, not this message."""
        if over_bound(self.size, self.max_bytes):
            self._items.clear()
            self.size = 0
            return False
        self.size += size
        if self._items is _NOTHING:
            self._items = {}
        self._items.setdefault(identifier, []).append((offset, item, size, stream))
        return True

    def release(self, identifier: str, after: int | Mapping[str, int] | None) -> list[W]:
        """Forget what ``identifier`` holds and return what is still to be sent: the
        messages newer than ``after`` (the last offset its history delivered; ``None``:
        all; per stream for a subscription reading several, where a stream it does not
        name replayed nothing), and every message without an offset."""
        items = self._items.pop(identifier, [])
        self.size -= sum(size for _, _, size, _ in items)
        if after is None:
            return [item for _, item, _, _ in items]
        if isinstance(after, int):
            return [item for offset, item, _, _ in items if offset is None or offset > after]
        return [
            item
            for offset, item, _, stream in items
            if offset is None or stream not in after or offset > after[stream]
        ]

    def drop(self, identifier: str) -> list[tuple[int | None, W]]:
        """Forget what ``identifier`` holds (unsubscribed); returns it."""
        items = self._items.pop(identifier, [])
        self.size -= sum(size for _, _, size, _ in items)
        return [(offset, item) for offset, item, _, _ in items]
