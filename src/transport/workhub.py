"""The workers' hub (``cableway --workers N``): one stamping authority for every worker.

The supervisor runs one :class:`Hub`; each worker keeps one ordered connection to it
over a Unix stream socket (protocol: :mod:`cableway.transport.hubwire`,
``docs/workers.md``). The hub holds what a single process keeps in its memory broker
(:class:`~cableway.protocol.broker.MemoryBroker`: stream history with one offset
sequence per stream, session snapshots, presence) and relays every publication a worker
accepted to every worker, stamped, in one order. So the workers act as one node: a
broadcast accepted by any worker reaches subscribers on all of them, in the hub's order,
once; a client that reconnects to another worker restores its session there.

Resource handling:
    Per worker: a reader that handles each message at once (no awaits: the hub's state
    changes in message order) and a writer that sends what is queued for the worker in
    batches. A worker whose queue passes :attr:`Hub.max_backlog` bytes is dropped (its
    connection closed): it exits, the supervisor starts another, and its clients
    reconnect to the others. A worker that is gone leaves its live sessions restorable
    for ``sessions_ttl`` and its presence expiring after ``presence_ttl``, as if each
    session had closed then.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import trio

from ..node.backend import SWEEP_SLICE
from ..protocol.broker import MemoryBroker, PresenceEvent
from .hubwire import (
    FrameReader,
    HubWireError,
    encode,
    entry_to_wire,
    event_to_wire,
    publication_from_wire,
    publication_to_wire,
    query_from_wire,
    snapshot_from_wire,
    snapshot_to_wire,
)

__all__ = ["COLLECT_TIMEOUT", "Hub", "WorkerLink"]

log = logging.getLogger("cableway.workers")

#: how long the hub waits for every worker's metrics before answering a scrape with the
#: ones it has
COLLECT_TIMEOUT = 2.0

#: bytes read from a worker's connection at a time
_READ_SIZE = 256 * 1024


@dataclass(eq=False)
class WorkerLink:
    """One worker's connection, as the hub sees it."""

    number: int
    stream: trio.abc.Stream
    index: int = -1
    pid: int = 0
    queue: deque[bytes] = field(default_factory=deque)
    queued: int = 0
    wake: trio.Event = field(default_factory=trio.Event)
    closed: bool = False
    #: sid -> the presence streams of its live session (released when the worker is gone)
    sessions: dict[str, set[str]] = field(default_factory=dict)

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        self.queue.append(frame)
        self.queued += len(frame)
        self.wake.set()


