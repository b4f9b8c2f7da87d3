"""``--workers``: the workers act as one node through the hub (in process: see workers.py).

A broadcast accepted by any worker reaches subscribers on every worker, in one order,
once; reliable streams keep one offset sequence per stream; a client restores its
session on another worker and gets exactly what it missed; presence is one view; remote
commands, metrics and health span every worker.
"""

from __future__ import annotations

import json

import trio

from cableway.config import Config

from .helpers import broadcast, cable, config, http, recv_json, sse, subscribe, welcome
from .workers import hub_and_workers

EXT = ["actioncable-v1-ext-json"]
CHAT = json.dumps({"channel": "$pubsub", "stream_name": "chat"})


def reliable(**kw: object) -> Config:
    return config(broker="memory", public_streams=True, **kw)


async def test_a_broadcast_to_any_worker_reaches_every_worker_in_one_order_once() -> None:
    async with hub_and_workers(reliable()) as (hub, (a, b)), cable(a) as on_a, cable(b) as on_b:
        for ws in (on_a, on_b):
            await welcome(ws)
            assert (await subscribe(ws, CHAT))["type"] == "confirm_subscription"
        # alternate the worker that accepts each broadcast
        for i in range(10):
            response = await broadcast(
                (a, b)[i % 2], {"stream": "chat", "data": json.dumps(f"m{i}")}
            )
            assert response.status == 201
        for ws in (on_a, on_b):
            got = [await recv_json(ws) for _ in range(10)]
            assert [m["message"] for m in got] == [f"m{i}" for i in range(10)]
            # one offset sequence for the stream, whichever worker accepted it
            assert [m["offset"] for m in got] == list(range(1, 11))
            assert {m["epoch"] for m in got} == {hub.broker.epoch}  # type: ignore[union-attr]
        # nothing more (no second copy): the next message is the next broadcast
        await broadcast(a, {"stream": "chat", "data": json.dumps("last")})
        for ws in (on_a, on_b):
            assert (await recv_json(ws))["message"] == "last"


async def test_a_session_restores_on_another_worker_with_what_it_missed() -> None:
    async with hub_and_workers(reliable()) as (_hub, (a, b)):
        async with cable(a, subprotocols=EXT) as first:
            old_sid = await welcome(first)
            await subscribe(first, CHAT)
            await broadcast(b, {"stream": "chat", "data": json.dumps("before")})
            seen = await recv_json(first)
        await broadcast(a, [{"stream": "chat", "data": json.dumps(f"away{i}")} for i in (1, 2)])
        async with cable(b, query=f"?sid={old_sid}", subprotocols=EXT) as again:
            hello = await recv_json(again)
            assert hello["type"] == "welcome"
            assert hello["restored"] is True
            assert hello["restored_ids"] == [CHAT]
            position = {"streams": {"chat": {"epoch": seen["epoch"], "offset": seen["offset"]}}}
            await again.send_message(
                json.dumps({"command": "history", "identifier": CHAT, "history": position})
            )
            assert [(await recv_json(again))["message"] for _ in range(2)] == ["away1", "away2"]
            assert (await recv_json(again))["type"] == "confirm_history"
            await broadcast(a, {"stream": "chat", "data": json.dumps("live")})
            assert (await recv_json(again))["message"] == "live"


async def test_presence_is_one_view_across_workers() -> None:
    async with (
        hub_and_workers(reliable(streams_presence=True)) as (_hub, (a, b)),
        cable(a, subprotocols=EXT) as alice,
        cable(b, subprotocols=EXT) as bob,
    ):
        for ws in (alice, bob):
            await welcome(ws)
            await subscribe(ws, CHAT)
        join = {"command": "join", "identifier": CHAT, "presence": {"id": "alice"}}
        await alice.send_message(json.dumps({**join, "presence": {"id": "alice", "info": "A"}}))
        # the join event reaches the subscriber on the other worker
        for ws in (alice, bob):
            event = await recv_json(ws)
            assert event["type"] == "presence"
            assert event["message"]["type"] == "join"
            assert event["message"]["id"] == "alice"
        await bob.send_message(json.dumps({"command": "presence", "identifier": CHAT}))
        info = await recv_json(bob)
        assert info["type"] == "presence"
        assert info["message"]["type"] == "info"
        assert info["message"]["total"] == 1
        assert [r["id"] for r in info["message"]["records"]] == ["alice"]


