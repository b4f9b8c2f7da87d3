"""What the ASGI and WSGI adapters share: the response type, the dispatcher interface and
the callback invoker type (kept apart from the dispatcher so the adapters do not import
it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from ..rpc import CommandResponse, ConnectionResponse, DisconnectResponse

__all__ = ["Dispatcher", "Invoke", "Response", "error_response", "json_response"]

#: Calls a user callback with arguments; returns its (awaited) result.
Invoke = Callable[[Callable[..., Any], tuple[Any, ...]], Awaitable[Any]]


@dataclass(frozen=True)
class Response:
    """An HTTP response: status, headers, body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"200 OK"``: the WSGI status string."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class Dispatcher(Protocol):
    """What an adapter serves (:class:`cableway.channels.Application`)."""

    max_body_size: int

    async def handle(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        invoke: Invoke,
    ) -> Response: ...


def json_response(message: ConnectionResponse | CommandResponse | DisconnectResponse) -> Response:
    """200 with the call's JSON answer."""
    body = message.to_bytes()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return Response(200, headers, body)


def error_response(status: int, text: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    """A short ``text/plain`` answer for a request that was not processed."""
    body = text.encode()
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        *extra,
    ]
    return Response(status, headers, body)
