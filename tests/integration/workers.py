"""In-process workers: a hub and N servers in worker role, in one trio run.

What ``cableway --workers N`` runs in N processes, minus the processes: each server
binds its own port (so a test chooses which worker a client lands on) and links to the
hub over a real Unix socket, exactly as a worker process does. The process-level
behaviour (shared listening sockets, replacing a dead worker, signals) is tested in
``test_workers_process.py``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from cableway.config import Config
from cableway.transport.scaleout import StateSignal
from cableway.transport.server import Server
from cableway.transport.supervisor import _unix_listener
from cableway.transport.workhub import Hub
from cableway.transport.worklink import WorkerRole


@asynccontextmanager
async def hub_and_workers(cfg: Config, count: int = 2) -> AsyncIterator[tuple[Hub, list[Server]]]:
    """A hub for ``cfg`` and ``count`` servers linked to it (worker 0, 1, ...)."""
    with tempfile.TemporaryDirectory(prefix="cableway-test-hub-") as directory:
        path = os.path.join(directory, "hub.sock")
        hub = Hub(cfg.new_broker(), workers=count)
        joined = StateSignal()
        hub.on_change = joined.fire
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve, await _unix_listener(path))
            servers: list[Server] = []
            for index in range(count):
                server = Server(cfg, worker=WorkerRole(index, path))
                await nursery.start(lambda task_status, s=server: s.run(task_status=task_status))
                servers.append(server)
            await joined.wait_for(lambda: len(hub.joined) >= count)
            try:
                yield hub, servers
            finally:
                nursery.cancel_scope.cancel()
