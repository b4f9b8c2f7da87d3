"""The REST API of AnyCable-Go 1.6 (docs/api.md): publish, and who is in a stream.

* ``POST <api_path>/publish``: a broadcast body, answered exactly as the broadcast endpoint
  answers it (:func:`.broadcast_endpoint.broadcast`: the node's one intake), with the API's
  own key;
* ``GET <api_path>/presence/<stream>/users``: the stream's presence records, from the
  node's backend (memory or Redis broker), as AnyCable-Go's ``PresenceInfo`` JSON.

Both ask for ``Authorization: Bearer <key>`` when a key is set (``--api_secret``, or derived
from ``--secret``). Which listener serves the API is :func:`api_role`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from ..auth.keys import check_bearer
from ..protocol import messages
from .broadcast_endpoint import BroadcastHost, broadcast
from .httpconn import Conn, Request, discard_body

if TYPE_CHECKING:
    from ..config import Config
    from ..node.backend import Backend

__all__ = ["ApiHost", "api_role", "presence", "presence_stream", "publish"]

log = logging.getLogger("cableway.http")

#: AnyCable-Go's ``channelUsersPathPattern`` (``api/server.go``), on the raw path here
_USERS = re.compile(r"/presence/([^/]+)/users$")
_JSON = b"application/json"


class ApiHost(BroadcastHost, Protocol):
    """What the REST API needs from the node."""

    @property
    def backend(self) -> Backend[Any]: ...


def api_role(config: Config) -> str | None:
    """The listener that serves the REST API: ``main`` (``--api_port`` 0 or the main
    port), the separate broadcast or metrics listener when it has that port (one server
    per port, as AnyCable-Go's ``server.ForPort``), else ``api`` (a listener of its own);
    ``None`` when the API is not served (:attr:`Config.api_served`)."""
    if not config.api_served:
        return None
    port = config.api_port
    if port in (0, config.port):
        return "main"
    if "http" in config.broadcast_adapters and config.http_broadcast_port == port:
        return "broadcast"
    if config.metrics_http and config.metrics_port == port:
        return "metrics"
    return "api"


def presence_stream(path: str) -> str | None:
    """The stream of a presence query's raw path (``.../presence/<stream>/users``), its
    percent-escapes decoded; ``None`` when the path is not one (or the name is not UTF-8).
    Never raises."""
    match = _USERS.search(path)
    if match is None:
        return None
    try:
        return unquote(match[1], errors="strict")
    except UnicodeDecodeError:
        return None


async def publish(server: ApiHost, conn: Conn, request: Request) -> None:
    """``POST <api_path>/publish``: 201, 401, 413, 422 (not ``POST``), 400 (not a
    broadcast), 503 (Redis refused it): the broadcast endpoint's answers."""
    await broadcast(server, conn, request, server.config.api_secret)


async def presence(server: ApiHost, conn: Conn, request: Request) -> None:
    """``GET <api_path>/presence/<stream>/users``: 200 with the presence info, 422 for
    another method, 401 without the key, 404 for another path under ``presence/``, 501
    when the broker keeps no presence (``--broker=none``), 503 when Redis cannot answer.

    ``<stream>`` is percent-decoded (``chat%2F1`` is the stream ``chat/1``).
    """
    # a GET has no body; whatever is sent is read and dropped (bounded), so the
    # connection stays usable, or the answer says Connection: close
    await discard_body(conn)
    if request.method != "GET":
        await conn.respond(422, b"Unprocessable Entity", headers=[(b"allow", b"GET")])
        return
    key = server.config.api_secret
    if key is not None and not check_bearer(request.headers.get("authorization"), key):
        await conn.respond(401, b"Unauthorized")
        return
    stream = presence_stream(request.path)
    if stream is None:
        await conn.respond(404, b"404 page not found")
        return
    backend = server.backend
    if not backend.keeps_state:
        await conn.respond(501, b"Not Implemented: presence needs --broker=memory or redis")
        return
    records = await backend.presence_users(stream)
    if records is None:
        log.warning("presence query refused: the Redis broker is unavailable")
        await conn.respond(503, b"Service Unavailable: the broker is unavailable")
        return
    body = messages.to_wire(messages.dumps(messages.presence_info(records)))
    await conn.respond(200, body, content_type=_JSON)
