"""Several Cableway nodes and one real Redis (spec §11.4, §11.5, §11.7).

Readiness is awaited on the nodes' Redis state signals (woken by every link change, no
polling, bounded in time); what only Redis knows (a stream drained, a group recreated)
is polled, bounded. Message counts are checked with a sentinel published last, so
"exactly once" means: every message arrives, none twice, before the sentinel.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from cableway.transport.redis import RedisConnection, parse_redis_url
from cableway.transport.server import Server

from ..integration.helpers import (
    broadcast,
    cable,
    close_code,
    config,
    recv_json,
    running,
    subscribe,
    welcome,
)
from .conftest import RedisProcess

STREAM = "chat/1"
PUBSUB_ID = json.dumps({"channel": "$pubsub", "stream_name": STREAM})


async def until(condition: Callable[[], bool], *servers: Server, within: float = 10.0) -> None:
    """Wait until ``condition()`` holds, re-checked whenever a node's Redis state changes."""
    with trio.fail_after(within):
        while True:
            # take the events before checking: no change can slip in between
            changes = [server.redis_state.next_change() for server in servers]
            if condition():
                return
            async with trio.open_nursery() as nursery:

                async def woken(change: trio.Event) -> None:
                    await change.wait()
                    nursery.cancel_scope.cancel()

                for change in changes:
                    nursery.start_soon(woken, change)


@asynccontextmanager
async def nodes(count: int, **changes: Any) -> AsyncIterator[list[Server]]:
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(running(config(public_streams=True, **changes)))
            for _ in range(count)
        ]
        yield servers


def ready(server: Server, *streams: str) -> bool:
    return server.redis_ready(*streams)


@asynccontextmanager
async def subscribed(server: Server) -> AsyncIterator[WebSocketConnection]:
    async with cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, PUBSUB_ID))["type"] == "confirm_subscription"
        await until(lambda: ready(server, STREAM), server)
        yield ws


async def received_until(ws: WebSocketConnection, sentinel: str) -> list[Any]:
    """Messages of STREAM up to (without) the sentinel."""
    got: list[Any] = []
    while True:
        message = await recv_json(ws)
        if "message" not in message:
            continue
        if message["message"] == sentinel:
            return got
        got.append(message["message"])


async def redis_command(url: str, *args: str) -> object:
    connection = await RedisConnection.open(parse_redis_url(url))
    try:
        return await connection.execute(*args)
    finally:
        await connection.aclose()


async def stream_drained(url: str) -> None:
    """Every entry handed over (XDEL follows the pub/sub PUBLISH's confirmation)."""
    with trio.fail_after(10):
        while True:
            if await redis_command(url, "XLEN", "__anycable__") == 0:
                return
            await trio.sleep(0.01)


def pub(data: str, stream: str = STREAM) -> dict[str, str]:
    return {"stream": stream, "data": json.dumps(data)}


async def test_pubsub_http_on_any_node_reaches_every_node_once(
    redis_server: RedisProcess,
) -> None:
    async with nodes(3, pubsub="redis", redis_url=redis_server.url, broker="memory") as (a, b, c):
        await until(lambda: ready(a) and ready(b) and ready(c), a, b, c)
        async with subscribed(a) as on_a, subscribed(b) as on_b:
            sent = []
            for index, node in enumerate([b, a, c, b, a]):
                sent.append(f"m{index}")
                assert (await broadcast(node, pub(f"m{index}"))).status == 201
            assert (await broadcast(c, pub("end"))).status == 201
            assert await received_until(on_a, "end") == sent
            assert await received_until(on_b, "end") == sent
        # nobody listens any more: both nodes leave the stream's channel
        await until(lambda: STREAM not in (a.subscriber.wanted if a.subscriber else {}), a)
        await until(lambda: not ready(b, STREAM), b)


async def test_pubsub_stamps_on_the_accepting_node(redis_server: RedisProcess) -> None:
    async with nodes(2, pubsub="redis", redis_url=redis_server.url, broker="memory") as (a, b):
        await until(lambda: ready(a) and ready(b), a, b)
        async with cable(a, subprotocols=["actioncable-v1-ext-json"]) as ws:
            await welcome(ws)
            assert (await subscribe(ws, PUBSUB_ID))["type"] == "confirm_subscription"
            await until(lambda: ready(a, STREAM), a)
            assert (await broadcast(b, pub("x"))).status == 201
            while "message" not in (message := await recv_json(ws)):
                pass
            assert b.broker is not None
            assert message["offset"] == 1
            assert message["epoch"] == b.broker.epoch
            assert message["stream_id"] == STREAM


