"""cableway.channels as an ASGI app: hand-made ASGI messages under trio, and mounted in
FastAPI (driven by its test client)."""

from __future__ import annotations

import json
import threading
from typing import Any

import trio
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cableway.channels.asgi import ASGIApp
from cableway.testing import capture_broadcasts

from .chat import IDENT, SPEC_HEADERS, make_app

ENV = {"url": "http://localhost:8080/cable?user=alice", "headers": {"REMOTE_ADDR": "127.0.0.1"}}


async def request(
    app: ASGIApp,
    path: str,
    body: bytes,
    *,
    headers: list[tuple[str, str]] = SPEC_HEADERS,
    method: str = "POST",
    chunks: int = 1,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through the ASGI app; ``chunks`` splits the body."""
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    incoming = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
    }
    await app(scope, receive, send)
    start, body_message = sent
    assert start["type"] == "http.response.start"
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert int(response_headers["content-length"]) == len(body_message["body"])
    return start["status"], response_headers, body_message["body"]


def connect_body() -> bytes:
    return json.dumps({"env": ENV}).encode()


async def test_connect_through_asgi_runs_sync_code_in_a_worker_thread() -> None:
    events: list[Any] = []
    app = make_app(events).asgi()
    status, headers, body = await request(app, "/_anycable/connect", connect_body())
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["identifiers"] == '{"user":"alice"}'
    assert events[0][3] != threading.get_ident()


async def test_unthreaded_sync_code_runs_on_the_loop() -> None:
    events: list[Any] = []
    app = make_app(events).asgi(threaded=False)
    assert (await request(app, "/_anycable/connect", connect_body()))[0] == 200
    assert events[0][3] == threading.get_ident()


async def test_async_action_is_awaited_on_the_loop() -> None:
    events: list[Any] = []
    app = make_app(events).asgi()
    message = {
        "command": "message",
        "identifier": IDENT,
        "connection_identifiers": '{"user":"alice"}',
        "data": json.dumps({"action": "typing"}),
        "env": ENV,
    }
    with capture_broadcasts() as broadcasts:
        status, _, body = await request(app, "/rpc/command", json.dumps(message).encode(), chunks=3)
    assert (status, json.loads(body)) == (200, {"status": 1})
    assert events == [("typing", threading.get_ident())]
    assert broadcasts.on("room:42") == [{"typing": "alice"}]


async def test_http_errors_through_asgi() -> None:
    app = make_app([]).asgi()
    assert (await request(app, "/_anycable/connect", connect_body(), headers=[]))[0] == 401
    assert (await request(app, "/_anycable/connect", b"not json"))[0] == 422
    assert (await request(app, "/_anycable/ping", b"{}"))[0] == 404
    status, headers, _ = await request(app, "/_anycable/connect", b"", method="GET")
    assert (status, headers["allow"]) == (405, "POST")


async def test_oversized_bodies_are_413_whether_announced_or_streamed() -> None:
    app = make_app([], max_body_size=100).asgi()
    big = json.dumps({"env": {**ENV, "cstate": {"x": "y" * 200}}}).encode()
    announced = [*SPEC_HEADERS, ("content-length", str(len(big)))]
    assert (await request(app, "/_anycable/connect", big, headers=announced))[0] == 413
    assert (await request(app, "/_anycable/connect", big, chunks=4))[0] == 413


async def test_lifespan_is_acknowledged_and_websockets_refused() -> None:
    app = make_app([]).asgi()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    sent.clear()
    await app({"type": "websocket", "path": "/connect", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_mounted_in_fastapi() -> None:
    events: list[Any] = []
    api = FastAPI()

    @api.get("/")
    def index() -> dict[str, str]:
        return {"page": "home"}

    api.mount("/api/anycable", make_app(events).asgi())
    with TestClient(api) as client:
        response = client.post(
            "/api/anycable/connect", content=connect_body(), headers=dict(SPEC_HEADERS)
        )
        assert response.status_code == 200
        assert response.json()["transmissions"] == ['{"type":"welcome","sid":"s1d-test"}']
        assert client.post("/api/anycable/connect", content=connect_body()).status_code == 401
        assert client.get("/").json() == {"page": "home"}
    assert events[0][0] == "connect"
