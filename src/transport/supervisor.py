"""``cableway --workers N``: one port, N worker processes, one hub, no Redis.

The supervisor binds every listener of the configuration once (:func:`.server.listen_plan`)
and starts N workers (``python -m cableway`` with the same arguments), each handed the
listening sockets (they all accept on the same sockets: the kernel gives each new
connection to one of the workers waiting) and the path of the hub's Unix socket
(:class:`.worklink.WorkerRole` in the ``CABLEWAY_WORKER`` variable). The hub
(:mod:`.workhub`) runs here: the one stamping authority and store of history, sessions
and presence, and the relay of every publication to every worker.

Lifecycle:
    * A worker that exits while the server runs is replaced (at once, then with a
      growing delay, up to :data:`MAX_RESTART_DELAY`, while workers keep dying young).
      Its clients reconnect to the others and restore their sessions from the hub.
    * At start-up, a worker that exits with status 1 or 2 before it joined the hub could
      not start (a port, a file, the configuration): the supervisor stops the others and
      exits with that status. Once every worker joined, a replacement that cannot start
      is retried like any worker that died, while the others keep serving. (The TLS
      files are read once by the supervisor before it starts any worker: a bad one is
      one ``cableway: error:`` line and status 1.)
    * SIGTERM or SIGINT: every worker gets SIGTERM and drains as one server does
      (``server_restart`` to every client, ``--shutdown_delay`` and
      ``--shutdown_timeout``); one still running :data:`KILL_GRACE` seconds after that
      is killed. A second signal kills the workers at once. The supervisor closes its
      copies of the listening sockets as it stops, so once the workers closed theirs
      (after ``--shutdown_delay``) the ports refuse connections, as one server's do.
    * Workers run in their own session, so a terminal's Ctrl-C reaches the supervisor
      only, which passes it on once. A worker whose supervisor is gone loses the hub
      and shuts down.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio

from ..config import Config, StartupError
from .listeners import listen_plan
from .startup import close_listeners, listen
from .tls import TlsDoor
from .workhub import Hub
from .worklink import REUSEPORT_ENV, WORKER_ENV, WorkerRole, hub_directory, reuseport_socket

__all__ = ["KILL_GRACE", "MAX_RESTART_DELAY", "Supervisor", "WorkerExit"]

log = logging.getLogger("cableway.workers")

#: seconds a draining worker may run past its shutdown budget before it is killed
KILL_GRACE = 5.0
#: the longest wait before a worker that keeps dying young is started again
MAX_RESTART_DELAY = 5.0
#: a worker that ran this long is not dying young
STEADY_SECONDS = 10.0


@dataclass(frozen=True)
class WorkerExit:
    """Why the supervisor stopped before it was asked to: a worker could not start."""

    index: int
    status: int


@dataclass
class _Slot:
    index: int
    process: trio.Process | None = None
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


class Supervisor:
    """Runs the hub and ``config.workers`` workers (see the module docstring).

    Args:
        config: the configuration every worker runs with.
        argv: the ``cableway`` arguments the workers are started with (the same as the
            supervisor's: they read the same configuration).
        env: the workers' environment (the supervisor's, plus what ``--demo``
            generated).
        command: how a worker is started (default ``python -m cableway``).
    """

    def __init__(
        self,
        config: Config,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        command: Sequence[str] = (sys.executable, "-m", "cableway"),
    ) -> None:
        self.config = config
        self.argv = list(argv)
        self.env = dict(env)
        self.command = list(command)
        # --pubsub=redis: the workers are nodes on Redis; the hub only counts them
        broker = config.new_broker() if config.pubsub != "redis" else None
        self.hub = Hub(broker, workers=config.workers)
        self.slots = [_Slot(index) for index in range(config.workers)]
        self.stopping = False
        #: every worker joined the hub once: from then on a worker that cannot start is
        #: retried rather than the end of the server
        self.ready = False
        self.failure: WorkerExit | None = None
        #: the bound ports by role (``main``, ``broadcast``, ``metrics``, ``api``)
        self.ports: dict[str, int] = {}
        self._stopped = trio.Event()
        self._killing = False
        self._changed = trio.Event()
        self.hub.on_change = self._change
        #: the listening sockets, and how many workers are being started with them
        self._listeners: list[trio.SocketListener] = []
        self._spawning = 0

    @property
    def pids(self) -> list[int]:
        """The pid of every running worker, by worker number (0: not running)."""
        return [slot.process.pid if slot.process else 0 for slot in self.slots]

    def _asked_to_stop(self) -> bool:
        return self.stopping

    def _stop_listening(self) -> None:
        """Once stopping, close this process's copies of the listening sockets (not while
        a worker is being started with them)."""
        if self.stopping and not self._spawning:
            close_listeners(self._listeners)

    def _change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def stop(self) -> None:
        """Begin a graceful shutdown of every worker (idempotent)."""
        if self.stopping:
            return
        self.stopping = True
        self._stop_listening()
        self._change()
        log.info("Stopping %d workers", len(self.slots))
        for slot in self.slots:
            process = slot.process
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
        self._stopped.set()

    def kill(self) -> None:
        """Kill every worker at once."""
        self.stopping = True
        self._killing = True
        self._change()
        self._stop_listening()
        for slot in self.slots:
            process = slot.process
            if process is not None and process.returncode is None:
                process.kill()
        self._stopped.set()

    async def run(
        self,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
    ) -> WorkerExit | None:
        """Serve until stopped; returns why it stopped early (None: it was asked to)."""
        config = self.config
        # a bad TLS file stops here, in one line, as it stops one server (every worker
        # would fail on it, each saying so)
        TlsDoor.from_config(config)
        listeners = self._listeners
        fds: dict[tuple[str, int], list[int]] = {}
        held: list[socket.socket] = []  # (CABLEWAY_REUSEPORT: bound, not listening)
        hub_dir = hub_directory()
        reuseport = self.env.get(REUSEPORT_ENV) == "1"
        try:
            for role, host, port, host_option, port_option in listen_plan(config):
                if reuseport:  # the experiment: bound here, each worker listens on its own
                    bound = await _reuseport_holders(host, port, host_option, port_option)
                    held += bound
                    fds[host, port] = [sock.fileno() for sock in bound]
                    self.ports[role] = bound[0].getsockname()[1]
                    continue
                group = await listen(host, port, host_option, port_option)
                listeners += group
                fds[host, port] = [listener.socket.fileno() for listener in group]
                self.ports[role] = group[0].socket.getsockname()[1]
            path = os.path.join(hub_dir, "hub.sock")
            hub_listener = await _unix_listener(path)
            log.info(
                "Starting %d workers on port %d (hub: %s)",
                len(self.slots),
                self.ports["main"],
                path,
            )
            broker = self.hub.broker
            if broker is not None:
                log.info(
                    "The hub keeps history, sessions and presence in memory (epoch: %s, "
                    "history limit: %d, history ttl: %gs, sessions ttl: %gs, presence ttl: %gs)",
                    broker.epoch,
                    broker.history_limit,
                    broker.history_ttl,
                    broker.sessions_ttl,
                    broker.presence_ttl,
                )
            async with trio.open_nursery() as nursery:
                await nursery.start(self.hub.serve, hub_listener)
                if handle_signals:
                    nursery.start_soon(self._watch_signals)
                async with trio.open_nursery() as workers:
                    for slot in self.slots:
                        given = WorkerRole(slot.index, path, fds, reuseport)
                        workers.start_soon(self._keep, slot, given)
                    await self._joined(len(self.slots))
                    self.ready = not self.stopping
                    task_status.started(self)
                    nursery.start_soon(self._deadline)  # ends with the hub, after the workers
                nursery.cancel_scope.cancel()
        finally:
            close_listeners(listeners)
            for sock in held:
                sock.close()
            shutil.rmtree(hub_dir, ignore_errors=True)
        return self.failure

    async def _joined(self, count: int) -> None:
        """Return once ``count`` workers joined the hub (or the supervisor is stopping)."""
        while len(self.hub.joined) < count and not self.stopping:
            await self._changed.wait()

    async def _keep(self, slot: _Slot, role: WorkerRole) -> None:
        """Run worker ``slot.index`` and replace it whenever it exits unasked."""
        delay = 0.0
        env = {**self.env, WORKER_ENV: role.to_env()}
        pass_fds = [fd for group in role.listeners.values() for fd in group]
        while not self.stopping:
            started = trio.current_time()
            self._spawning += 1
            try:
                process = await trio.lowlevel.open_process(
                    [*self.command, *self.argv],
                    env=env,
                    pass_fds=pass_fds,
                    start_new_session=True,
                )
            finally:
                self._spawning -= 1
                self._stop_listening()  # asked to stop while it started
            slot.process = process
            slot.pids.append(process.pid)
            if self._asked_to_stop():  # asked while it started
                process.send_signal(signal.SIGKILL if self._killing else signal.SIGTERM)
            status = await process.wait()
            joined = process.pid in self.hub.ever_joined
            if self._asked_to_stop():
                break
            if not joined and status in (1, 2) and not self.ready:
                # at start-up: the server cannot start (a port, a file, the configuration)
                log.error(
                    "worker %d could not start (exit status %d); stopping", slot.index, status
                )
                self.failure = WorkerExit(slot.index, status)
                self.stop()
                break
            slot.restarts += 1
            young = trio.current_time() - started < STEADY_SECONDS
            delay = min(max(delay * 2, 0.1), MAX_RESTART_DELAY) if young else 0.0
            # once the server is up, a replacement that cannot start is retried (with a
            # growing delay): the other workers keep serving meanwhile
            log.error(
                "worker %d (pid %d) %s with status %s; starting another%s",
                slot.index,
                process.pid,
                "exited" if joined else "could not start",
                status,
                f" in {delay:g}s" if delay else "",
            )
            if delay:
                await trio.sleep(delay)
        slot.process = None

    async def _deadline(self) -> None:
        """Once stopping: kill the workers still running past their shutdown budget."""
        await self._stopped.wait()
        config = self.config
        await trio.sleep(config.shutdown_delay + config.shutdown_timeout + KILL_GRACE)
        running = [slot for slot in self.slots if slot.process is not None]
        if running:
            log.warning("%d workers still running after the shutdown budget: killing", len(running))
            self.kill()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.stopping:
                    self.kill()  # second signal: stop at once
                else:
                    self.stop()


async def _reuseport_holders(
    host: str, port: int, host_option: str, port_option: str
) -> list[socket.socket]:
    """``host:port`` bound with ``SO_REUSEPORT`` and not listening (:data:`REUSEPORT_ENV`):
    the port held for the workers, which listen on their own sockets at the address."""
    addresses = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    held: list[socket.socket] = []
    try:
        for family, _type, _proto, _name, address in addresses:
            if held and port == 0:  # every address on the port the first one got
                address = (address[0], held[0].getsockname()[1], *address[2:])
            held.append(reuseport_socket(family, address, listening=False))
    except OSError as exc:
        for sock in held:
            sock.close()
        raise StartupError.cannot_listen(exc, host, port, host_option, port_option) from exc
    return held


async def _unix_listener(path: str) -> trio.SocketListener:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(64)
    return trio.SocketListener(sock)
