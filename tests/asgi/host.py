"""Run an ASGI app under uvicorn on 127.0.0.1:0, in a thread with its own asyncio loop.

The listening socket is bound and listening before the thread starts, so clients may connect
at once: their connections wait in the backlog until uvicorn accepts them (no readiness poll).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


class UvicornHost:
    """``uvicorn.Server`` serving ``app`` (h11 HTTP; WebSockets by ``ws``: ``wsproto``, the
    default, or ``websockets-sansio``) on a thread."""

    def __init__(self, app: Any, *, ws: str = "wsproto") -> None:
        # IPPROTO_TCP, not create_server's 0: asyncio sets TCP_NODELAY on accepted sockets only
        # when the listener says it is TCP, else each answer waits ~40 ms for a delayed ACK
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            interface="asgi3",
            lifespan="on",
            ws=ws,
            http="h11",
            log_config=None,
            log_level="warning",
            # a stream a test left open must not hold the shutdown forever
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._ready.set()
            await self.server.serve(sockets=[self.sock])

        try:
            asyncio.run(main())
        except BaseException as error:  # reported by stop()
            self.error = error
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self.loop is None:
            raise RuntimeError(f"uvicorn did not start: {self.error!r}")

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
        """Run ``make()`` on the server's loop from another thread; bounded."""
        assert self.loop is not None

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        self.sock.close()
        if self._thread.is_alive():
            raise AssertionError(f"uvicorn still running after {STOP_TIMEOUT}s")
        if self.error is not None:
            raise self.error


@contextmanager
def hosted(app: Any, *, ws: str = "wsproto") -> Iterator[UvicornHost]:
    host = UvicornHost(app, ws=ws)
    host.start()
    try:
        yield host
    finally:
        host.stop()
