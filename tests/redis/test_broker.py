"""``--broker=redis``: history, sessions and presence shared by nodes through one Redis.

The point of the Redis broker is that a client may come back to *another* node and miss
nothing: these tests drop a client from node A and bring it back on node B (WebSocket
session restore + history, SSE ``Last-Event-ID``), check that offsets are one sequence
whichever node accepted a publication, that presence is one set, and what a Redis
outage does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import trio
from trio_websocket import WebSocketConnection

from cableway.transport.server import Server

from ..integration.helpers import broadcast, cable, config, recv_json, sse, welcome
from .conftest import RedisProcess
from .test_scaleout import PUBSUB_ID, STREAM, nodes, pub, redis_command, until

EXT = ["actioncable-v1-ext-json"]


def shared(redis: RedisProcess, **changes: Any) -> dict[str, Any]:
    return {"pubsub": "redis", "redis_url": redis.url, "broker": "redis", **changes}


@asynccontextmanager
async def ext_client(server: Server, query: str = "") -> AsyncIterator[WebSocketConnection]:
    async with cable(server, query, subprotocols=EXT) as ws:
        yield ws


async def send(ws: WebSocketConnection, **command: Any) -> None:
    await ws.send_message(json.dumps(command))


async def reading(ws: WebSocketConnection, node: Server) -> str:
    """Welcome, subscribe to STREAM, and wait until the node listens to its channel."""
    sid = await welcome(ws)
    await send(ws, command="subscribe", identifier=PUBSUB_ID)
    assert (await recv_json(ws))["type"] == "confirm_subscription"
    await until(lambda: node.redis_ready(STREAM), node)
    return sid


async def next_of(ws: WebSocketConnection, kind: str | None) -> dict[str, Any]:
    """The next message of type ``kind`` (None: a broadcast), skipping the others."""
    while True:
        message = await recv_json(ws)
        if message.get("type") == kind and (kind is not None or "message" in message):
            return message


async def test_offsets_are_one_sequence_whichever_node_accepts(redis_server: RedisProcess) -> None:
    async with nodes(2, **shared(redis_server)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        async with ext_client(a) as ws:
            await reading(ws, a)
            for node, data in [(a, "one"), (b, "two"), (a, "three")]:
                assert (await broadcast(node, pub(data))).status == 201
            got = [await next_of(ws, None) for _ in range(3)]
        epoch = await redis_command(redis_server.url, "GET", "cableway:epoch")
        assert isinstance(epoch, bytes)
        assert [(m["message"], m["offset"]) for m in got] == [("one", 1), ("two", 2), ("three", 3)]
        assert {m["epoch"] for m in got} == {epoch.decode()}
        assert {m["stream_id"] for m in got} == {STREAM}


async def test_client_restores_its_session_on_another_node_and_misses_nothing(
    redis_server: RedisProcess,
) -> None:
    async with nodes(2, **shared(redis_server)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        async with ext_client(a) as ws:
            sid = await welcome(ws)
            await send(ws, command="subscribe", identifier=PUBSUB_ID)
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            await until(lambda: a.redis_ready(STREAM), a)
            assert (await broadcast(a, pub("seen"))).status == 201
            seen = await next_of(ws, None)
        # the client is gone; the app goes on publishing, through both nodes
        assert (await broadcast(a, pub("missed-1"))).status == 201
        assert (await broadcast(b, pub("missed-2"))).status == 201
        async with ext_client(b, f"?sid={sid}") as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "welcome"
            assert hello["restored"] is True
            assert hello["restored_ids"] == [PUBSUB_ID]
            await until(lambda: b.redis_ready(STREAM), b)
            position = {STREAM: {"epoch": seen["epoch"], "offset": seen["offset"]}}
            await send(ws, command="history", identifier=PUBSUB_ID, history={"streams": position})
            assert (await broadcast(a, pub("live"))).status == 201
            got = []
            while (message := await recv_json(ws)).get("type") != "confirm_history":
                if "message" in message:
                    got.append((message["message"], message["offset"]))
            got.append(((await next_of(ws, None))["message"], None))
        # every message once, in order: the live one was held until the history was in
        assert got == [("missed-1", 2), ("missed-2", 3), ("live", None)]


async def test_sse_last_event_id_on_another_node(redis_server: RedisProcess) -> None:
    async with nodes(2, **shared(redis_server)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        target = f"/events?stream={quote(STREAM)}"
        async with sse(a, target) as client:
            assert client.status == 200
            assert (await client.event())["event"] == "welcome"  # type: ignore[index]
            assert (await client.event())["event"] == "confirm_subscription"  # type: ignore[index]
            await until(lambda: a.redis_ready(STREAM), a)
            assert (await broadcast(a, pub("first"))).status == 201
            first = await client.event()
            assert first is not None
            assert first["data"] == "first"
        assert (await broadcast(b, pub("second"))).status == 201
        assert (await broadcast(a, pub("third"))).status == 201
        async with sse(b, target, headers=[("last-event-id", first["id"])]) as client:
            assert client.status == 200
            replayed = []
            while (event := await client.event()) is not None:
                if event.get("event") == "confirm_history":
                    break
                if "event" not in event:
                    replayed.append(event["data"])
            assert replayed == ["second", "third"]


async def test_history_with_an_old_epoch_is_rejected(redis_server: RedisProcess) -> None:
    async with nodes(1, **shared(redis_server)) as (a,):
        await until(lambda: a.redis_ready(), a)
        assert (await broadcast(a, pub("x"))).status == 201
        async with ext_client(a) as ws:
            await welcome(ws)
            position = {STREAM: {"epoch": "zzzz", "offset": 0}}
            await send(
                ws,
                command="subscribe",
                identifier=PUBSUB_ID,
                history={"streams": position},
            )
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            assert (await recv_json(ws))["type"] == "reject_history"


async def test_presence_is_shared_and_announced_once(redis_server: RedisProcess) -> None:
    async with nodes(2, **shared(redis_server, presence_ttl=1.0)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        async with ext_client(b) as watcher:
            await reading(watcher, b)
            async with ext_client(a) as member:
                await welcome(member)
                await send(member, command="subscribe", identifier=PUBSUB_ID)
                assert (await recv_json(member))["type"] == "confirm_subscription"
                await send(
                    member,
                    command="join",
                    identifier=PUBSUB_ID,
                    presence={"id": "42", "info": {"name": "Ada"}},
                )
                joined = await next_of(watcher, "presence")
                assert joined["message"] == {"type": "join", "info": {"name": "Ada"}, "id": "42"}
                # node B reads the presence node A recorded
                await send(watcher, command="presence", identifier=PUBSUB_ID)
                info = await next_of(watcher, "presence")
                assert info["message"] == {
                    "type": "info",
                    "total": 1,
                    "records": [{"info": {"name": "Ada"}, "id": "42"}],
                }
            # the member vanished: after presence_ttl, one node announces the leave, once
            left = await next_of(watcher, "presence")
            assert left["message"] == {"type": "leave", "id": "42"}
            await send(watcher, command="presence", identifier=PUBSUB_ID)
            info = await next_of(watcher, "presence")
            assert info["message"] == {"type": "info", "total": 0}


async def test_redis_outage_refuses_broadcasts_then_starts_a_new_epoch(
    redis_server: RedisProcess,
) -> None:
    async with nodes(1, **shared(redis_server)) as (a,):
        await until(lambda: a.redis_ready(), a)
        async with ext_client(a) as ws:
            await reading(ws, a)
            assert (await broadcast(a, pub("before"))).status == 201
            before = await next_of(ws, None)
            redis_server.kill()
            # never silently dropped: the publisher is told
            assert (await broadcast(a, pub("lost"))).status == 503
            await until(lambda: not a.redis_ready(), a)
            assert a.metrics.value("redis_up") == 0
            # history cannot be served meanwhile: refused at once, not left waiting
            position = {STREAM: {"epoch": before["epoch"], "offset": 0}}
            await send(ws, command="history", identifier=PUBSUB_ID, history={"streams": position})
            assert (await next_of(ws, "reject_history"))["identifier"] == PUBSUB_ID
            redis_server.start()  # no persistence: history and epoch are gone
            await until(lambda: a.redis_ready(STREAM), a, within=20)
            assert a.metrics.value("redis_up") == 1
            assert (await broadcast(a, pub("after"))).status == 201
            after = await next_of(ws, None)
            assert after["message"] == "after"
            assert after["offset"] == 1
            assert after["epoch"] != before["epoch"]
            # a client holding the old position is told it cannot catch up
            position = {STREAM: {"epoch": before["epoch"], "offset": before["offset"]}}
            await send(ws, command="history", identifier=PUBSUB_ID, history={"streams": position})
            assert (await next_of(ws, "reject_history"))["identifier"] == PUBSUB_ID


async def test_history_rules_match_the_memory_broker(redis_server: RedisProcess) -> None:
    """Evicted positions and positions in the future are refused, as in memory."""
    async with nodes(1, **shared(redis_server, history_limit=2)) as (a,):
        await until(lambda: a.redis_ready(), a)
        for data in ["m1", "m2", "m3"]:
            assert (await broadcast(a, pub(data))).status == 201
        epoch = await redis_command(redis_server.url, "GET", "cableway:epoch")
        assert isinstance(epoch, bytes)

        async def history(offset: int) -> list[Any] | None:
            async with ext_client(a) as ws:
                await welcome(ws)
                position = {STREAM: {"epoch": epoch.decode(), "offset": offset}}
                await send(
                    ws,
                    command="subscribe",
                    identifier=PUBSUB_ID,
                    history={"streams": position},
                )
                got: list[Any] = []
                while (message := await recv_json(ws)).get("type") not in (
                    "confirm_history",
                    "reject_history",
                ):
                    if "message" in message:
                        got.append(message["message"])
                return got if message["type"] == "confirm_history" else None

        assert await history(0) is None  # m1 was evicted (limit 2)
        assert await history(1) == ["m2", "m3"]  # just before the oldest kept: served
        assert await history(3) == []
        assert await history(4) is None  # in the future
        with trio.fail_after(5):
            length = await redis_command(redis_server.url, "XLEN", f"cableway:h:{STREAM}")
        assert length == 2


async def test_a_node_shut_down_gracefully_leaves_presence_to_expire(
    redis_server: RedisProcess,
) -> None:
    """What sessions write as they close reaches Redis before the node exits."""
    async with nodes(2, **shared(redis_server, presence_ttl=1.0)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        async with ext_client(b) as watcher:
            await reading(watcher, b)
            async with ext_client(a) as member:
                sid = await welcome(member)
                await send(
                    member,
                    command="subscribe",
                    identifier=PUBSUB_ID,
                    presence={"id": "7", "info": "Bob"},
                )
                assert (await next_of(watcher, "presence"))["message"]["type"] == "join"
                a.shutdown()
                assert (await next_of(member, "disconnect"))["reason"] == "server_restart"
            left = await next_of(watcher, "presence")
            assert left["message"] == {"type": "leave", "id": "7"}
        # the closed session's snapshot was kept for restore (on any node)
        assert await b.restore_snapshot(sid) is not None


async def test_redisx_entries_are_stamped_in_redis_and_reach_every_node(
    redis_server: RedisProcess,
) -> None:
    settings = shared(redis_server, broadcast_adapters=("http", "redisx"))
    async with nodes(2, **settings) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        async with ext_client(a) as on_a, ext_client(b) as on_b:
            for ws, node in [(on_a, a), (on_b, b)]:
                await welcome(ws)
                await send(ws, command="subscribe", identifier=PUBSUB_ID)
                assert (await recv_json(ws))["type"] == "confirm_subscription"
                await until(lambda node=node: node.redis_ready(STREAM), node)  # type: ignore[misc]
            for data in ["x1", "x2", "x3"]:
                payload = json.dumps(pub(data))
                await redis_command(
                    redis_server.url, "XADD", "__anycable__", "*", "payload", payload
                )
            for ws in (on_a, on_b):
                got = [await next_of(ws, None) for _ in range(3)]
                # one offset per entry, whichever node consumed it, received in order
                assert [m["offset"] for m in got] == [1, 2, 3]
                assert sorted(m["message"] for m in got) == ["x1", "x2", "x3"]


async def test_presence_of_a_crashed_node_ends_when_its_lease_runs_out(
    redis_server: RedisProcess,
) -> None:
    """A node that dies without closing its sessions cannot expire their presence: the
    lease it no longer renews does, and another node announces the leave."""
    async with nodes(1, **shared(redis_server)) as (b,):
        await until(lambda: b.redis_ready(), b)
        async with ext_client(b) as watcher:
            await reading(watcher, b)
            a = Server(config(public_streams=True, **shared(redis_server)))
            assert a.redis_broker is not None
            a.redis_broker.presence_lease = 3.0  # renewed every second
            crash = trio.CancelScope()

            async def run_a(task_status: trio.TaskStatus[Server]) -> None:
                with crash:
                    await a.run(task_status=task_status)

            async with trio.open_nursery() as nursery:
                await nursery.start(run_a)
                await until(lambda: a.redis_ready(), a)
                # the client cannot close cleanly once its node is gone: bounded below
                client = trio.CancelScope()
                with client:
                    async with ext_client(a) as member:
                        await welcome(member)
                        await send(
                            member,
                            command="subscribe",
                            identifier=PUBSUB_ID,
                            presence={"id": "9", "info": None},
                        )
                        assert (await next_of(watcher, "presence"))["message"]["type"] == "join"
                        # longer than a lease: renewals keep the member present while its
                        # node lives (a renewal may be 2 s late before this fails)
                        with trio.move_on_after(4.0):
                            assert (await next_of(watcher, "presence")) is None  # pragma: no cover
                        crash.cancel()  # no graceful shutdown: nothing more reaches Redis
                        client.deadline = trio.current_time() + 1
            with trio.fail_after(10):  # the lease (3 s) and a sweep (1 s), with room
                while (left := json.loads(await watcher.get_message()))["type"] != "presence":
                    pass
            assert left["message"] == {"type": "leave", "id": "9"}
