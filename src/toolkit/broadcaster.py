"""A small client for the server's HTTP broadcast endpoint (``POST /_broadcast``, spec §11).

Usable from plain synchronous code (Django, Flask, scripts) and from async code under
asyncio (FastAPI, Starlette) or trio; it needs nothing outside the standard library::

    from cableway.broadcaster import Broadcaster
    from cableway import turbo_stream

    broadcaster = Broadcaster("http://localhost:8080/_broadcast", secret="my-secret")
    broadcaster.broadcast("chat/42", turbo_stream.append("messages", "<p>Hi</p>"))
    await broadcaster.abroadcast("chat/42", {"text": "Hi"})  # from async code

Each call is one HTTP request on a fresh connection, so an instance can be shared by
threads and tasks. Failures raise a :class:`BroadcastError`:

* :class:`BroadcastAuthError`: the server refused the key (401/403);
* :class:`BroadcastRejected`: any other 4xx, e.g. 400 for an invalid publication;
* :class:`BroadcastUnavailable`: connection refused, DNS failure, timeout, or a 5xx.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .. import __version__
from ..auth.keys import derive_broadcast_key
from .tokens import identifiers_json

__all__ = [
    "BroadcastAuthError",
    "BroadcastError",
    "BroadcastRejected",
    "BroadcastUnavailable",
    "Broadcaster",
    "check_answer",
    "disconnect_body",
    "encode_data",
    "publication",
    "publications_body",
    "request_headers",
]

_T = TypeVar("_T")

#: How much of an error response body is kept for the exception message.
_MAX_ERROR_BODY = 4096


class BroadcastError(Exception):
    """A broadcast did not reach the server or was not accepted.

    ``status`` is the HTTP status (``None`` when there was no response); ``body`` is the
    start of the response body (the server puts the reason for a 400 there).
    """

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class BroadcastAuthError(BroadcastError):
    """401/403: the broadcast key is missing or wrong (it must equal the server's
    ``--broadcast_key``, or be derived from the same ``--secret``)."""


class BroadcastRejected(BroadcastError):
    """A 4xx other than 401/403: the server refused the request itself."""


class BroadcastUnavailable(BroadcastError):
    """No usable answer: connection refused, name resolution failure, timeout, or a 5xx."""


def encode_data(data: object) -> str:
    """The wire ``data`` field for a value: always ``json.dumps(data)``.

    The server delivers ``data`` parsed when it is JSON, so a ``str`` (for instance Turbo
    Stream HTML) is JSON-encoded to reach the client as exactly that string, and a dict
    reaches it as that object.
    """
    return json.dumps(data, separators=(",", ":"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Broadcaster:
    """Publishes to one Cableway (or AnyCable) server's ``/_broadcast`` endpoint.

    Args:
        url: the full endpoint URL, e.g. ``http://localhost:8080/_broadcast`` (``http`` or
            ``https``). The server serves it on its main port when it has a broadcast key,
            else on port 8090.
        key: the broadcast key (sent as ``Authorization: Bearer <key>``).
        secret: the application secret (``--secret``); the key is derived from it as the
            server does, when ``key`` is not given. With neither, no ``Authorization``
            header is sent (for a server without a broadcast key).
        timeout: seconds for connecting and for each read.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"broadcast URL must be an http:// or https:// URL, not {url!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port
        except ValueError:
            raise ValueError(f"invalid port in broadcast URL {url!r}") from None
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if key:
            self._key: str | None = key
        elif secret:
            self._key = derive_broadcast_key(secret)
        else:
            self._key = None

    def __repr__(self) -> str:  # never shows the key
        auth = "with key" if self._key else "no key"
        return f"Broadcaster({self.url!r}, {auth})"

    # -- payloads --------------------------------------------------------------------------

    @staticmethod
    def _publication(
        stream: object, data: object, exclude_socket: str | None, transient: bool
    ) -> dict[str, Any]:
        return publication(stream, data, exclude_socket=exclude_socket, transient=transient)

    # -- sync API --------------------------------------------------------------------------

    def broadcast(
        self,
        stream: str,
        data: object,
        *,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """Send ``data`` to every subscriber of ``stream``.

        ``data`` is any JSON value; a ``str`` (such as Turbo Stream HTML) arrives at the
        client as exactly that string (see :func:`encode_data`). ``exclude_socket`` skips
        one connection (the ``X-Socket-ID`` of the request that caused the change);
        ``transient`` keeps the message out of stream history.
        """
        self.broadcast_raw(
            stream, encode_data(data), exclude_socket=exclude_socket, transient=transient
        )

    def broadcast_raw(
        self,
        stream: str,
        data: str,
        *,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """Send ``data`` as the exact wire ``data`` field (clients get it parsed when it is
        JSON text, as is otherwise)."""
        self._post([self._publication(stream, data, exclude_socket, transient)], single=True)

    def broadcast_many(self, messages: Iterable[tuple[str, object]], *, raw: bool = False) -> None:
        """Send several ``(stream, data)`` publications in one request (a batch), in order.

        ``data`` is encoded as in :meth:`broadcast`, or used as the wire field when ``raw``.
        An empty batch sends nothing.
        """
        batch = [
            self._publication(stream, data if raw else encode_data(data), None, False)
            for stream, data in messages
        ]
        if batch:
            self._post(batch, single=False)

    def disconnect(
        self, identifiers: Mapping[str, object] | str, *, reconnect: bool = False
    ) -> None:
        """Close every connection identified by ``identifiers`` (remote disconnect).

        ``identifiers`` is the mapping the connection's token was issued with
        (:func:`cableway.tokens.identification_token`), or the exact ``ext`` string. The
        clients receive ``{"type":"disconnect","reason":"remote","reconnect":…}``.
        """
        self._send(disconnect_body(identifiers, reconnect=reconnect))

    # -- async API -------------------------------------------------------------------------

    async def abroadcast(
        self,
        stream: str,
        data: object,
        *,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """:meth:`broadcast` from asyncio or trio code (runs in a worker thread)."""
        body = encode_data(data)
        publication = self._publication(stream, body, exclude_socket, transient)
        await _run_in_thread(lambda: self._post([publication], single=True))

    async def abroadcast_raw(
        self,
        stream: str,
        data: str,
        *,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """:meth:`broadcast_raw` from asyncio or trio code."""
        publication = self._publication(stream, data, exclude_socket, transient)
        await _run_in_thread(lambda: self._post([publication], single=True))

    async def abroadcast_many(
        self, messages: Iterable[tuple[str, object]], *, raw: bool = False
    ) -> None:
        """:meth:`broadcast_many` from asyncio or trio code."""
        items = list(messages)  # consume the iterable in the caller's thread
        await _run_in_thread(lambda: self.broadcast_many(items, raw=raw))

    async def adisconnect(
        self, identifiers: Mapping[str, object] | str, *, reconnect: bool = False
    ) -> None:
        """:meth:`disconnect` from asyncio or trio code."""
        await _run_in_thread(lambda: self.disconnect(identifiers, reconnect=reconnect))

    # -- HTTP ------------------------------------------------------------------------------

    def _post(self, publications: list[dict[str, Any]], *, single: bool) -> None:
        self._send(publications_body(publications, single=single))

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _send(self, body: bytes) -> None:
        headers = request_headers(self._key)
        conn = self._connection()
        try:
            conn.request("POST", self._target, body=body, headers=headers)
            response = conn.getresponse()
            status, reason = response.status, response.reason
            text = response.read(_MAX_ERROR_BODY).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            # ConnectionRefusedError, TimeoutError, socket.gaierror, ssl errors, bad answers
            detail = str(exc) or type(exc).__name__
            raise BroadcastUnavailable(
                f"cannot reach the broadcast endpoint {self.url}: {_one_line(detail)}"
            ) from exc
        finally:
            conn.close()
        check_answer(status, reason, text)


def publication(
    stream: object, data: object, *, exclude_socket: str | None = None, transient: bool = False
) -> dict[str, Any]:
    """One publication object of a broadcast request; ``data`` is the wire field (a str)."""
    if not isinstance(stream, str) or not stream:
        raise ValueError("stream must be a non-empty string")
    if not isinstance(data, str):
        raise TypeError("raw data must be a str")
    result: dict[str, Any] = {"stream": stream, "data": data}
    meta: dict[str, Any] = {}
    if exclude_socket:
        meta["exclude_socket"] = exclude_socket
    if transient:
        meta["transient"] = True
    if meta:
        result["meta"] = meta
    return result


def request_headers(key: str | None) -> dict[str, str]:
    """The headers of a broadcast request (``Authorization: Bearer <key>`` with a key)."""
    headers = {"Content-Type": "application/json", "User-Agent": f"cableway/{__version__}"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def publications_body(publications: list[dict[str, Any]], *, single: bool) -> bytes:
    """The request body for publications built by :func:`publication`: one object
    when ``single``, else a batch (a JSON array)."""
    payload: object = publications[0] if single else publications
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def disconnect_body(identifiers: Mapping[str, object] | str, *, reconnect: bool) -> bytes:
    """The request body of a remote disconnect of the connections with ``identifiers``."""
    identifier = identifiers if isinstance(identifiers, str) else identifiers_json(identifiers)
    if not identifier:
        raise ValueError("identifiers must not be empty")
    command = {
        "command": "disconnect",
        "payload": {"identifier": identifier, "reconnect": bool(reconnect)},
    }
    return json.dumps(command, separators=(",", ":")).encode("utf-8")


def check_answer(status: int, reason: str, body: str) -> None:
    """Raise the :class:`BroadcastError` for an answer of the broadcast endpoint (nothing
    for a 2xx); shared by every client of the endpoint (``cableway.fastapi`` has an async
    one)."""
    if 200 <= status < 300:
        return
    summary = f"{status} {reason}".strip()
    if body.strip():
        summary = f"{summary}: {_one_line(body)}"
    if status in (401, 403):
        raise BroadcastAuthError(
            f"broadcast refused ({summary}); check the broadcast key or secret",
            status=status,
            body=body,
        )
    if 400 <= status < 500:
        raise BroadcastRejected(f"broadcast rejected ({summary})", status=status, body=body)
    if status >= 500:
        raise BroadcastUnavailable(
            f"broadcast failed on the server ({summary})", status=status, body=body
        )
    raise BroadcastError(f"unexpected answer to a broadcast ({summary})", status=status, body=body)


async def _run_in_thread(fn: Callable[[], _T]) -> _T:
    """Run blocking ``fn`` in a worker thread of the running event loop (trio or asyncio).

    Depends on neither library: it looks for a running trio task first, then a running
    asyncio loop (anyio and FastAPI run on one of the two).
    """
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            result: _T = await trio.to_thread.run_sync(fn)
            return result
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            result = await asyncio.to_thread(fn)
            return result
    raise RuntimeError("the async Broadcaster methods need a running asyncio or trio event loop")
