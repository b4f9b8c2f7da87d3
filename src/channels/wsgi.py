"""The channels :class:`~cableway.channels.Application` as a WSGI app (Flask, Django under
WSGI, any WSGI server)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from .http import Dispatcher, error_response

__all__ = ["WSGIApp"]

_T = TypeVar("_T")
StartResponse = Callable[..., Any]


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _invoke(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        import asyncio

        result = asyncio.run(_await(result))
    return result


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends (the dispatcher with :func:`_invoke`)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: _T = done.value
        return result
    coroutine.close()
    raise RuntimeError("the channels dispatcher suspended under WSGI")


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower(), str(value)))
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), str(environ[key])))
    return headers


class WSGIApp:
    """Serves ``POST …/connect``, ``…/command`` and ``…/disconnect`` under any mount path
    (the call is the last path segment). Callbacks run in the WSGI worker's thread; an
    ``async def`` callback runs to completion in a fresh event loop (``asyncio.run``).
    """

    def __init__(self, application: Dispatcher) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            response = error_response(400, "Invalid Content-Length")
        elif length > self.application.max_body_size:
            response = error_response(413, "Request body too large")
        else:
            body = environ["wsgi.input"].read(length) if length else b""
            response = _run(
                self.application.handle(
                    environ.get("REQUEST_METHOD", "GET"),
                    environ.get("PATH_INFO", ""),
                    _headers(environ),
                    body,
                    _invoke,
                )
            )
        start_response(response.status_line, response.headers)
        return [response.body]
