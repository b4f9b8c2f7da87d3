"""Event streams (SSE) on application channels, as AnyCable-Go serves them
(``sse/handler.go``): Connect when the stream opens (unless a JWT identifies the client), a
Command subscribe for each channel the server does not serve itself, all before the
answer; ``401`` when the application rejects the client, ``400`` when a subscription is
rejected or Connect fails; Disconnect once the stream is gone. The chat app of
tests/rpc/chat.py under uvicorn, a real Cableway server, an HTTP client reading the stream
as a browser's EventSource does."""

from __future__ import annotations

import json
from urllib.parse import quote

import trio

from cableway.auth.jwt import encode_token
from tests.integration.helpers import (
    JWT_KEY,
    SseClient,
    broadcast,
    http,
    sse,
    turbo_identifier,
)

from .apphost import Events
from .test_server_rpc import IDENT, chat_server

COOKIE = [("Cookie", "_session_id=abc")]


async def test_a_stream_on_an_application_channel_connects_subscribes_and_disconnects() -> None:
    events = Events()
    async with chat_server(events) as server:
        target = f"/events?user=alice&identifier={quote(IDENT)}"
        async with sse(server, target, headers=COOKIE) as client:
            assert client.status == 200
            welcome = await client.event()
            assert welcome is not None
            assert welcome["event"] == "welcome"  # the application's own welcome
            confirm = await client.event()
            assert confirm is not None
            assert confirm["event"] == "confirm_subscription"
            connect = next(e for e in events if e[0] == "connect")
            assert connect[1] == {"_session_id": "abc"}  # the handshake's cookie, forwarded

            await broadcast(server, {"stream": "room:42", "data": json.dumps({"n": 1})})
            assert await client.event() == {"data": '{"n":1}'}
        await events.wait_for(("disconnect", {"user": "alice"}))
        assert ("unsubscribed", {"room": "42"}, {}) in events


async def test_the_application_rejects_the_client_401() -> None:
    events = Events()
    async with chat_server(events) as server:
        response = await http(server.main_port, "GET", f"/events?identifier={quote(IDENT)}")
        assert response.status == 401
        assert server.metrics.snapshot()["failed_auths_total"] == 1
        assert not [e for e in events if e[0] == "disconnect"]  # never connected


async def test_a_rejected_subscription_is_a_400_and_the_session_is_disconnected() -> None:
    events = Events()
    async with chat_server(events) as server:
        response = await http(server.main_port, "GET", "/events?user=bob&channel=chat")
        assert response.status == 400
        assert b"subscription rejected" in response.body
        await events.wait_for(("disconnect", {"user": "bob"}))  # Connect accepted it


async def test_built_in_channels_still_work_and_a_jwt_skips_connect() -> None:
    events = Events()
    async with chat_server(events) as server:
        signed = quote(json.loads(turbo_identifier("s"))["signed_stream_name"])
        target = f"/events?user=carol&turbo_signed_stream_name={signed}"
        async with sse(server, target) as client:
            assert client.status == 200
            assert [e[0] for e in events] == ["connect"]  # Connect, no Command
            await broadcast(server, {"stream": "s", "data": json.dumps("<p>hi</p>")})
            kinds = [await client.event() for _ in range(3)]
            assert kinds[-1] == {"data": "<p>hi</p>"}

        token = encode_token({"user": "dave"}, JWT_KEY)
        async with sse(server, f"/events?jid={token}&identifier={quote(IDENT)}") as client:
            assert client.status == 200
            assert len([e for e in events if e[0] == "connect"]) == 1  # no second Connect
            await broadcast(server, {"stream": "room:42", "data": json.dumps({"n": 2})})
            received = [await client.event() for _ in range(3)]
            assert received[-1] == {"data": '{"n":2}'}


async def test_a_failed_connect_is_a_400() -> None:
    events = Events()
    async with chat_server(events, key="wrong") as server:  # the app answers 401
        response = await http(server.main_port, "GET", "/events?user=eve&channel=chat")
        assert response.status == 400
        assert server.metrics.snapshot()["rpc_error_total"] >= 1


async def first_events(client: SseClient, count: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    with trio.fail_after(5):
        for _ in range(count):
            event = await client.event()
            assert event is not None, out
            out.append(event)
    return out


async def test_a_stream_on_an_application_channel_replays_history_since_and_after_its_last_id() -> (
    None
):
    """``?history_since=`` and ``Last-Event-ID`` ride on the subscribe the stream opens with;
    on an application channel they are served after the application's confirmation, as
    AnyCable-Go's SSE handler does (its subscribe carries the history)."""
    events = Events()
    async with chat_server(events, broker="memory") as server:
        for n in (1, 2):
            await broadcast(server, {"stream": "room:42", "data": json.dumps({"n": n})})
        target = f"/events?user=alice&identifier={quote(IDENT)}&history_since=1"
        async with sse(server, target) as client:
            seen = await first_events(client, 5)
        assert [e.get("event") for e in seen] == [
            "welcome",
            "confirm_subscription",
            None,
            None,
            "confirm_history",
        ]
        assert [e["data"] for e in seen[2:4]] == ['{"n":1}', '{"n":2}']
        last_id = seen[2]["id"]
        assert last_id.startswith("1/")
        target = f"/events?user=alice&identifier={quote(IDENT)}"
        async with sse(server, target, headers=[("Last-Event-ID", last_id)]) as client:
            seen = await first_events(client, 4)
        assert seen[2]["data"] == '{"n":2}'  # only what came after it
        assert seen[3]["event"] == "confirm_history"
