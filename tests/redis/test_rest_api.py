"""The REST API with the Redis broker: a publication through any node's API reaches every
node's subscribers, and any node's presence query lists who joined on any node."""

from __future__ import annotations

import json
from urllib.parse import quote

import trio

from cableway.transport.server import Server

from ..integration.helpers import HttpResponse, http, recv_json, welcome
from .conftest import RedisProcess
from .test_broker import ext_client, next_of, reading, send, shared
from .test_scaleout import PUBSUB_ID, STREAM, nodes, until

API_KEY = "api-key-of-at-least-thirty-two-bytes!!"
AUTH = [("authorization", f"Bearer {API_KEY}")]


async def users(node: Server) -> HttpResponse:
    path = f"/api/presence/{quote(STREAM, safe='')}/users"
    return await http(node.main_port, "GET", path, b"", AUTH)


async def test_publish_through_the_api_of_one_node_reaches_the_other(
    redis_server: RedisProcess,
) -> None:
    async with nodes(2, **shared(redis_server, api_secret=API_KEY)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        async with ext_client(a) as ws:
            await reading(ws, a)
            body = json.dumps({"stream": STREAM, "data": json.dumps("via-api")}).encode()
            answer = await http(b.main_port, "POST", "/api/publish", body, AUTH)
            assert answer.status == 201
            message = await next_of(ws, None)
            assert (message["message"], message["offset"]) == ("via-api", 1)
            refused = await http(b.main_port, "POST", "/api/publish", body, [])
            assert refused.status == 401


async def test_presence_query_on_either_node_lists_who_joined_on_the_other(
    redis_server: RedisProcess,
) -> None:
    async with nodes(2, **shared(redis_server, api_secret=API_KEY)) as (a, b):
        await until(lambda: a.redis_ready() and b.redis_ready(), a, b)
        empty = await users(b)
        assert (empty.status, json.loads(empty.body)) == (200, {"type": "info", "total": 0})
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
                # the join reached node B (and the member itself: read, so that it closes)
                await next_of(watcher, "presence")
                await next_of(member, "presence")
                for node in (a, b):
                    answer = await users(node)
                    assert answer.status == 200
                    assert json.loads(answer.body) == {
                        "type": "info",
                        "total": 1,
                        "records": [{"info": {"name": "Ada"}, "id": "42"}],
                    }
                await send(member, command="leave", identifier=PUBSUB_ID)
                assert (await next_of(watcher, "presence"))["message"]["type"] == "leave"
                await next_of(member, "presence")
                assert json.loads((await users(a)).body) == {"type": "info", "total": 0}


async def test_presence_query_while_redis_is_down_is_refused_not_left_waiting(
    redis_server: RedisProcess,
) -> None:
    async with nodes(1, **shared(redis_server, api_secret=API_KEY)) as (a,):
        await until(lambda: a.redis_ready(), a)
        redis_server.kill()
        # refused (at once when the node knows Redis is away, else within its timeout)
        with trio.fail_after(a.confirm_timeout + 5):
            assert (await users(a)).status == 503
        assert (await http(a.main_port, "GET", "/health")).status == 200
