"""Helpers to host an RPC application for a server under test."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

ASGI = Callable[[Any, Any, Any], Awaitable[None]]


class Events(list[Any]):
    """What the app's callbacks saw (appended on uvicorn's threads); a test waits for an
    entry without polling."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def append(self, item: Any) -> None:
        with self._changed:
            super().append(item)
            self._changed.notify_all()

    async def wait_for(self, item: Any, limit: float = 10.0) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: item in self, limit)

        assert await trio.to_thread.run_sync(wait), f"{item!r} never came: {list(self)!r}"


class Holder:
    """An ASGI app whose target is set once the server's ports are known."""

    def __init__(self) -> None:
        self.app: ASGI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)
