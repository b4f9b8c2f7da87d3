"""What both ASGI applications share (:mod:`cableway.asgi`, the server as an ASGI app, and
:mod:`cableway.channels.asgi`, the RPC application as one): the ASGI 3 message types and
reading a request body from ``receive``.

No I/O of its own and no event loop: ``receive`` is the ASGI server's callable, awaited as
given, so this runs under any ASGI server (asyncio or trio).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["Message", "Receive", "Scope", "Send", "read_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive, limit: int, *, declared: Iterable[str] = ()) -> bytes | None:
    """The request body; ``None`` when it exceeds ``limit`` bytes, or when a
    ``Content-Length`` in ``declared`` already says so (then nothing is read).

    When the client disconnects first (``http.disconnect``), what arrived until then."""
    for value in declared:
        if value.strip().isdigit() and int(value) > limit:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # http.disconnect
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
