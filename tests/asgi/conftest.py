"""The ``serve`` fixture: the same scenario against both drivers of the core.

``serve(config)`` is an async context manager yielding a running server handle with the
attributes the integration helpers use (``main_port``, ``broadcast_port``, ``config``) plus
``kind``, ``epoch`` and ``publish(stream, data)`` (in-process publication: the trio server's
``Server.publish`` or ``await CablewayApp.broadcast`` on the app's loop).

* ``trio``: the trio server (``tests/integration/helpers.running``), inside pytest-trio;
* ``asgi``: :class:`cableway.asgi.CablewayApp` under uvicorn in a thread on 127.0.0.1:0.

Both are plain servers on ports, so one client stack (trio-websocket and h11) drives both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from cableway.asgi import CablewayApp
from cableway.config import Config
from cableway.protocol.broadcast import Publication

# the real Node clients of the interop suite (fixtures; its autouse prerequisite check and its
# report hook stay in tests/interop)
from ..integration.helpers import BASE, running
from ..interop.conftest import node_executable, rails_client
from .host import UvicornHost

__all__ = ["node_executable", "rails_client"]


@dataclass
class Running:
    kind: str
    config: Config
    main_port: int
    broadcast_port: int
    broker_epoch: Callable[[], str]
    publisher: Callable[[str, str], Any]

    @property
    def epoch(self) -> str:
        return self.broker_epoch()

    async def publish(self, stream: str, data: str) -> None:
        await self.publisher(stream, data)


@asynccontextmanager
async def _trio_driver(cfg: Config) -> AsyncIterator[Running]:
    async with running(cfg) as server:

        async def publish(stream: str, data: str) -> None:
            server.publish([Publication(stream, data)])

        def epoch() -> str:
            assert server.broker is not None
            return server.broker.epoch

        yield Running("trio", cfg, server.main_port, server.broadcast_port, epoch, publish)


@asynccontextmanager
async def _asgi_driver(cfg: Config) -> AsyncIterator[Running]:
    app = CablewayApp(cfg, http_broadcast=True)
    host = UvicornHost(app)
    await trio.to_thread.run_sync(host.start)
    try:

        async def publish(stream: str, data: str) -> None:
            await trio.to_thread.run_sync(lambda: host.call(lambda: app.broadcast(stream, data)))

        def epoch() -> str:
            assert app.broker is not None
            return app.broker.epoch

        yield Running("asgi", cfg, host.port, host.port, epoch, publish)
    finally:
        await trio.to_thread.run_sync(host.stop)


Serve = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture(params=["trio", "asgi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """``async with serve(config) as server:`` runs one driver (both, by parametrisation)."""
    driver = _trio_driver if request.param == "trio" else _asgi_driver

    def start(cfg: Config = BASE) -> AbstractAsyncContextManager[Running]:
        return driver(cfg)

    return start
