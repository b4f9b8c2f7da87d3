"""Scale-out on Redis (spec §11.4, §11.5, §11.7): the adapters that let nodes act as one.

* :class:`Subscriber` — one pub/sub connection per node. It listens to the legacy
  broadcast channel (``--broadcast_adapter=redis``), to the internal channel for remote
  commands and to one channel per stream that has local subscribers (``--pubsub=redis``),
  and delivers what it receives to this node's sessions.
* :class:`Publisher` — ``--pubsub=redis``: sends every stamped publication accepted on
  this node to the channel named like its stream, in order, pipelined.
* :class:`StreamConsumer` — ``--broadcast_adapter=redisx``: a consumer in group ``bx`` of
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
import math
import os
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ..protocol import messages
from ..protocol.broadcast import Publication, RemoteDisconnect, parse_broadcast
from ..protocol.errors import RemoteProtocolError
from .redis import Arg, RedisConnection, RedisConnectionError, RedisError, RedisUrl, Reply
from .redis import encode_command as _command
from .sentinel import MasterSwitched, connect, serve_master

if TYPE_CHECKING:
    from .server import Server

__all__ = [
    "INTERNAL_CHANNEL",
    "Backoff",
    "Publisher",
    "StateSignal",
    "StreamConsumer",
    "Subscriber",
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


async def _run_connection(
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


async def _both(
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
        server: Server,
        url: RedisUrl,
        *,
        legacy_channel: str | None,
        per_stream: bool,
        keepalive: float = 10.0,
        state: StateSignal | None = None,
    ) -> None:
        self.server = server
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
        await _run_connection(
            self.url, self.backoff, lambda c: _both(c, self._writer, self._reader), self._down
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
        server = self.server
        if channel == self.legacy_channel:
            try:
                parsed = parse_broadcast(payload)
            except RemoteProtocolError as exc:
                server.metrics.inc("failed_broadcast_msg_total")
                log.warning("invalid broadcast on %s: %s", channel, exc)
                return
            if isinstance(parsed, RemoteDisconnect):
                server.metrics.inc("remote_commands_total")
                server.remote_disconnect(parsed)
            else:
                # legacy fan-out: every node gets it, so it bypasses the broker
                server.metrics.inc("publications_total", len(parsed))
                for publication in parsed:
                    server.deliver(publication, None, None)
        elif channel == self.internal_channel:
            try:
                parsed = parse_broadcast(payload)
            except RemoteProtocolError as exc:
                log.warning("invalid internal command: %s", exc)
                return
            if isinstance(parsed, RemoteDisconnect):
                server.remote_disconnect(parsed)
        elif channel in self.wanted:
            try:
                publication, offset, epoch = decode_stamped(payload)
            except (RemoteProtocolError, ValueError) as exc:
                log.warning("invalid pub/sub message on %s: %s", channel, exc)
                return
            server.deliver(publication, offset, epoch)


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
        await _run_connection(self.url, self.backoff, self._serve, self._down)

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


# -- redisx consumer ------------------------------------------------------------------------


class StreamConsumer:
    """``--broadcast_adapter=redisx``: one consumer of group ``bx`` on the Redis stream."""

    def __init__(
        self,
        server: Server,
        url: RedisUrl,
        *,
        stream: str,
        group: str = "bx",
        block_ms: int = 2000,
        claim_idle: float = 30.0,
        count: int = 100,
        state: StateSignal | None = None,
    ) -> None:
        self.server = server
        self.state = state or StateSignal()
        self.url = url
        self.stream = stream
        self.group = group
        self.name = consumer_name()
        self.block_ms = block_ms
        self.claim_idle = claim_idle
        self.count = count
        self.backoff = Backoff("redisx consumer")
        self.ready = False

    async def run(self) -> None:
        await _run_connection(self.url, self.backoff, self._serve, self._down)

    def _down(self) -> None:
        self.ready = False
        self.state.fire()

    async def _ensure_group(self, connection: RedisConnection) -> None:
        try:
            await connection.execute("XGROUP", "CREATE", self.stream, self.group, "$", "MKSTREAM")
        except RedisError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _serve(self, connection: RedisConnection) -> None:
        await self._ensure_group(connection)
        self.ready = True
        self.state.fire()
        self.backoff.succeeded()
        # our own entries left unacknowledged by a failed hand-over come first
        backlog = True
        next_claim = trio.current_time()
        while True:
            if trio.current_time() >= next_claim:
                await self._claim(connection)
                next_claim = trio.current_time() + max(self.claim_idle / 2, 1.0)
            start = "0" if backlog else ">"
            try:
                reply = await connection.execute(
                    "XREADGROUP",
                    "GROUP",
                    self.group,
                    self.name,
                    "COUNT",
                    self.count,
                    *(("BLOCK", self.block_ms) if not backlog else ()),
                    "STREAMS",
                    self.stream,
                    start,
                )
            except RedisError as exc:
                if str(exc).startswith("NOGROUP"):  # Redis lost its data (restart)
                    await self._ensure_group(connection)
                    continue
                raise
            entries = _stream_entries(reply)
            if backlog and not entries:
                backlog = False
                continue
            if not await self._handle(connection, entries):
                backlog = True  # hand-over failed: read our pending entries again, later
                await trio.sleep(self.backoff.base)

    async def _claim(self, connection: RedisConnection) -> None:
        """Take over entries another (dead) consumer left pending for ``claim_idle``."""
        try:
            reply = await connection.execute(
                "XAUTOCLAIM",
                self.stream,
                self.group,
                self.name,
                math.ceil(self.claim_idle * 1000),
                "0-0",
                "COUNT",
                self.count,
            )
        except RedisError as exc:
            log.debug("XAUTOCLAIM failed: %s", exc)
            return
        if isinstance(reply, list) and len(reply) >= 2:
            await self._handle(connection, _entries(reply[1]))

    async def _handle(
        self, connection: RedisConnection, entries: list[tuple[bytes, bytes | None]]
    ) -> bool:
        """Process entries in order; acknowledge those handed over. False: stopped early."""
        done: list[bytes] = []
        ok = True
        for entry_id, payload in entries:
            if payload is not None and not await self._process(payload):
                ok = False
                break
            done.append(entry_id)
        if done:
            await connection.pipeline(
                [
                    ("XACK", self.stream, self.group, *done),
                    ("XDEL", self.stream, *done),
                ]
            )
        return ok

    async def _process(self, payload: bytes) -> bool:
        server = self.server
        try:
            parsed = parse_broadcast(payload)
        except RemoteProtocolError as exc:
            server.metrics.inc("failed_broadcast_msg_total")
            log.warning("invalid broadcast in stream %s: %s", self.stream, exc)
            return True  # nothing to retry: drop it
        if isinstance(parsed, RemoteDisconnect):
            server.metrics.inc("remote_commands_total")
            return await server.remote_command(parsed)
        server.metrics.inc("publications_total", len(parsed))
        return await server.publish_confirmed(parsed)


def _entries(value: Reply) -> list[tuple[bytes, bytes | None]]:
    """``[[id, [field, value, ...]], ...]`` -> (id, payload) pairs (None: no payload)."""
    result: list[tuple[bytes, bytes | None]] = []
    if not isinstance(value, list):
        return result
    for entry in value:
        if not isinstance(entry, list) or not entry or not isinstance(entry[0], bytes):
            continue
        fields = entry[1] if len(entry) > 1 else None
        payload: bytes | None = None
        if isinstance(fields, list):
            for index in range(0, len(fields) - 1, 2):
                if fields[index] == b"payload":
                    value = fields[index + 1]
                    payload = value if isinstance(value, bytes) else None
                    break
        result.append((entry[0], payload))
    return result


def _stream_entries(reply: Reply) -> list[tuple[bytes, bytes | None]]:
    """Entries of the single stream in an XREADGROUP reply (None reply: none)."""
    if not isinstance(reply, list):
        return []
    result: list[tuple[bytes, bytes | None]] = []
    for item in reply:
        if isinstance(item, list) and len(item) == 2:
            result.extend(_entries(item[1]))
    return result
