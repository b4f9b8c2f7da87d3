"""The parts of an HTTP request the routes look at, from h11's event or a head parsed
without h11 (the fast paths): one view for both (:mod:`.httpconn` re-exports it)."""

from __future__ import annotations

import h11

from ..protocol.httphead import fold_headers

__all__ = ["Request"]


class Request:
    """The parts of an HTTP request the routes look at."""

    __slots__ = ("headers", "method", "path", "query", "raw_headers")

    def __init__(self, event: h11.Request) -> None:
        self._set(event.method, event.target, list(event.headers))

    @classmethod
    def from_head(cls, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> Request:
        """The request of a head parsed without h11 (the same parts h11 gives)."""
        request = cls.__new__(cls)
        request._set(method, target, headers)
        return request

    def _set(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method.decode("ascii", "replace")
        path, _, query = target.decode("ascii", "replace").partition("?")
        self.path = path
        self.query = query
        self.raw_headers = headers
        self.headers = fold_headers(headers)

    def header_list(self, name: str) -> list[str]:
        """A comma-separated header as a list of trimmed, non-empty tokens."""
        return [t.strip() for t in self.headers.get(name, "").split(",") if t.strip()]
