"""``--broadcast_adapter=redisx``: a consumer in group ``bx`` of the Redis stream
``__anycable__`` (spec §11.5); each entry is consumed by one node, handed to the node's
intake (a callback), then acknowledged and deleted. At least once: unacknowledged
entries are read again after a reconnect, and entries left pending by a node that died
are claimed by another after ``claim_idle`` seconds."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio

from .redis import RedisConnection, RedisError, RedisUrl, Reply
from .scaleout import Backoff, StateSignal, consumer_name, run_connection

__all__ = ["StreamConsumer"]

log = logging.getLogger("cableway.redis")


# -- redisx consumer ------------------------------------------------------------------------


class StreamConsumer:
    """``--broadcast_adapter=redisx``: one consumer of group ``bx`` on the Redis stream."""

    def __init__(
        self,
        url: RedisUrl,
        *,
        stream: str,
        on_entry: Callable[[bytes, str], Awaitable[bool]],
        group: str = "bx",
        block_ms: int = 2000,
        claim_idle: float = 30.0,
        count: int = 100,
        state: StateSignal | None = None,
    ) -> None:
        #: carries out one entry's broadcast body; False: not handed over, retry later
        self.on_entry = on_entry
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
        await run_connection(self.url, self.backoff, self._serve, self._down)

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
        return await self.on_entry(payload, self.stream)


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
