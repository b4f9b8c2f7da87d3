"""The stream -> subscribers index (pure, no queues, no tasks).

Subscribers of a stream are grouped by identifier so a broadcast is encoded once per
distinct identifier, then the same bytes go to every subscriber in the group.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["Hub"]

S = TypeVar("S", bound=Hashable)


class Hub(Generic[S]):
    """Which subscribers read which stream, through which identifier."""

    def __init__(self) -> None:
        self._streams: dict[str, dict[str, set[S]]] = {}

    def add(self, stream: str, identifier: str, subscriber: S) -> bool:
        """Register; returns whether the stream had no subscriber before."""
        groups = self._streams.get(stream)
        new = groups is None
        if groups is None:
            groups = self._streams[stream] = {}
        groups.setdefault(identifier, set()).add(subscriber)
        return new

    def remove(self, stream: str, identifier: str, subscriber: S) -> bool:
        """Unregister; returns whether the stream has no subscriber left."""
        groups = self._streams.get(stream)
        if groups is None:
            return False
        members = groups.get(identifier)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del groups[identifier]
        if not groups:
            del self._streams[stream]
            return True
        return False

    def recipients(self, stream: str) -> Mapping[str, set[S]]:
        """identifier -> subscribers for ``stream`` (empty when nobody listens)."""
        return self._streams.get(stream, {})

    def streams(self) -> Iterator[str]:
        """Every stream with at least one subscriber."""
        return iter(self._streams)

    def __len__(self) -> int:
        return len(self._streams)
