"""Scale-out on Redis (spec §11.4, §11.5, §11.7): the adapters that let nodes act as one.

* :class:`Subscriber` — one pub/sub connection per node. It listens to the legacy
  broadcast channel (``--broadcast_adapter=redis``), to the internal channel for remote
  commands and to one channel per stream that has local subscribers (``--pubsub=redis``),
  and delivers what it receives to this node's sessions.
* :class:`Publisher` — ``--pubsub=redis``: sends every stamped publication accepted on
  this node to the channel named like its stream, in order, pipelined.
* :class:`.redisx.StreamConsumer` — ``--broadcast_adapter=redisx``: a consumer in group ``bx`` of
  the Redis stream ``__anycable__``; each entry is consumed by one node, passed through
  the broker, then acknowledged and deleted.

Error handling:
    Every adapter survives Redis restarts: a lost connection is logged once (and its
    recovery once), then retried with capped exponential backoff and jitter, forever.

Delivery guarantees (docs/deployment.md):
    * ``redis`` (legacy): at most once; what is published while a node is disconnected
      does not reach it (Redis pub/sub keeps nothing).
    * ``redisx``: at least once; an entry is acknowledged only after this node handed it
      to the pub/sub publisher (or delivered it locally without pub/sub); unacknowledged
      entries are read again after a reconnect, and entries left pending by a node that
      died are claimed by another after ``claim_idle`` seconds.
    * HTTP with ``--pubsub=redis``: ``201`` only once Redis accepted the ``PUBLISH``;
      while Redis is unreachable the request gets ``503`` (nothing is queued for it).
      Publications made inside the server (whispers, presence) while Redis is down are
      queued (bounded) and sent after recovery.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..protocol import messages
from ..protocol.broadcast import Publication, RemoteDisconnect, parse_broadcast
from ..protocol.errors import RemoteProtocolError
from .redis import Arg, RedisConnection, RedisConnectionError, RedisError, RedisUrl, Reply
from .redis import encode_command as _command
from .sentinel import MasterSwitched, connect, serve_master

__all__ = [
    "INTERNAL_CHANNEL",
    "Acknowledgement",
    "Backoff",
    "Confirmation",
    "Publisher",
    "StateSignal",
    "Subscriber",
    "acknowledged",
    "decode_stamped",
    "encode_stamped",
]

log = logging.getLogger("cableway.redis")

INTERNAL_CHANNEL = "__anycable_internal__"


# -- wire format of inter-node messages ------------------------------------------------


def encode_stamped(publication: Publication, offset: int | None, epoch: str | None) -> bytes:
    """``{"stream","data","meta","offset","epoch"}`` (spec §11.7)."""
    meta: dict[str, Any] = {}
    if publication.exclude_socket is not None:
        meta["exclude_socket"] = publication.exclude_socket
    if publication.transient:
        meta["transient"] = True
    if publication.broadcast_type is not None:
        meta["broadcast_type"] = publication.broadcast_type
    body: dict[str, Any] = {"stream": publication.stream, "data": publication.data}
    if meta:
        body["meta"] = meta
    if offset is not None:
        body["offset"] = offset
        body["epoch"] = epoch
    # dumps escapes lone surrogates (a "\\ud800" in a publication), so this encodes
    return messages.dumps(body).encode()


def decode_stamped(payload: bytes) -> tuple[Publication, int | None, str | None]:
    """The inverse of :func:`encode_stamped`.

    Raises:
        RemoteProtocolError: not such a message.
    """
    parsed = parse_broadcast(payload, max_batch=1)
    if isinstance(parsed, RemoteDisconnect) or len(parsed) != 1:
        raise RemoteProtocolError("not a stamped publication")
    value = json.loads(payload)
    offset, epoch = value.get("offset"), value.get("epoch")
    if isinstance(offset, int) and not isinstance(offset, bool) and isinstance(epoch, str):
        return parsed[0], offset, epoch
    return parsed[0], None, None


def encode_remote(command: RemoteDisconnect) -> bytes:
    body = {
        "command": "disconnect",
        "payload": {"identifier": command.identifier, "reconnect": command.reconnect},
    }
    return json.dumps(body, separators=(",", ":")).encode()


# -- reconnecting ------------------------------------------------------------------------


class StateSignal:
    """Wakes whoever waits for a change of a Redis link's state (up, channels subscribed,
    consumer group ready): readiness checks and tests wait on it instead of polling."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    def next_change(self) -> trio.Event:
        """An event set at the next change (take it before checking the state)."""
        return self._event

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds (checked after every change)."""
        while not predicate():
            await self._event.wait()


class Backoff:
    """Capped exponential backoff with full jitter; logs an outage and a recovery once."""

    def __init__(self, name: str, *, base: float = 0.1, cap: float = 5.0) -> None:
        self.name = name
        self.base = base
        self.cap = cap
        self.failures = 0
        self._random = random.Random()

    def failed(self, error: Exception) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        if self.failures == 0:
            log.warning("%s: Redis unavailable (%s); reconnecting with backoff", self.name, error)
        else:
            log.debug("%s: reconnect attempt %d failed: %s", self.name, self.failures, error)
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 20))
        return self._random.uniform(ceiling / 2, ceiling)

    def succeeded(self) -> None:
        if self.failures:
            log.warning("%s: Redis connection restored", self.name)
        self.failures = 0


async def run_connection(
    url: RedisUrl,
    backoff: Backoff,
    body: Callable[[RedisConnection], Awaitable[None]],
    on_down: Callable[[], None] = lambda: None,
) -> None:
    """Connect, run ``body`` until the connection fails, back off, and again, forever."""
    while True:
        connection: RedisConnection | None = None
        try:
            connection = await connect(url)
            await serve_master(url, connection, body)
            return
        except MasterSwitched as exc:
            # not a failure: reconnect at once (to the new master), no backoff
            log.warning("%s: %s; reconnecting", backoff.name, exc)
            on_down()
        except (RedisConnectionError, RedisError) as exc:
            on_down()
            await trio.sleep(backoff.failed(exc))
        finally:
            if connection is not None:
                await connection.aclose()


async def both(
    connection: RedisConnection,
    *tasks: Callable[[RedisConnection], Awaitable[None]],
) -> None:
    """Run tasks on one connection; the first connection error stops all and is raised."""
    errors: list[Exception] = []

    async def guard(task: Callable[[RedisConnection], Awaitable[None]]) -> None:
        try:
            await task(connection)
        except (RedisConnectionError, RedisError) as exc:
            errors.append(exc)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for task in tasks:
            nursery.start_soon(guard, task)
    if errors:
        raise errors[0]


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"


# -- pub/sub subscriber ----------------------------------------------------------------------


class Subscriber:
    """The node's pub/sub connection: fixed channels plus one channel per local stream."""

    def __init__(
        self,
        url: RedisUrl,
        *,
        legacy_channel: str | None,
        per_stream: bool,
        on_broadcast: Callable[[bytes, str], None],
        on_command: Callable[[RemoteDisconnect], None],
        on_stamped: Callable[[Publication, int | None, str | None], None],
        keepalive: float = 10.0,
        state: StateSignal | None = None,
    ) -> None:
        #: a broadcast body on the legacy channel (the application's), with its channel
        self.on_broadcast = on_broadcast
        #: a remote command another node relayed on the internal channel
        self.on_command = on_command
        #: a stamped publication on a stream's channel
        self.on_stamped = on_stamped
        self.state = state or StateSignal()
        self.url = url
        self.legacy_channel = legacy_channel
        self.per_stream = per_stream
        self.internal_channel: str | None = None
        if per_stream:
            internal = INTERNAL_CHANNEL
            if internal == legacy_channel:
                internal += "-int"
            self.internal_channel = internal
        self.fixed = {c for c in (legacy_channel, self.internal_channel) if c is not None}
        self.wanted: set[str] = set()
        #: channels Redis confirmed on the current connection
        self.confirmed: set[str] = set()
        self.keepalive = keepalive
        self._changed = trio.Event()
        self.backoff = Backoff("redis subscriber")

    def want(self, stream: str) -> None:
        """The stream gained its first local subscriber."""
        if self.per_stream and stream not in self.wanted:
            self.wanted.add(stream)
            self._changed.set()
            self.state.fire()

    def unwant(self, stream: str) -> None:
        """The stream lost its last local subscriber."""
        if stream in self.wanted:
            self.wanted.discard(stream)
            self._changed.set()
            self.state.fire()

    def ready(self, *streams: str) -> bool:
        """Whether the fixed channels and ``streams`` are subscribed (tests, health)."""
        return self.fixed.union(streams) <= self.confirmed

    async def run(self) -> None:
        await run_connection(
            self.url, self.backoff, lambda c: both(c, self._writer, self._reader), self._down
        )

    def _down(self) -> None:
        self.confirmed.clear()
        self.state.fire()

    async def _writer(self, connection: RedisConnection) -> None:
        sent: set[str] = set()
        while True:
            self._changed = trio.Event()
            target = self.fixed | self.wanted
            add, drop = sorted(target - sent), sorted(sent - target)
            data = b""
            if add:
                data += _command("SUBSCRIBE", *add)
            if drop:
                data += _command("UNSUBSCRIBE", *drop)
            if data:
                await connection.send(data)
                sent = target
            with trio.move_on_after(self.keepalive):
                await self._changed.wait()
                continue
            await connection.send(_command("PING"))

    async def _reader(self, connection: RedisConnection) -> None:
        while True:
            with trio.move_on_after(self.keepalive * 3) as idle:
                reply = await connection.read()
            if idle.cancelled_caught:
                raise RedisConnectionError("no reply to keepalive pings")
            if not isinstance(reply, list) or len(reply) < 2:
                if isinstance(reply, RedisError):
                    raise reply
                continue
            kind = reply[0]
            channel_raw = reply[1]
            if not isinstance(channel_raw, bytes):
                continue
            channel = channel_raw.decode("utf-8", "surrogateescape")
            if kind == b"subscribe":
                self.confirmed.add(channel)
                self.state.fire()
                self.backoff.succeeded()
            elif kind == b"unsubscribe":
                self.confirmed.discard(channel)
                self.state.fire()
            elif kind == b"message" and len(reply) == 3 and isinstance(reply[2], bytes):
                try:
                    self._dispatch(channel, reply[2])
                except Exception:  # a bug must cost one message, never the node
                    log.exception("unexpected error delivering a message from %s", channel)

    def _dispatch(self, channel: str, payload: bytes) -> None:
        if channel == self.legacy_channel:
            self.on_broadcast(payload, channel)
        elif channel == self.internal_channel:
            try:
                parsed = parse_broadcast(payload)
            except RemoteProtocolError as exc:
                log.warning("invalid internal command: %s", exc)
                return
            if isinstance(parsed, RemoteDisconnect):
                self.on_command(parsed)
        elif channel in self.wanted:
            try:
                publication, offset, epoch = decode_stamped(payload)
            except (RemoteProtocolError, ValueError) as exc:
                log.warning("invalid pub/sub message on %s: %s", channel, exc)
                return
            self.on_stamped(publication, offset, epoch)


