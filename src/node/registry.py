"""The stream registry: which sessions read which stream, and when the node gains or
loses interest in a stream (so a scale-out link subscribes to or leaves its channel)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Generic, TypeVar

from ..protocol.hub import Hub

__all__ = ["Registry"]

S = TypeVar("S", bound=Hashable)


def _ignore(_stream: str) -> None:
    return None


class Registry(Generic[S]):
    """stream -> identifier -> sessions, with the node's interest in each stream.

    ``on_first`` is called when a stream gains its first local subscriber and
    ``on_last`` when it loses its last one (e.g. the Redis subscriber's want/unwant).
    """

    __slots__ = ("_hub", "on_first", "on_last")

    def __init__(
        self,
        on_first: Callable[[str], None] = _ignore,
        on_last: Callable[[str], None] = _ignore,
    ) -> None:
        self._hub: Hub[S] = Hub()
        self.on_first = on_first
        self.on_last = on_last

    def add(self, stream: str, identifier: str, session: S) -> None:
        """Register a subscription."""
        if self._hub.add(stream, identifier, session):
            self.on_first(stream)

    def remove(self, stream: str, identifier: str, session: S) -> None:
        """Unregister a subscription."""
        if self._hub.remove(stream, identifier, session):
            self.on_last(stream)

    def recipients(self, stream: str) -> Mapping[str, set[S]]:
        """identifier -> sessions for ``stream`` (empty when nobody listens here)."""
        return self._hub.recipients(stream)

    def streams(self) -> Iterator[str]:
        """Every stream with at least one local subscriber."""
        return self._hub.streams()

    def __len__(self) -> int:
        return len(self._hub)
