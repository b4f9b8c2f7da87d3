"""The channels :class:`~cableway.channels.Application` as an ASGI app (Django, FastAPI,
Starlette, any ASGI server)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..protocol.asgi import read_body
from ..toolkit.broadcaster import _run_in_thread
from .channel import Channel
from .connection import Connection
from .http import Dispatcher, Response, error_response

__all__ = ["ASGIApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The base classes' no-op callbacks: never worth a thread.
_NOOPS = frozenset(
    {
        Connection.connect,
        Connection.disconnect,
        Channel.subscribed,
        Channel.unsubscribed,
    }
)


class ASGIApp:
    """Serves ``POST …/connect``, ``…/command`` and ``…/disconnect`` under any mount path
    (the call is the last path segment), for AnyCable-Go's ``--rpc_host``.

    ``async def`` callbacks are awaited on the event loop. Plain ``def`` callbacks run in
    a worker thread by default (``threaded=True``), as FastAPI and Starlette run ``def``
    endpoints, so blocking code (the Django ORM, a broadcast) never stalls the loop;
    ``threaded=False`` calls them on the loop (less overhead for callbacks that never
    block). Lifespan events are acknowledged; WebSocket scopes are refused.
    """

    def __init__(self, application: Dispatcher, *, threaded: bool = True) -> None:
        self.application = application
        self.threaded = threaded

    async def _invoke(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if inspect.iscoroutinefunction(function):
            return await function(*args)
        if self.threaded and getattr(function, "__func__", None) not in _NOOPS:
            result = await _run_in_thread(functools.partial(function, *args))
        else:
            result = function(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope.get("headers", ())
        ]
        declared = [value for name, value in headers if name.lower() == "content-length"]
        body = await read_body(receive, self.application.max_body_size, declared=declared)
        if body is None:
            response = error_response(413, "Request body too large")
        else:
            response = await self.application.handle(
                scope.get("method", "GET"), scope.get("path", ""), headers, body, self._invoke
            )
        await _send(send, response)


async def _send(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
