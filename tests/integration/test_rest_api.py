"""The REST API of AnyCable-Go 1.6 over real sockets (docs/api.md): ``POST /api/publish``
and ``GET /api/presence/<stream>/users``, with the API's own key."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socket
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from cableway.config import Config, load_config
from cableway.transport.server import Server

from .helpers import (
    BROADCAST_KEY,
    HttpResponse,
    cable,
    config,
    http,
    recv_json,
    running,
    subscribe,
    welcome,
)

EXT = ["actioncable-v1-ext-json"]
API_KEY = "api-key-of-at-least-thirty-two-bytes!!"
STREAM = "chat/1"
CHAT = json.dumps({"channel": "$pubsub", "stream_name": STREAM})


def api_config(**changes: Any) -> Config:
    return config(**{"broker": "memory", "public_streams": True, "api_secret": API_KEY, **changes})


async def api(
    server: Server,
    method: str,
    path: str,
    body: object = None,
    *,
    key: str | None = API_KEY,
    port: int | None = None,
) -> HttpResponse:
    headers = [("authorization", f"Bearer {key}")] if key is not None else []
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http(port or server.main_port, method, path, data, headers)


async def users(server: Server, stream: str = "chat%2F1", **kw: Any) -> HttpResponse:
    return await api(server, "GET", f"/api/presence/{stream}/users", **kw)


async def announced(message: dict[str, object], *clients: WebSocketConnection) -> None:
    """Read until each client got the presence ``message`` (the node announces joins and
    leaves to every subscriber of the stream)."""
    for ws in clients:
        while (await recv_json(ws)).get("message") != message:
            pass


async def join(ws: WebSocketConnection, pid: str, info: object) -> None:
    await ws.send_message(
        json.dumps({"command": "join", "identifier": CHAT, "presence": {"id": pid, "info": info}})
    )


async def test_publish_reaches_subscribers_with_its_position() -> None:
    async with running(api_config()) as server, cable(server, subprotocols=EXT) as ws:
        await welcome(ws)
        assert (await subscribe(ws, CHAT))["type"] == "confirm_subscription"
        batch = [{"stream": STREAM, "data": '"one"'}, {"stream": STREAM, "data": '"two"'}]
        answer = await api(server, "POST", "/api/publish", batch)
        assert (answer.status, answer.body) == (201, b"")
        got = [await recv_json(ws), await recv_json(ws)]
        assert [(m["message"], m["offset"], m["stream_id"]) for m in got] == [
            ("one", 1, STREAM),
            ("two", 2, STREAM),
        ]


async def test_the_api_key_and_the_broadcast_key_are_not_interchangeable() -> None:
    async with running(api_config()) as server:
        good = {"stream": STREAM, "data": "1"}
        assert (await api(server, "POST", "/api/publish", good, key="wrong")).status == 401
        assert (await api(server, "POST", "/api/publish", good, key=None)).status == 401
        assert (await api(server, "POST", "/api/publish", good, key=BROADCAST_KEY)).status == 401
        assert (await users(server, key=BROADCAST_KEY)).status == 401
        assert (await users(server, key=None)).status == 401
        # and the broadcast endpoint does not take the API key
        answer = await http(
            server.broadcast_port,
            "POST",
            "/_broadcast",
            json.dumps(good).encode(),
            [("authorization", f"Bearer {API_KEY}")],
        )
        assert answer.status == 401


async def test_the_key_derived_from_secret_is_accepted() -> None:
    loaded = load_config(["--secret=qwerty", "--broker=memory", "--public_streams"], {})
    cfg = dataclasses.replace(loaded, host="127.0.0.1", port=0, http_broadcast_port=0)
    derived = "bdd0244b3664404d03b7d0c2f1b946dc4fc6c13fdcbfa2be62a4a28deb04d096"
    async with running(cfg) as server:
        assert (await users(server, key=derived)).status == 200
        assert (await users(server, key=loaded.broadcast_key)).status == 401
        explicit = dataclasses.replace(cfg, api_secret="explicit")
        async with running(explicit) as other:
            assert (await users(other, key=derived)).status == 401
            assert (await users(other, key="explicit")).status == 200


async def test_presence_lists_who_joined_and_forgets_who_left() -> None:
    async with (
        running(api_config()) as server,
        cable(server, subprotocols=EXT) as a,
        cable(server, subprotocols=EXT) as b,
    ):
        for ws in (a, b):
            await welcome(ws)
            await subscribe(ws, CHAT)
        empty = await users(server)
        assert (empty.status, json.loads(empty.body)) == (200, {"type": "info", "total": 0})
        await join(a, "7", {"name": "Ada"})
        await announced({"type": "join", "info": {"name": "Ada"}, "id": "7"}, a, b)
        await join(b, "9", {"name": "Bob"})
        await announced({"type": "join", "info": {"name": "Bob"}, "id": "9"}, a, b)
        answer = await users(server)
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/json"
        info = json.loads(answer.body)
        assert (info["type"], info["total"]) == ("info", 2)
        assert sorted(info["records"], key=lambda r: r["id"]) == [
            {"id": "7", "info": {"name": "Ada"}},
            {"id": "9", "info": {"name": "Bob"}},
        ]
        # another stream has nobody; the unencoded slash is another path (404, as in AnyCable)
        assert json.loads((await users(server, "chat%2F2")).body)["total"] == 0
        assert (await users(server, "chat/1")).status == 404
        await a.send_message(json.dumps({"command": "leave", "identifier": CHAT}))
        await announced({"type": "leave", "id": "7"}, a, b)
        info = json.loads((await users(server)).body)
        assert info == {
            "type": "info",
            "total": 1,
            "records": [{"info": {"name": "Bob"}, "id": "9"}],
        }


async def test_without_a_broker_presence_is_not_implemented() -> None:
    async with running(api_config(broker="none")) as server:
        assert (await users(server)).status == 501
        assert (
            await api(server, "POST", "/api/publish", {"stream": "s", "data": "1"})
        ).status == 201


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/publish", None, 422),
        ("PUT", "/api/publish", b"{}", 422),
        ("POST", "/api/presence/chat/users", b"", 422),
        ("DELETE", "/api/presence/chat/users", None, 422),
        ("POST", "/api/publish", b"", 400),
        ("POST", "/api/publish", b"{not json", 400),
        ("POST", "/api/publish", b'{"stream": 1, "data": "x"}', 400),
        ("POST", "/api/publish", b"[1, 2]", 400),
        ("POST", "/api/publish", b"\xff\xfe", 400),
        ("POST", "/api/publish", b"x" * 70_000, 413),
        ("GET", "/api/presence/chat", None, 404),
        ("GET", "/api/presence/chat/users/more", None, 404),
        ("GET", "/api/presence//users", None, 404),
        ("GET", "/api/presence/%ff%fe/users", None, 404),
        ("GET", "/api/other", None, 404),
    ],
)
async def test_refusals(method: str, path: str, body: bytes | None, status: int) -> None:
    async with running(api_config(max_broadcast_body=65536)) as server:
        answer = await api(server, method, path, body)
        assert answer.status == status, answer
        if status == 422:
            assert answer.headers["allow"] == ("GET" if "presence" in path else "POST")
        # the server is unharmed
        assert (await users(server)).status == 200


async def test_not_served_unless_protected_or_public() -> None:
    async with running(config(broker="memory")) as server:
        assert not server.config.api_served
        assert (await users(server, key=None)).status == 404
        assert (await api(server, "POST", "/api/publish", {"stream": "s", "data": "1"})).status == (
            404
        )
    async with running(config(broker="memory", public=True)) as server:
        assert (await users(server, key=None)).status == 200


async def test_start_up_says_whether_the_api_asks_for_a_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cableway")
    async with running(api_config()):
        pass
    async with running(config(broker="memory", public=True)):
        pass
    lines = [r.getMessage() for r in caplog.records if "REST API" in r.getMessage()]
    assert lines == [
        "Handle REST API requests at /api (authorization required)",
        "Handle REST API requests at /api (no authorization)",
    ]


async def test_a_custom_base_path() -> None:
    async with running(api_config(api_path="/v1/cable-api")) as server:
        assert (await users(server)).status == 404
        answer = await api(server, "GET", "/v1/cable-api/presence/chat/users")
        assert answer.status == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_port_of_its_own() -> None:
    port = _free_port()
    async with running(api_config(api_port=port)) as server:
        assert (await users(server, port=port)).status == 200
        assert (await users(server)).status == 404  # not on the main port
        # the API's listener serves nothing else
        assert (await http(port, "GET", "/health")).status == 404


async def test_on_the_broadcast_port_when_it_has_the_same_port() -> None:
    port = _free_port()
    cfg = api_config(http_broadcast_port=port, api_port=port)
    async with running(cfg) as server:
        assert server.broadcast_port == port
        assert (await users(server, port=port)).status == 200


async def test_one_keep_alive_connection_serves_publish_presence_and_refusals() -> None:
    """Requests pipelined on one connection are all answered, in order, on it."""
    publish = json.dumps({"stream": STREAM, "data": "1"}).encode()
    auth = f"Authorization: Bearer {API_KEY}\r\n"
    requests = [
        f"POST /api/publish HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(publish)}\r\n\r\n".encode()
        + publish,
        f"GET /api/presence/chat/users HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode(),
        b"GET /api/presence/chat/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer no\r\n\r\n",
        f"GET /api/publish/nope HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode(),
        f"GET /api/presence/chat/users HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode(),
    ]
    async with running(api_config()) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        async with stream:
            await stream.send_all(b"".join(requests))
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"201", b"200", b"401", b"404", b"200"]