# -- pub/sub publisher ----------------------------------------------------------------------


@dataclass(slots=True)
class Confirmation:
    """What a publisher waits for: all its messages accepted by Redis, or not."""

    pending: int = 0
    ok: bool = True
    abandoned: bool = False
    done: trio.Event = field(default_factory=trio.Event)

    def settle(self, ok: bool) -> None:
        if not ok:
            self.ok = False
        self.pending -= 1
        if self.pending <= 0 or not ok:
            self.done.set()


#: what tells whether a publication (or a remote command) was accepted: known at once,
#: or a :class:`Confirmation` still to settle
Acknowledgement = Confirmation | bool


async def acknowledged(pending: Acknowledgement, deadline: float) -> bool:
    """Whether ``pending`` was accepted, waiting for it until ``deadline`` (trio time): a
    confirmation not settled by then counts as refused (and is abandoned)."""
    if isinstance(pending, bool):
        return pending
    with trio.move_on_at(deadline):
        await pending.done.wait()
    ok = pending.done.is_set() and pending.ok
    if not ok:
        pending.abandoned = True
    return ok


@dataclass(slots=True)
class _Outgoing:
    command: tuple[Arg, ...]
    confirmation: Confirmation | None
    on_reply: Callable[[Reply], None] | None


class Publisher:
    """Sends commands to Redis in the order they were posted, pipelined, on one connection.

    Mostly ``PUBLISH`` (:meth:`post`); the Redis broker also sends its scripts and reads
    through it (:meth:`send`), so that a read sees every write posted before it.
    Commands with a :class:`Confirmation` (HTTP broadcasts, reads) are failed when the
    connection is lost; the others (whispers, presence, redisx entries, session
    snapshots) wait for the reconnect, up to ``max_queue`` commands (then the oldest are
    dropped, with a warning).
    """

    def __init__(
        self,
        url: RedisUrl,
        *,
        max_queue: int = 100_000,
        batch: int = 512,
        state: StateSignal | None = None,
    ) -> None:
        self.url = url
        self.state = state or StateSignal()
        self.max_queue = max_queue
        self.batch = batch
        self.queue: deque[_Outgoing] = deque()
        self.up = False
        self._wake = trio.Event()
        self.backoff = Backoff("redis publisher")
        self.dropped = 0
        self._inflight = False

    def post(self, channel: str, payload: bytes, confirmation: Confirmation | None = None) -> None:
        """``PUBLISH channel payload``."""
        self.send(("PUBLISH", channel, payload), confirmation)

    def send(
        self,
        command: tuple[Arg, ...],
        confirmation: Confirmation | None = None,
        on_reply: Callable[[Reply], None] | None = None,
    ) -> None:
        """Queue ``command``; ``on_reply`` gets its reply (an error reply included) once
        Redis answered. Never called when the command is dropped (its confirmation, if
        any, then fails)."""
        if confirmation is not None:
            confirmation.pending += 1
        if len(self.queue) >= self.max_queue:
            old = self.queue.popleft()
            if old.confirmation is not None:
                old.confirmation.settle(False)
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("redis publisher: queue full, %d messages dropped", self.dropped)
        self.queue.append(_Outgoing(command, confirmation, on_reply))
        self._wake.set()

    async def run(self) -> None:
        await run_connection(self.url, self.backoff, self._serve, self._down)

    async def drained(self) -> None:
        """Return once every queued command was answered (or the connection dropped)."""
        await self.state.wait_for(lambda: not (self.up and (self.queue or self._inflight)))

    def _down(self) -> None:
        self._inflight = False
        self.up = False
        self.state.fire()
        kept: deque[_Outgoing] = deque()
        for item in self.queue:
            if item.confirmation is None:
                kept.append(item)
            else:
                item.confirmation.settle(False)
        self.queue = kept

    async def _serve(self, connection: RedisConnection) -> None:
        await connection.execute("PING")
        self.up = True
        self.state.fire()
        self.backoff.succeeded()
        while True:
            while not self.queue:
                self._wake = trio.Event()
                await self._wake.wait()
            items: list[_Outgoing] = []
            while self.queue and len(items) < self.batch:
                item = self.queue[0]
                if item.confirmation is not None and item.confirmation.abandoned:
                    self.queue.popleft()
                    continue
                items.append(item)
                self.queue.popleft()
            if not items:
                continue
            self._inflight = True
            try:
                replies = await connection.pipeline([item.command for item in items])
            except BaseException:
                # not confirmed: put them back (in order) for _down() to sort out
                self.queue.extendleft(reversed(items))
                raise
            for item, reply in zip(items, replies, strict=True):
                failed = isinstance(reply, RedisError)
                if item.on_reply is not None:
                    try:
                        item.on_reply(reply)
                    except Exception:  # a bug must cost one reply, never the node
                        log.exception("unexpected error handling a Redis reply")
                        failed = True
                if item.confirmation is not None:
                    item.confirmation.settle(not failed)
                if isinstance(reply, RedisError):
                    log.warning("redis publisher: %s failed: %s", _name(item.command), reply)
            self._inflight = False
            if not self.queue:
                self.state.fire()  # drained


def _name(command: tuple[Arg, ...]) -> str:
    first = command[0] if command else b""
    return first.decode() if isinstance(first, bytes) else str(first)
