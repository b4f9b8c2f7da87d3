"""Remote commands: which sessions a remote disconnect ends."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Protocol, TypeVar

from ..protocol.broadcast import RemoteDisconnect

__all__ = ["Closable", "remote_disconnect"]


class _Core(Protocol):
    @property
    def sid(self) -> str: ...

    @property
    def identifiers(self) -> str | None: ...

    @property
    def presence(self) -> Mapping[str, tuple[str, str]]:
        """identifier -> (presence id, stream) of the presence records it holds."""
        ...


class Closable(Hashable, Protocol):
    """What a remote disconnect needs from a session."""

    @property
    def core(self) -> _Core: ...

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = ..., close_reason: str = ...
    ) -> None: ...


C = TypeVar("C", bound=Closable)


def remote_disconnect(sessions: Iterable[C], command: RemoteDisconnect) -> list[C]:
    """Ask every session whose identifiers equal the command's to close; those asked."""
    closed = [session for session in sessions if session.core.identifiers == command.identifier]
    for session in closed:
        session.request_close("remote", reconnect=command.reconnect, close_reason="Closed remotely")
    return closed