async def test_remote_disconnect_reaches_other_nodes(redis_server: RedisProcess) -> None:
    async with nodes(2, pubsub="redis", redis_url=redis_server.url, noauth=True) as (a, b):
        await until(lambda: ready(a) and ready(b), a, b)
        async with cable(a) as ws:
            message = await recv_json(ws)
            assert message["type"] == "welcome"
            (session,) = a.sessions
            command = {
                "command": "disconnect",
                "payload": {"identifier": session.core.identifiers, "reconnect": False},
            }
            assert (await broadcast(b, command)).status == 201
            assert (await recv_json(ws))["reason"] == "remote"
            assert await close_code(ws) == 1000


async def test_legacy_redis_adapter_fans_out_to_every_node(redis_server: RedisProcess) -> None:
    async with nodes(2, broadcast_adapters=("redis",), redis_url=redis_server.url) as (a, b):
        await until(lambda: ready(a) and ready(b), a, b)
        assert a.publisher is None  # no --pubsub: nothing per stream
        async with subscribed(a) as on_a, subscribed(b) as on_b:
            for data in ["one", "two", "end"]:
                await redis_command(
                    redis_server.url, "PUBLISH", "__anycable__", json.dumps(pub(data))
                )
            assert await received_until(on_a, "end") == ["one", "two"]
            assert await received_until(on_b, "end") == ["one", "two"]


async def test_redisx_each_entry_consumed_once_and_delivered_everywhere(
    redis_server: RedisProcess,
) -> None:
    async with nodes(
        2,
        broadcast_adapters=("http", "redisx"),
        pubsub="redis",
        redis_url=redis_server.url,
        broker="memory",
    ) as (a, b):
        await until(lambda: ready(a) and ready(b), a, b)
        async with subscribed(a) as on_a, subscribed(b) as on_b:
            sent = [f"x{index}" for index in range(20)]
            for data in sent:
                await redis_command(
                    redis_server.url, "XADD", "__anycable__", "*", "payload", json.dumps(pub(data))
                )
            # a sentinel through HTTP, after every entry is consumed (acknowledged + deleted)
            await stream_drained(redis_server.url)
            assert (await broadcast(a, pub("end"))).status == 201
            got_a = await received_until(on_a, "end")
            got_b = await received_until(on_b, "end")
            assert sorted(got_a) == sorted(sent)  # each once (two consumers: any order)
            assert sorted(got_b) == sorted(sent)
            assert got_a == got_b  # one pub/sub order for everybody
            assert a.metrics.value("publications_total") > 0  # both nodes consumed
            assert b.metrics.value("publications_total") > 0


async def test_redis_restart_http_gets_503_then_nodes_recover(
    redis_server: RedisProcess,
) -> None:
    async with nodes(2, pubsub="redis", redis_url=redis_server.url, broker="memory") as (a, b):
        await until(lambda: ready(a) and ready(b), a, b)
        async with subscribed(a) as on_a, subscribed(b) as on_b:
            assert (await broadcast(b, pub("before"))).status == 201
            redis_server.kill()
            # never silently dropped: refused until Redis is back
            assert (await broadcast(b, pub("lost"))).status == 503
            assert (await broadcast(a, pub("lost"))).status == 503
            await until(lambda: not ready(a) and not ready(b), a, b)
            redis_server.start()
            await until(lambda: ready(a, STREAM) and ready(b, STREAM), a, b, within=20)
            assert (await broadcast(b, pub("after"))).status == 201
            assert (await broadcast(a, pub("end"))).status == 201
            assert await received_until(on_a, "end") == ["before", "after"]
            assert await received_until(on_b, "end") == ["before", "after"]


async def test_redisx_recovers_after_a_redis_restart(redis_server: RedisProcess) -> None:
    async with nodes(
        2,
        broadcast_adapters=("http", "redisx"),
        redis_url=redis_server.url,
        broker="memory",
        pubsub="redis",
    ) as (a, b):
        await until(lambda: ready(a) and ready(b), a, b)
        async with subscribed(a) as on_a, subscribed(b) as on_b:
            redis_server.kill()
            await until(lambda: not ready(a) and not ready(b), a, b)
            redis_server.start()  # empty: the stream and its group are gone
            # consumers are ready only once they re-created the group Redis lost
            await until(lambda: ready(a, STREAM) and ready(b, STREAM), a, b, within=20)
            for data in ["r1", "r2", "r3"]:
                await redis_command(
                    redis_server.url, "XADD", "__anycable__", "*", "payload", json.dumps(pub(data))
                )
            await stream_drained(redis_server.url)
            assert (await broadcast(a, pub("end"))).status == 201
            assert sorted(await received_until(on_a, "end")) == ["r1", "r2", "r3"]
            assert sorted(await received_until(on_b, "end")) == ["r1", "r2", "r3"]
