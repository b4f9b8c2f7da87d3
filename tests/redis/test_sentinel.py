"""Redis Sentinel (``--redis_sentinels``) against a real group on 127.0.0.1: one master,
one replica, one sentinel (quorum 1, down-after 500 ms), and failovers in the middle of a
broadcast flood.

The application side (what Rails would do) publishes through the same discovery and,
for redisx, confirms each XADD with ``WAIT 1`` so that an entry Redis acknowledged
survives the failover; it retries what was not confirmed (so duplicates are allowed,
losses are not).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from cableway.config import Config
from cableway.transport.redis import RedisConnection, RedisConnectionError, RedisError
from cableway.transport.sentinel import connect, redis_target, serve_master

from ..integration.helpers import cable, config, running, subscribe, welcome
from .managed import MASTER_NAME, SentinelGroup, TlsFiles, sentinel_group
from .test_scaleout import PUBSUB_ID, pub, ready, until

log = logging.getLogger(__name__)

FLOOD = 300  # messages per flood
FAILOVER_AT = 100  # the failover is asked for after this many


def sentinel_config(group: SentinelGroup, **changes: Any) -> Config:
    settings: dict[str, Any] = {
        "redis_url": f"redis://{MASTER_NAME}",
        "redis_sentinels": group.sentinels,
        "public_streams": True,
    }
    return config(**{**settings, **changes})


async def fail_over(group: SentinelGroup) -> None:
    """``SENTINEL FAILOVER`` (retried while the sentinel has no replica it trusts yet)."""
    start = len(group.sentinel.lines)
    sentinel = await RedisConnection.open(
        redis_target(config(redis_url=f"redis://127.0.0.1:{group.sentinel_port}"))
    )
    try:
        with trio.fail_after(20):
            while True:
                try:
                    await sentinel.execute("SENTINEL", "FAILOVER", MASTER_NAME)
                    break
                except RedisError as exc:  # NOGOODSLAVE / INPROG: bounded retry
                    log.debug("failover not started yet: %s", exc)
                    await trio.sleep(0.2)
    finally:
        await sentinel.aclose()
    await trio.to_thread.run_sync(
        lambda: group.sentinel.wait_for(rf"\+switch-master {MASTER_NAME} ", start=start)
    )


async def test_connect_finds_the_master_and_follows_a_failover(tmp_path: Path) -> None:
    with sentinel_group(tmp_path) as group:
        target = redis_target(sentinel_config(group))
        connection = await connect(target)
        assert connection.address == ("127.0.0.1", group.master_port)
        assert (await connection.execute("ROLE"))[0] == b"master"  # type: ignore[index]

        # a connection in use ends as soon as the sentinels promote the replica
        async def idle(_: RedisConnection) -> None:
            await trio.sleep_forever()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                ended: list[Exception] = []

                async def serve() -> None:
                    try:
                        await serve_master(target, connection, idle)
                    except RedisConnectionError as exc:
                        ended.append(exc)

                nursery.start_soon(serve)
                await fail_over(group)
            assert "promoted another master" in str(ended[0])
        await connection.aclose()

        # the next connect finds the new master (the old one is a replica now)
        with trio.fail_after(30):
            while True:
                try:
                    again = await connect(target)
                    break
                except RedisConnectionError:  # the old master until it is reconfigured
                    await trio.sleep(0.1)
        try:
            assert again.address == ("127.0.0.1", group.replica_port)
        finally:
            await again.aclose()


async def test_sentinel_credentials(tmp_path: Path) -> None:
    with sentinel_group(tmp_path, sentinel_password="s3ntinel") as group:
        without = redis_target(sentinel_config(group))
        with pytest.raises(RedisConnectionError, match="no sentinel named the master"):
            await connect(without)
        with_password = redis_target(
            sentinel_config(group, redis_sentinels=f":s3ntinel@{group.sentinels}")
        )
        connection = await connect(with_password)
        try:
            assert connection.address == ("127.0.0.1", group.master_port)
        finally:
            await connection.aclose()


async def test_tls_to_a_master_found_by_the_sentinels(tmp_path: Path) -> None:
    # servers speaking only TLS; the sentinel itself in clear text, as AnyCable-Go expects
    with sentinel_group(tmp_path, tls=TlsFiles(tmp_path)) as group:
        assert group.tls is not None
        settings = sentinel_config(
            group,
            redis_url=f"rediss://{MASTER_NAME}",
            redis_tls_ca_cert_path=str(group.tls.ca_path),
        )
        connection = await connect(redis_target(settings))
        try:
            assert connection.address == ("127.0.0.1", group.master_port)
            assert await connection.execute("PING") == b"PONG"
        finally:
            await connection.aclose()
        # a node broadcasts through it
        node = replace(settings, broadcast_adapters=("redis",))
        async with running(node) as server:
            await until(lambda: ready(server), server)
            async with watching(server) as ws:
                app = App(group)
                app.target = redis_target(settings)
                got: list[str] = []
                done = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(collect, ws, got, done, "over tls")
                    await app.run(publish("over tls"), confirmed=False)
                    with trio.fail_after(10):
                        await done.wait()
                await app.aclose()
                assert got == ["over tls"]


# -- floods across a failover ------------------------------------------------------------


@asynccontextmanager
async def watching(server: Any) -> AsyncIterator[WebSocketConnection]:
    async with cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, PUBSUB_ID))["type"] == "confirm_subscription"
        yield ws


async def collect(ws: WebSocketConnection, got: list[str], done: trio.Event, last: str) -> None:
    while True:
        # no per-message deadline: a failover may be a quiet while (the test's own bounds it)
        message = json.loads(await ws.get_message())
        if message.get("type") != "ping" and "message" in message:
            got.append(message["message"])
            if message["message"] == last:
                done.set()
                return


class App:
    """The application's side: publishes through the sentinels, reconnecting on failure.

    With ``follow`` (a nursery) it also drops its connection when the sentinels announce a
    new master (``+switch-master``, as AnyCable-Go's own client does); without, it moves
    only when its connection breaks (as a client that just re-resolves on errors).
    """

    def __init__(self, group: SentinelGroup, follow: trio.Nursery | None = None) -> None:
        self.target = redis_target(sentinel_config(group))
        self.connection: RedisConnection | None = None
        self.follow = follow
        self.retries = 0
        self.masters: list[tuple[str, int] | None] = []  # where each connection went

    @property
    def moved(self) -> bool:
        return len(self.masters) > 1 and self.masters[-1] != self.masters[0]

    async def _watch(self, connection: RedisConnection) -> None:
        async def idle(_: RedisConnection) -> None:
            await trio.sleep_forever()

        try:
            await serve_master(self.target, connection, idle)
        except RedisConnectionError:
            await connection.aclose()  # the next publication reconnects

    async def run(self, *commands: tuple[str | int, ...], confirmed: bool) -> None:
        for _attempt in range(200):
            try:
                if self.connection is None or self.connection.closed:
                    if self.connection is not None:
                        await self.connection.aclose()
                    self.connection = await connect(self.target)
                    self.masters.append(self.connection.address)
                    if self.follow is not None:
                        self.follow.start_soon(self._watch, self.connection)
                replies = await self.connection.pipeline(
                    [*commands, ("WAIT", 1, 500)] if confirmed else list(commands)
                )
                if not any(isinstance(r, RedisError) for r in replies) and (
                    not confirmed or replies[-1] == 1
                ):
                    return
            except (RedisConnectionError, RedisError):
                pass
            self.retries += 1
            if self.connection is not None:
                await self.connection.aclose()
            await trio.sleep(0.05)  # a retry pause (the app's backoff), not a synchronisation
        raise AssertionError("the application could not publish for 200 attempts")

    async def aclose(self) -> None:
        if self.connection is not None:
            await self.connection.aclose()


async def flood(
    app: App,
    group: SentinelGroup,
    nursery: trio.Nursery,
    command: Callable[[str], tuple[str | int, ...]],
    *,
    confirmed: bool,
    prefix: str,
) -> tuple[list[str], float]:
    """Publish at a steady pace; ask for a failover after FAILOVER_AT messages and go on
    until the application itself has moved to the new master, then 100 more. Returns what
    was sent and how long the failover took."""
    sent: list[str] = []
    switched = trio.Event()
    took = 0.0

    async def failover() -> None:
        nonlocal took
        started = trio.current_time()
        await fail_over(group)
        took = trio.current_time() - started
        switched.set()

    after: int | None = None
    began = trio.current_time()
    for index in range(20_000):
        if index == FAILOVER_AT:
            nursery.start_soon(failover)
        if after is None and switched.is_set() and app.moved:
            after = index
        if after is not None and index >= after + 100:
            print(f"\nflood: {len(sent)} messages in {trio.current_time() - began:.1f}s", end="")
            return sent, took
        data = f"{prefix}{index}"
        await app.run(command(data), confirmed=confirmed)
        sent.append(data)
        await trio.sleep(0.005)  # the flood's pace (about 200 messages a second)
    raise AssertionError("the failover did not complete within the flood")


def xadd(data: str) -> tuple[str | int, ...]:
    return ("XADD", "__anycable__", "*", "payload", json.dumps(pub(data)))


def publish(data: str) -> tuple[str | int, ...]:
    return ("PUBLISH", "__anycable__", json.dumps(pub(data)))


async def test_redisx_flood_across_a_failover_loses_nothing(tmp_path: Path) -> None:
    with sentinel_group(tmp_path) as group:
        node = sentinel_config(group, broadcast_adapters=("redisx",), pubsub="none")
        async with running(node) as server:
            await until(lambda: ready(server), server)
            app = App(group)
            got: list[str] = []
            done = trio.Event()
            async with watching(server) as ws, trio.open_nursery() as nursery:
                nursery.start_soon(collect, ws, got, done, "end")
                with trio.fail_after(90):
                    sent, took = await flood(app, group, nursery, xadd, confirmed=True, prefix="x")
                    await app.run(xadd("end"), confirmed=True)
                    await done.wait()
                nursery.cancel_scope.cancel()
            await app.aclose()
            missing = [data for data in sent if data not in got]
            assert missing == []
            duplicates = len(got) - len(set(got))
            print(
                f"\nredisx across a failover ({took:.2f}s): {len(sent)} sent, all delivered, "
                f"{duplicates} twice, {app.retries} publisher retries"
            )


@pytest.mark.parametrize("follow", [True, False], ids=["publisher-follows", "publisher-stays"])
async def test_pubsub_flood_across_a_failover_measures_the_window(
    tmp_path: Path, follow: bool
) -> None:
    with sentinel_group(tmp_path) as group:
        node = sentinel_config(group, broadcast_adapters=("redis",))
        async with running(node) as server:
            await until(lambda: ready(server), server)
            got: list[str] = []
            done = trio.Event()
            async with watching(server) as ws, trio.open_nursery() as nursery:
                app = App(group, follow=nursery if follow else None)
                nursery.start_soon(collect, ws, got, done, "end")
                with trio.fail_after(90):
                    sent, took = await flood(
                        app, group, nursery, publish, confirmed=False, prefix="p"
                    )
                    # the node is subscribed on the new master again: the end marker arrives
                    await until(lambda: ready(server), server)
                    await app.run(publish("end"), confirmed=False)
                    await done.wait()
                nursery.cancel_scope.cancel()
            await app.aclose()
            lost = [index for index, data in enumerate(sent) if data not in got]
            assert len(got) == len(set(got))  # never twice
            # what arrived is in order, and everything before the failover arrived
            assert [data for data in sent if data in got] == got[:-1]
            assert all(index >= FAILOVER_AT for index in lost)
            print(
                f"\npub/sub across a failover ({took:.2f}s), publisher "
                f"{'follows +switch-master' if follow else 'moves when cut off'}: {len(sent)} sent, "
                f"{len(lost)} lost" + (f" (messages {lost[0]}..{lost[-1]})" if lost else "")
            )