class Hub:
    """History, sessions and presence of every worker, and the relay between them.

    Args:
        broker: the memory broker (``--broker=memory``), or None (``--broker=none``:
            publications are relayed unstamped, nothing is kept).
        workers: how many workers the supervisor runs (what health reports against).
        max_backlog: bytes queued for one worker before it is dropped.
        clock: Unix time (for the broker's TTLs).
    """

    def __init__(
        self,
        broker: MemoryBroker | None,
        *,
        workers: int,
        max_backlog: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.workers = workers
        self.max_backlog = max_backlog
        self.clock = clock
        self.links: dict[int, WorkerLink] = {}
        self._numbers = itertools.count(1)
        self._asks = itertools.count(1)
        #: hub request id -> (replies so far, workers still to answer, done)
        self._collecting: dict[int, tuple[list[dict[str, Any]], set[int], trio.Event]] = {}
        self._nursery: trio.Nursery | None = None
        #: the publications relayed (for tests and the supervisor's log)
        self.relayed = 0
        #: the links of the workers that said hello (by link number), and the pid of
        #: every worker that ever did
        self.joined: set[int] = set()
        self.ever_joined: set[int] = set()
        #: called whenever a worker joins or leaves
        self.on_change: Callable[[], None] = lambda: None

    # -- serving -----------------------------------------------------------------------

    async def serve(
        self,
        listener: trio.abc.Listener[trio.SocketStream],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve worker connections on ``listener`` and sweep the broker, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.broker is not None:
                nursery.start_soon(self._sweep)
            task_status.started()
            await trio.serve_listeners(self.handle, [listener])

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One worker's connection, until it closes."""
        link = WorkerLink(next(self._numbers), stream)
        self.links[link.number] = link
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, link)
                await self._read(link)
                nursery.cancel_scope.cancel()
        finally:
            self._gone(link)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _read(self, link: WorkerLink) -> None:
        reader = FrameReader()
        while not link.closed:
            try:
                data = await link.stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                messages = reader.feed(bytes(data))
            except HubWireError as exc:
                log.error("worker %d: %s; dropping its connection", link.index, exc)
                return
            for message in messages:
                try:
                    self.take(link, message)
                except (HubWireError, KeyError, TypeError, ValueError) as exc:
                    log.error("worker %d: bad hub message (%s); dropping it", link.index, exc)
                    return

    async def _write(self, link: WorkerLink) -> None:
        try:
            while True:
                while not link.queue:
                    link.wake = trio.Event()
                    await link.wake.wait()
                batch = b"".join(link.queue)
                link.queue.clear()
                link.queued = 0
                await link.stream.send_all(batch)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            link.closed = True
            await trio.aclose_forcefully(link.stream)

    def _gone(self, link: WorkerLink) -> None:
        link.closed = True
        self.links.pop(link.number, None)
        if link.index >= 0:
            log.info("worker %d (pid %d) left the hub", link.index, link.pid)
            self.joined.discard(link.number)
            self.on_change()
        broker = self.broker
        if broker is not None:
            now = self.clock()
            for sid, streams in link.sessions.items():
                broker.release_session(sid, now=now)
                for stream in streams:
                    broker.presence_disconnect(stream, sid, now=now)
        link.sessions.clear()
        for _replies, waiting, done in self._collecting.values():
            waiting.discard(link.number)
            if not waiting:
                done.set()

    # -- messages ----------------------------------------------------------------------

    def take(self, link: WorkerLink, message: dict[str, Any]) -> None:
        """Carry out one message from ``link``'s worker (never awaits)."""
        op = message["op"]
        handler = self._ops.get(op)
        if handler is None:
            raise HubWireError(f"unknown op {op!r}")
        handler(self, link, message)

    def _reply(self, link: WorkerLink, message: dict[str, Any], **body: Any) -> None:
        ask = message.get("id")
        if ask is not None:
            link.push(encode({"op": "re", "id": ask, **body}))

    def _hello(self, link: WorkerLink, message: dict[str, Any]) -> None:
        link.index = int(message["index"])
        link.pid = int(message["pid"])
        log.info("worker %d (pid %d) joined the hub", link.index, link.pid)
        self.joined.add(link.number)
        self.ever_joined.add(link.pid)
        self.on_change()
        self._reply(link, message, epoch=None if self.broker is None else self.broker.epoch)

    def _pub(self, link: WorkerLink, message: dict[str, Any]) -> None:
        broker = self.broker
        now = self.clock()
        out: list[list[Any]] = []
        for item in message["m"]:
            wire, offset, epoch = item
            publication = publication_from_wire(wire)
            if message.get("stamp") and broker is not None and not publication.transient:
                offset = broker.add(
                    publication.stream,
                    publication.data,
                    now=now,
                    broadcast_type=publication.broadcast_type,
                )
                epoch = broker.epoch
            out.append([publication_to_wire(publication), offset, epoch])
        if out:
            frame = encode({"op": "deliver", "m": out})
            self.relayed += len(out)
            for other in list(self.links.values()):
                other.push(frame)
                self._check_backlog(other)
        self._reply(link, message)

    def _remote(self, link: WorkerLink, message: dict[str, Any]) -> None:
        frame = encode({"op": "remote", "c": str(message["c"])})
        for other in list(self.links.values()):
            other.push(frame)
            self._check_backlog(other)
        self._reply(link, message)

    def _history(self, link: WorkerLink, message: dict[str, Any]) -> None:
        broker = self.broker
        if broker is None:
            self._reply(link, message, e=None, epoch=None)
            return
        queries = [query_from_wire(q) for q in message["q"]]
        entries = broker.fetch_history(queries, now=float(message["now"]))
        self._reply(
            link,
            message,
            e=None if entries is None else [entry_to_wire(e) for e in entries],
            epoch=broker.epoch,
        )

    def _save(self, link: WorkerLink, message: dict[str, Any]) -> None:
        sid = str(message["sid"])
        if self.broker is not None:
            self.broker.save_session(sid, snapshot_from_wire(message["s"]))
        link.sessions.setdefault(sid, set())

    def _release(self, link: WorkerLink, message: dict[str, Any]) -> None:
        sid = str(message["sid"])
        now = float(message["now"])
        link.sessions.pop(sid, None)
        broker = self.broker
        if broker is None:
            return
        if message.get("s") is not None:
            broker.save_session(sid, snapshot_from_wire(message["s"]))
        broker.release_session(sid, now=now)
        for stream in message["presence"]:
            broker.presence_disconnect(str(stream), sid, now=now)

    def _restore(self, link: WorkerLink, message: dict[str, Any]) -> None:
        broker = self.broker
        snapshot = (
            None
            if broker is None
            else broker.restore_session(str(message["sid"]), now=float(message["now"]))
        )
        self._reply(link, message, s=None if snapshot is None else snapshot_to_wire(snapshot))

    def _join(self, link: WorkerLink, message: dict[str, Any]) -> None:
        broker = self.broker
        event: PresenceEvent | None = None
        if broker is not None:
            stream, sid = str(message["stream"]), str(message["sid"])
            try:
                event = broker.presence_join(stream, sid, str(message["pid"]), message["info"])
            except ValueError:
                log.debug("presence id mismatch sid=%s", sid)
            else:
                link.sessions.setdefault(sid, set()).add(stream)
        self._reply(link, message, ev=None if event is None else event_to_wire(event))

    def _leave(self, link: WorkerLink, message: dict[str, Any]) -> None:
        broker = self.broker
        event: PresenceEvent | None = None
        if broker is not None:
            stream, sid = str(message["stream"]), str(message["sid"])
            event = broker.presence_leave(stream, sid)
            streams = link.sessions.get(sid)
            if streams is not None:
                streams.discard(stream)
        self._reply(link, message, ev=None if event is None else event_to_wire(event))

    def _info(self, link: WorkerLink, message: dict[str, Any]) -> None:
        broker = self.broker
        records = None if broker is None else broker.presence_info(str(message["stream"]))
        self._reply(link, message, r=None if records is None else [list(r) for r in records])

    def _workers(self, link: WorkerLink, message: dict[str, Any]) -> None:
        up = sorted([other.index, other.pid] for other in self.links.values() if other.index >= 0)
        self._reply(link, message, n=self.workers, up=up)

    def _metrics(self, link: WorkerLink, message: dict[str, Any]) -> None:
        nursery = self._nursery
        assert nursery is not None
        nursery.start_soon(self._collect, link, message)

    def _answer(self, link: WorkerLink, message: dict[str, Any]) -> None:
        """A worker's answer to the hub's ``collect``."""
        pending = self._collecting.get(int(message["id"]))
        if pending is None:
            return  # too late: the scrape was answered without it
        replies, waiting, done = pending
        if link.number in waiting:
            waiting.discard(link.number)
            replies.append(dict(message.get("m") or {}))
            if not waiting:
                done.set()

    _ops: ClassVar[dict[str, Callable[[Hub, WorkerLink, dict[str, Any]], None]]] = {
        "hello": _hello,
        "pub": _pub,
        "remote": _remote,
        "history": _history,
        "save": _save,
        "release": _release,
        "restore": _restore,
        "join": _join,
        "leave": _leave,
        "info": _info,
        "workers": _workers,
        "metrics": _metrics,
        "re": _answer,
    }

    def _check_backlog(self, link: WorkerLink) -> None:
        if link.queued > self.max_backlog and not link.closed:
            log.error(
                "worker %d (pid %d) is %d bytes behind the hub; dropping its connection",
                link.index,
                link.pid,
                link.queued,
            )
            link.closed = True
            link.queue.clear()
            link.queued = 0
            link.wake.set()
            nursery = self._nursery
            if nursery is not None:
                nursery.start_soon(trio.aclose_forcefully, link.stream)

    async def _collect(self, link: WorkerLink, message: dict[str, Any]) -> None:
        """Every worker's metrics, summed by name, for one scrape."""
        ask = next(self._asks)
        waiting = {other.number for other in self.links.values() if other.index >= 0}
        replies: list[dict[str, Any]] = []
        done = trio.Event()
        self._collecting[ask] = (replies, waiting, done)
        frame = encode({"op": "collect", "id": ask})
        for number in list(waiting):
            self.links[number].push(frame)
        try:
            if waiting:
                with trio.move_on_after(COLLECT_TIMEOUT):
                    await done.wait()
        finally:
            del self._collecting[ask]
        total: dict[str, float] = {}
        for values in replies:
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    total[name] = total.get(name, 0) + value
        self._reply(link, message, m=total, answered=len(replies))

    async def _sweep(self) -> None:
        """Expire history, sessions and presence about once a second, in slices (as a
        node does); a presence leave that expiry produced is published by one worker
        (to every worker)."""
        broker = self.broker
        assert broker is not None
        while True:
            await trio.sleep(1.0)
            now = self.clock()
            while True:
                events = broker.expire(now, budget=SWEEP_SLICE)
                live = [link for link in self.links.values() if link.index >= 0]
                if events and live:
                    wire = [event_to_wire(e) for e in events]
                    live[0].push(encode({"op": "presence", "ev": wire}))
                if not broker.expiry_pending(now):
                    break
                await trio.lowlevel.checkpoint()
