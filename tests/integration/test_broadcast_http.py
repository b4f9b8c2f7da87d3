from __future__ import annotations

import json

from cableway.auth.keys import derive_broadcast_key

from .helpers import (
    BROADCAST_KEY,
    broadcast,
    cable,
    config,
    http,
    recv_json,
    running,
    subscribe,
    welcome,
)


async def test_broadcast_auth_and_status_codes() -> None:
    async with running() as server:
        port, path = server.broadcast_port, "/_broadcast"
        ok = {"stream": "s", "data": "x"}
        assert (await broadcast(server, ok)).status == 201
        assert (await broadcast(server, ok, key=None)).status == 401
        assert (await broadcast(server, ok, key="wrong")).status == 401
        lower = [("authorization", f"bearer {BROADCAST_KEY}")]
        assert (await http(port, "POST", path, json.dumps(ok).encode(), lower)).status == 401
        auth = [("authorization", f"Bearer {BROADCAST_KEY}")]
        assert (await http(port, "GET", path, headers=auth)).status == 422
        assert (await http(port, "PUT", path, b"{}", auth)).status == 422
        for body in [b"not json", b'{"stream":"s"}', b'{"stream":"s","data":5}', b"[" * 100_000]:
            bad = await http(port, "POST", path, body, auth)
            assert bad.status == 400, body[:20]
        too_big = b'{"stream":"s","data":"' + b"x" * (1 << 20) + b'"}'
        assert (await http(port, "POST", path, too_big, auth)).status == 413


async def test_broadcast_served_on_8090_style_separate_port_without_key() -> None:
    async with running(config(broadcast_key=None, http_broadcast_port=0, port=0)) as server:
        assert server.broadcast_port == server.main_port  # both 0: shared in tests

    # a distinct broadcast listener when configured apart from the main port
    cfg = config(broadcast_key=None, port=0, http_broadcast_port=0)
    async with running(cfg) as server:
        assert (await broadcast(server, {"stream": "s", "data": "x"}, key=None)).status == 201


async def test_secret_derived_key_is_accepted() -> None:
    key = derive_broadcast_key("qwerty")
    async with running(config(broadcast_key=key)) as server, cable(server) as ws:
        await welcome(ws)
        identifier = json.dumps({"channel": "$pubsub", "stream_name": "news"})
        assert (await subscribe(ws, identifier))[
            "type"
        ] == "reject_subscription"  # public streams off
    async with (
        running(config(broadcast_key=key, public_streams=True)) as server,
        cable(server) as ws,
    ):
        await welcome(ws)
        assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
        assert (
            await broadcast(server, {"stream": "news", "data": '"hello"'}, key=key)
        ).status == 201
        assert await recv_json(ws) == {"identifier": identifier, "message": "hello"}


async def test_remote_disconnect_closes_every_matching_session() -> None:
    from cableway.auth.jwt import encode_token

    from .helpers import JWT_KEY

    token = encode_token({"user_id": 5}, JWT_KEY)
    async with (
        running() as server,
        cable(server, query=f"?jid={token}") as a,
        cable(server, query=f"?jid={token}") as b,
        cable(server) as other,
    ):
        for ws in (a, b, other):
            await welcome(ws)
        command = {
            "command": "disconnect",
            "payload": {"identifier": '{"user_id":5}', "reconnect": True},
        }
        assert (await broadcast(server, command)).status == 201
        expected = {"type": "disconnect", "reason": "remote", "reconnect": True}
        assert await recv_json(a) == expected
        assert await recv_json(b) == expected
        await other.send_message('{"command":"ping"}')
        assert await recv_json(other) == {"type": "pong"}
