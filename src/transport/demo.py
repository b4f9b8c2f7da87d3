"""Serves the live demo (``--demo``) on the main listener: the page at ``/`` and its assets.

The front door (:mod:`.http`) calls :func:`handle_demo` for requests no other route took;
it answers the paths :mod:`cableway.demo` owns and returns ``False`` for the others, having
read nothing of them. Who may see the demo is decided by
:func:`cableway.demo.access_refusal` (loopback peers and ``Host`` names only, unless the
server is bound to a non-loopback address).
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import TYPE_CHECKING

import h11
import trio

from ..tools import demo
from .httpconn import VERSION_HEADER, Conn, Request, drain_body
from .tls import transport_socket

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["handle_demo", "load_asset"]

log = logging.getLogger("cableway.demo")

_MAX_BODY = 65536  # the demo routes take no body; read (and drop) this much at most
_ASSET_HEADERS = [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")]


@functools.cache
def load_asset(name: str) -> bytes:
    """The bytes of ``cableway/tools/demo_assets/<name>`` (read once, then cached)."""
    return resources.files("cableway.tools").joinpath("demo_assets", name).read_bytes()


def _peer(stream: trio.abc.Stream) -> str | None:
    sock = transport_socket(stream)  # through TLS
    if sock is None:
        return None
    try:
        address = sock.getpeername()
    except OSError:
        return None
    return str(address[0]) if isinstance(address, tuple) else None


async def _send(
    conn: Conn,
    status: int,
    body: bytes,
    *,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]],
    head: bool,
    close: bool = False,
) -> None:
    if not head:
        await conn.respond(status, body, content_type=content_type, headers=headers, close=close)
        return
    # HEAD: the GET answer's headers, no body (h11 refuses body bytes for HEAD)
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await conn.send(h11.Response(status_code=status, headers=[*hdrs, *headers]))
    await conn.send(h11.EndOfMessage())


async def handle_demo(config: Config, conn: Conn, request: Request) -> bool:
    """Answer a demo route; ``False`` (nothing read, nothing sent) for any other path."""
    if not demo.owns(request.path):
        return False
    head = request.method == "HEAD"
    body = await drain_body(conn, _MAX_BODY)
    if body is None:
        await conn.respond(413, b"Payload Too Large", close=True)
        return True
    host_header = request.headers.get("host")
    refusal = demo.access_refusal(
        peer=_peer(conn.stream), host_header=host_header, bind_host=config.host
    )
    if refusal is not None:
        log.info("demo refused for %s: %s", request.path, refusal)
        await _send(
            conn,
            403,
            f"403 Forbidden: {refusal}\n".encode(),
            content_type=b"text/plain; charset=utf-8",
            headers=[VERSION_HEADER],
            head=head,
        )
        return True
    if request.method not in ("GET", "HEAD"):
        await conn.respond(405, b"Method Not Allowed", headers=[(b"allow", b"GET, HEAD")])
        return True
    if request.path == demo.PAGE_PATH:
        page = demo.render_page(demo.demo_page(config, host_header))
        await _send(
            conn,
            200,
            page,
            content_type=b"text/html; charset=utf-8",
            headers=[*demo.PAGE_HEADERS, VERSION_HEADER],
            head=head,
        )
        return True
    asset = demo.ASSETS[request.path]
    data = await trio.to_thread.run_sync(load_asset, asset.file)
    await _send(
        conn,
        200,
        data,
        content_type=asset.content_type.encode(),
        headers=[*_ASSET_HEADERS, VERSION_HEADER],
        head=head,
    )
    return True
