"""A worker's side of the hub (``cableway --workers N``): the link and the backend.

:class:`HubLink` is the worker's one ordered connection to the supervisor's hub
(:mod:`.workhub`; protocol :mod:`cableway.transport.hubwire`). Everything the worker asks
goes out in the order it was asked, so a read sees the writes posted before it (as the
Redis broker's command connection does). :class:`HubBackend` is the hub as the node's
:class:`~cableway.node.backend.Backend`: stamps and relays through the hub, reads answer
later.

Error handling:
    The hub lives in the supervisor, the worker's parent: a worker that loses it has
    lost its supervisor (or was dropped for falling behind), so :class:`HubLink` calls
    ``on_lost`` (the server shuts down) and fails what waits on it: a publication's
    confirmation fails (the broadcast gets 503), a history request is rejected (the
    client may retry), a restore falls back to a new session.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from ..node.backend import Answer, OnPresence, OnStamped, PresenceRecords
from ..protocol.broadcast import Publication
from ..protocol.broker import PresenceEvent, SessionSnapshot
from ..protocol.connection import CableConnection
from ..protocol.events import HistoryRequest, PresenceRequest
from .hubwire import (
    FrameReader,
    HubWireError,
    encode,
    entry_from_wire,
    event_from_wire,
    publication_from_wire,
    publication_to_wire,
    query_to_wire,
    snapshot_from_wire,
    snapshot_to_wire,
)
from .scaleout import Confirmation, StateSignal

__all__ = [
    "HUB_DIR_PREFIX",
    "REUSEPORT_ENV",
    "WORKER_ENV",
    "HubBackend",
    "HubLink",
    "WorkerRole",
    "hub_directory",
    "remove_orphaned_hub",
]

log = logging.getLogger("cableway.workers")

_READ_SIZE = 256 * 1024

#: gets the stamped publications of one relayed message, in order
OnDeliver = Callable[[list[tuple[Publication, "int | None", "str | None"]]], None]

#: the environment variable through which the supervisor tells a process it is a worker
WORKER_ENV = "CABLEWAY_WORKER"
#: an experiment (issue 20, docs/benchmarks.md), off by default: ``1`` makes each worker
#: listen on its own ``SO_REUSEPORT`` socket (the kernel spreads connections over them
#: by a hash of the 4-tuple) instead of every worker accepting on the supervisor's sockets
REUSEPORT_ENV = "CABLEWAY_REUSEPORT"
#: the hub's socket lives in a private directory with this prefix, in the temporary
#: directory (``$TMPDIR``, else ``/tmp``)
HUB_DIR_PREFIX = "cableway-hub-"
#: the longest Unix socket path Linux binds (``sun_path`` is 108 bytes with its NUL)
_MAX_UNIX_PATH = 107


def hub_directory() -> str:
    """A new private (0700) directory for the hub's socket (``hub.sock``): in the
    temporary directory, or in ``/tmp`` when that one's path is too long for a Unix
    socket."""
    directory = tempfile.mkdtemp(prefix=HUB_DIR_PREFIX)
    if len(os.fsencode(os.path.join(directory, "hub.sock"))) <= _MAX_UNIX_PATH:
        return directory
    os.rmdir(directory)
    return tempfile.mkdtemp(prefix=HUB_DIR_PREFIX, dir="/tmp")


def remove_orphaned_hub(path: str) -> bool:
    """After a worker stopped: remove the hub's directory when nothing listens on its
    socket ``path`` any more (its supervisor was killed, so its own clean-up never ran).
    True: removed. A live hub (one that dropped this worker) is left alone."""
    directory = os.path.dirname(path)
    if not os.path.basename(directory).startswith(HUB_DIR_PREFIX):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        shutil.rmtree(directory, ignore_errors=True)
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


@dataclass(frozen=True)
class WorkerRole:
    """What the supervisor tells a worker: its number, the hub's socket and the
    listening sockets it inherited (file descriptors, by the ``(host, port)`` the
    configuration names)."""

    index: int
    hub_path: str
    listeners: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    #: the supervisor's sockets are bound, not listening: the worker listens on its own
    #: ``SO_REUSEPORT`` sockets at their addresses (:data:`REUSEPORT_ENV`)
    reuseport: bool = False

    def to_env(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "hub": self.hub_path,
                "listeners": [[h, p, fds] for (h, p), fds in self.listeners.items()],
                **({"reuseport": True} if self.reuseport else {}),
            }
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerRole | None:
        """The role in ``env`` (None: not a worker).

        Raises:
            ValueError: the variable is set but not what a supervisor writes.
        """
        raw = env.get(WORKER_ENV)
        if not raw:
            return None
        try:
            value = json.loads(raw)
            listeners = {
                (str(h), int(p)): [int(fd) for fd in fds] for h, p, fds in value["listeners"]
            }
            reuseport = value.get("reuseport") is True
            return cls(int(value["index"]), str(value["hub"]), listeners, reuseport)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{WORKER_ENV} is not a worker role: {raw!r}") from exc

    def sockets(self, host: str, port: int) -> list[socket.socket] | None:
        """The inherited listening sockets for ``host:port`` (None: none were)."""
        fds = self.listeners.get((host, port))
        if fds is None:
            return None
        inherited = [socket.socket(fileno=fd) for fd in fds]
        if not self.reuseport:
            return inherited
        own = []
        for held in inherited:
            own.append(reuseport_socket(held.family, held.getsockname(), listening=True))
            held.close()
        return own


def reuseport_socket(family: int, address: Any, *, listening: bool) -> socket.socket:
    """A TCP socket bound to ``address`` with ``SO_REUSEPORT`` (as trio binds its
    listeners, plus that option); listening (a worker's) or only holding the port (the
    supervisor's: a listening one would get its share of connections and never accept)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listening:
            sock.listen(0xFFFF)  # trio's backlog (the kernel caps it at somaxconn)
    except BaseException:
        sock.close()
        raise
    return sock


class HubLink:
    """The worker's connection to the hub: requests in order, answers, relayed messages.

    Args:
        path: the hub's Unix socket.
        index: this worker's number (0..N-1), for the hub's logs and health.
        on_deliver: gets the publications the hub relays (from any worker, this one
            included), in the hub's order, a relayed message's at once (a POST's batch
            stays one write per subscriber).
        on_remote: gets every remote command (a JSON text, as ``encode_remote`` makes).
        on_presence: gets presence leaves the hub's expiry produced, to publish.
        metrics: what this worker answers the hub's ``collect`` with.
        on_lost: called once when the hub is gone.
    """

    def __init__(
        self,
        path: str,
        *,
        index: int,
        on_deliver: OnDeliver,
        on_remote: Callable[[str], None],
        on_presence: Callable[[PresenceEvent], None],
        metrics: Callable[[], dict[str, float]],
        on_lost: Callable[[], None],
    ) -> None:
        self.path = path
        self.index = index
        self.on_deliver = on_deliver
        self.on_remote = on_remote
        self.on_presence = on_presence
        self.metrics = metrics
        self.on_lost = on_lost
        self.up = False
        self.state = StateSignal()
        self._stream: trio.SocketStream | None = None
        self._queue: deque[bytes] = deque()
        self._wake = trio.Event()
        self._ids = itertools.count(1)
        #: request id -> what gets its answer (None: the hub is gone)
        self._pending: dict[int, Callable[[dict[str, Any] | None], None]] = {}
        self._lost = False
        #: the publications posted in this scheduling tick, sent as one ``pub`` message
        #: (flushed before any other message, so order holds), and what waits on them
        self._batch: list[list[Any]] | None = None
        self._batch_stamp = False
        self._batch_confirmations: list[Confirmation] = []
        #: set by the worker as it stops: the link ending then is no loss
        self.closing = False

    async def connect(self) -> None:
        """Open the connection and introduce this worker (before serving clients)."""
        self._stream = await trio.open_unix_socket(self.path)
        self.up = True
        self.state.fire()
        self.send({"op": "hello", "index": self.index, "pid": os.getpid()})

    async def run(self) -> None:
        """Read and write until the hub or this worker goes away."""
        stream = self._stream
        assert stream is not None, "connect() first"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, stream)
                await self._read(stream)
                nursery.cancel_scope.cancel()
        except trio.Cancelled:
            self.closing = True  # the worker stops: the link ending is no loss
            raise
        finally:
            self._gone()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def drained(self) -> None:
        """Return once everything queued was sent (or the hub is gone)."""
        await self.state.wait_for(
            lambda: not self.up or not (self._queue or self._batch is not None)
        )

    # -- sending -----------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` (nothing happens once the hub is gone)."""
        if self._lost:
            return
        self._flush_batch()
        self._queue.append(encode(message))
        self._wake.set()

    def ask(self, message: dict[str, Any], then: Callable[[dict[str, Any] | None], None]) -> None:
        """Queue a request; ``then`` gets its answer, or None if the hub went away first."""
        if self._lost:
            then(None)
            return
        ask = next(self._ids)
        self._pending[ask] = then
        self.send({**message, "id": ask})

    async def request(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """:meth:`ask`, awaited."""
        done = trio.Event()
        box: list[dict[str, Any] | None] = [None]

        def then(answer: dict[str, Any] | None) -> None:
            box[0] = answer
            done.set()

        self.ask(message, then)
        await done.wait()
        return box[0]

    def post_remote(self, command: str) -> Confirmation | bool:
        """Relay a remote command (JSON text) to every worker; what settles once the hub
        took it (False: the hub is gone)."""
        if not self.up:
            return False
        confirmation = Confirmation(pending=1)

        def then(answer: dict[str, Any] | None) -> None:
            confirmation.settle(answer is not None)

        self.ask({"op": "remote", "c": command}, then)
        return confirmation

    async def metrics_sum(self) -> dict[str, float] | None:
        """Every worker's metrics, summed by name (None: the hub is gone)."""
        answer = await self.request({"op": "metrics"})
        if answer is None:
            return None
        return {str(name): value for name, value in dict(answer.get("m") or {}).items()}

    async def workers_up(self, configured: int) -> tuple[int, int]:
        """(workers linked to the hub, workers the supervisor runs)."""
        answer = await self.request({"op": "workers"})
        if answer is None:
            return (0, configured)
        return (len(answer.get("up") or ()), int(answer.get("n") or configured))

    def publish(
        self,
        publication: Publication,
        offset: int | None,
        epoch: str | None,
        *,
        stamp: bool,
        confirmation: Confirmation | None,
    ) -> None:
        """Send a publication to the hub, which stamps it (``stamp``) and relays it to
        every worker; ``confirmation`` settles once the hub did. Publications posted in
        one scheduling tick (a POST's batch) go as one message."""
        if confirmation is not None:
            confirmation.pending += 1
            if self._lost:
                confirmation.settle(False)
                return
        elif self._lost:
            return
        item = [publication_to_wire(publication), offset, epoch]
        if self._batch is None or self._batch_stamp != stamp:
            self._flush_batch()
            self._batch, self._batch_stamp = [item], stamp
        else:
            self._batch.append(item)
        if confirmation is not None:
            self._batch_confirmations.append(confirmation)
        self._wake.set()

    def _flush_batch(self) -> None:
        """Queue the publications collected so far as one ``pub`` message."""
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        message: dict[str, Any] = {"op": "pub", "m": batch}
        if self._batch_stamp:
            message["stamp"] = True
        waiting, self._batch_confirmations = self._batch_confirmations, []
        if not waiting:
            self.send(message)
            return

        def settle(answer: dict[str, Any] | None) -> None:
            for confirmation in waiting:
                confirmation.settle(answer is not None)

        self.ask(message, settle)

    def relay(
        self,
        publication: Publication,
        offset: int | None,
        epoch: str | None,
        confirmation: Confirmation | None,
    ) -> None:
        """The node's relay (``Node(relay=...)``): a publication, stamped or not, to
        every worker through the hub."""
        self.publish(publication, offset, epoch, stamp=False, confirmation=confirmation)

    # -- the connection ----------------------------------------------------------------

    async def _write(self, stream: trio.SocketStream) -> None:
        queue = self._queue
        while True:
            self._flush_batch()
            if not queue:
                self.state.fire()  # drained
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            batch = b"".join(queue)
            queue.clear()
            try:
                await stream.send_all(batch)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _read(self, stream: trio.SocketStream) -> None:
        reader = FrameReader()
        while True:
            try:
                data = await stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                for message in reader.feed(data):
                    self._take(message)
            except (HubWireError, KeyError, TypeError, ValueError) as exc:
                log.error("bad message from the hub (%s); leaving it", exc)
                return

    def _take(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "deliver":
            self.on_deliver(
                [
                    (publication_from_wire(wire), offset, epoch)
                    for wire, offset, epoch in message["m"]
                ]
            )
        elif op == "re":
            then = self._pending.pop(int(message["id"]), None)
            if then is not None:
                then(message)
        elif op == "remote":
            self.on_remote(str(message["c"]))
        elif op == "presence":
            for event in message["ev"]:
                self.on_presence(event_from_wire(event))
        elif op == "collect":
            self.send({"op": "re", "id": message["id"], "m": self.metrics()})
        else:
            raise HubWireError(f"unknown op {op!r}")

    def _gone(self) -> None:
        if self._lost:
            return
        self._lost = True
        self.up = False
        self._queue.clear()
        self._batch = None
        waiting, self._batch_confirmations = self._batch_confirmations, []
        for confirmation in waiting:
            confirmation.settle(False)
        self.state.fire()
        pending, self._pending = self._pending, {}
        for then in pending.values():
            then(None)
        if not self.closing:
            log.error("worker %d: the hub is gone; shutting down", self.index)
            self.on_lost()


class HubBackend:
    """The hub as the node's backend (``--workers N`` with ``--broker=memory``)."""

    keeps_state = True
    sweep_interval = float("inf")  # the hub sweeps

    def __init__(self, link: HubLink, *, sessions_ttl: float) -> None:
        self.link = link
        self.sessions_ttl = sessions_ttl

    @property
    def resumable(self) -> bool:
        return self.sessions_ttl > 0

    def stamp(
        self,
        publication: Publication,
        *,
        now: float,
        relay: bool,
        confirmation: Confirmation | None,
        then: OnStamped,
    ) -> None:
        # the hub stamps and relays in one step (a worker always relays)
        self.link.publish(publication, None, None, stamp=True, confirmation=confirmation)

    def history(
        self, core: CableConnection, request: HistoryRequest, *, now: float
    ) -> Awaitable[Answer] | None:
        return self._history(request, now)

    async def _history(self, request: HistoryRequest, now: float) -> Answer:
        answer = await self.link.request(
            {"op": "history", "q": [query_to_wire(q) for q in request.queries], "now": now}
        )
        entries = None
        epoch = ""
        if answer is not None and answer.get("e") is not None:
            entries = [entry_from_wire(e) for e in answer["e"]]
            epoch = str(answer.get("epoch") or "")

        def apply(core: CableConnection) -> None:
            core.history_result(request.identifier, entries, epoch=epoch)

        return apply

    def presence(
        self, core: CableConnection, request: PresenceRequest, on_event: OnPresence, *, now: float
    ) -> Awaitable[Answer] | None:
        if request.kind == "info":
            return self._presence_info(request)

        def then(answer: dict[str, Any] | None) -> None:
            if answer is not None and answer.get("ev") is not None:
                on_event(event_from_wire(answer["ev"]))

        if request.kind == "join":
            message = {
                "op": "join",
                "stream": request.stream,
                "sid": core.sid,
                "pid": request.presence_id,
                "info": request.info,
            }
        else:
            message = {"op": "leave", "stream": request.stream, "sid": core.sid}
        self.link.ask(message, then)
        return None

    async def _presence_info(self, request: PresenceRequest) -> Answer:
        records = await self.presence_users(request.stream)

        def apply(core: CableConnection) -> None:
            core.presence_result(request.identifier, records)

        return apply

    async def presence_users(self, stream: str) -> PresenceRecords | None:
        answer = await self.link.request({"op": "info", "stream": stream})
        if answer is None or answer.get("r") is None:
            return None
        return [(str(pid), info) for pid, info in answer["r"]]

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        if self.sessions_ttl > 0:
            self.link.send({"op": "save", "sid": sid, "s": snapshot_to_wire(snapshot)})

    def release_session(
        self, sid: str, snapshot: SessionSnapshot | None, presence: Iterable[str], *, now: float
    ) -> None:
        streams = list(presence)
        if not streams and (snapshot is None or self.sessions_ttl <= 0):
            return  # nothing the hub keeps for it
        self.link.send(
            {
                "op": "release",
                "sid": sid,
                "s": None if snapshot is None else snapshot_to_wire(snapshot),
                "presence": streams,
                "now": now,
            }
        )

    async def restore_session(self, sid: str, *, now: float) -> SessionSnapshot | None:
        answer = await self.link.request({"op": "restore", "sid": sid, "now": now})
        if answer is None or answer.get("s") is None:
            return None
        return snapshot_from_wire(answer["s"])

    def sweep(
        self,
        now: float,
        on_event: OnPresence,
        live_presence: Callable[[], Iterable[tuple[str, str]]],
    ) -> bool:
        return False