async def test_a_remote_disconnect_accepted_by_one_worker_reaches_sessions_on_another() -> None:
    cfg = config(broker="none", public_streams=True)
    async with hub_and_workers(cfg) as (_hub, (a, b)):
        from cableway.auth.jwt import encode_token

        from .helpers import JWT_KEY

        token = encode_token({"user_id": 5}, JWT_KEY)
        async with (
            cable(a, query=f"?jid={token}") as on_a,
            cable(b, query=f"?jid={token}") as on_b,
            cable(a) as other,
        ):
            for ws in (on_a, on_b, other):
                await welcome(ws)
            command = {
                "command": "disconnect",
                "payload": {"identifier": '{"user_id":5}', "reconnect": True},
            }
            assert (await broadcast(b, command)).status == 201
            expected = {"type": "disconnect", "reason": "remote", "reconnect": True}
            assert await recv_json(on_a) == expected
            assert await recv_json(on_b) == expected
            await other.send_message('{"command":"ping"}')
            assert await recv_json(other) == {"type": "pong"}


async def test_metrics_are_summed_and_health_counts_the_workers() -> None:
    cfg = config(broker="none", public_streams=True, metrics_http="/metrics")
    async with hub_and_workers(cfg, count=3) as (_hub, servers):
        a, b, c = servers
        async with cable(a) as one, cable(b) as two, cable(b) as three:
            for ws in (one, two, three):
                await welcome(ws)
            response = await http(c.main_port, "GET", "/metrics")
            assert response.status == 200
            lines = response.body.decode().splitlines()
            assert "anycable_go_clients_num 3" in lines
            health = await http(a.main_port, "GET", cfg.health_path)
            assert health.status == 200
            assert health.headers["cableway-workers"] == "3/3"


async def test_a_worker_that_loses_the_hub_shuts_down() -> None:
    cfg = config(broker="none", public_streams=True)
    async with hub_and_workers(cfg, count=1) as (hub, (a,)):
        async with cable(a) as ws:
            await welcome(ws)
            # the hub goes away (the supervisor died): the worker drains its clients
            for link in list(hub.links.values()):
                await link.stream.aclose()
            message = await recv_json(ws)
            assert message == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
        with trio.fail_after(5):
            await a._shutdown.wait()


async def test_an_sse_client_resumes_on_another_worker_with_last_event_id() -> None:
    async with hub_and_workers(reliable()) as (hub, (a, b)):
        epoch = hub.broker.epoch  # type: ignore[union-attr]
        async with sse(a, "/events?stream=s") as client:
            kinds = [await client.event() for _ in range(2)]
            assert [e.get("event") for e in kinds] == ["welcome", "confirm_subscription"]  # type: ignore[union-attr]
            await broadcast(b, {"stream": "s", "data": json.dumps("m1")})
            seen = await client.event()
            assert seen == {"data": "m1", "id": f"1/{epoch}/s"}
        # away: published through both workers
        await broadcast(a, {"stream": "s", "data": json.dumps("m2")})
        await broadcast(b, {"stream": "s", "data": json.dumps("m3")})
        assert seen is not None
        async with sse(b, "/events?stream=s", headers=[("Last-Event-ID", seen["id"])]) as again:
            kinds = [await again.event() for _ in range(5)]
            assert [e.get("event") for e in kinds[:2]] == ["welcome", "confirm_subscription"]  # type: ignore[union-attr]
            assert kinds[2] == {"data": "m2", "id": f"2/{epoch}/s"}
            assert kinds[3] == {"data": "m3", "id": f"3/{epoch}/s"}
            assert kinds[4]["event"] == "confirm_history"  # type: ignore[index]
            await broadcast(a, {"stream": "s", "data": json.dumps("m4")})
            assert (await again.event()) == {"data": "m4", "id": f"4/{epoch}/s"}
