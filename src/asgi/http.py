"""ASGI plumbing shared by the routes: the request view, bodies and plain answers."""

from __future__ import annotations

from .. import __version__
from ..protocol.asgi import Message, Receive, Scope, Send, read_body
from ..protocol.httphead import fold_headers

__all__ = [
    "HEALTH_BODY",
    "PROMETHEUS",
    "VERSION_HEADER",
    "Message",
    "Receive",
    "Request",
    "Scope",
    "Send",
    "normal",
    "read_body",
    "respond",
    "route_path",
]

VERSION_HEADER = (b"x-anycable-version", f"cableway-{__version__}".encode())
HEALTH_BODY = b"Ah, ha, ha, ha, stayin' alive, stayin' alive."
TEXT = b"text/plain; charset=utf-8"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class Request:
    """The parts of an ASGI ``http``/``websocket`` scope the routes look at."""

    __slots__ = (
        "client",
        "full_path",
        "headers",
        "method",
        "path",
        "query",
        "raw_headers",
        "subprotocols",
    )

    def __init__(self, scope: Scope) -> None:
        self.method = str(scope.get("method", "GET"))
        self.subprotocols = [str(p) for p in scope.get("subprotocols", ())]
        self.path = route_path(scope)
        self.full_path = str(scope.get("root_path", "")) + str(scope.get("path", "/"))
        client = scope.get("client")
        self.client = str(client[0]) if client else ""
        self.query = bytes(scope.get("query_string", b"")).decode("ascii", "replace")
        self.raw_headers: list[tuple[bytes, bytes]] = [
            (bytes(k).lower(), bytes(v)) for k, v in scope.get("headers", [])
        ]
        self.headers = fold_headers(self.raw_headers)

    def raw_text_headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]


def route_path(scope: Scope) -> str:
    """The path below the mount point, without a trailing slash (``/`` at least)."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return normal(path)


def normal(path: str) -> str:
    return path.rstrip("/") or "/"


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = TEXT,
) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    hdrs.extend(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
