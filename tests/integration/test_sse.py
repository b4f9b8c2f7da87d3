"""Server-Sent Events at /events."""

from __future__ import annotations

import json
from urllib.parse import quote

from cableway.auth.jwt import encode_token
from cableway.auth.signed_streams import sign_stream_name

from .helpers import JWT_KEY, TURBO_KEY, broadcast, config, http, running, sse

HTML = '<turbo-stream action="append" target="messages">\n<template>Hi</template>\n</turbo-stream>'


def public(**kw: object):  # type: ignore[no-untyped-def]
    return config(broker="memory", public_streams=True, **kw)


async def test_get_stream_gets_welcome_confirm_and_unwrapped_turbo_html_with_ids() -> None:
    async with running(public()) as server, sse(server, "/events?stream=chat_42") as client:
        assert client.status == 200
        assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert client.headers["x-accel-buffering"] == "no"
        assert client.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in client.headers
        welcome = await client.event()
        assert welcome is not None
        assert welcome["event"] == "welcome"
        confirm = await client.event()
        assert confirm is not None
        assert json.loads(confirm["data"]) == {
            "type": "confirm_subscription",
            "identifier": '{"channel":"$pubsub","stream_name":"chat_42"}',
        }
        await broadcast(server, {"stream": "chat_42", "data": json.dumps(HTML)})
        await broadcast(server, {"stream": "chat_42", "data": '{"text":"hello"}'})
        first, second = await client.event(), await client.event()
        epoch = server.broker.epoch  # type: ignore[union-attr]
        assert first == {"data": HTML, "id": f"1/{epoch}/chat_42"}  # no event: -> onmessage
        assert second == {"data": '{"text":"hello"}', "id": f"2/{epoch}/chat_42"}


async def test_turbo_signed_stream_and_cleartext_turbo_stream_name() -> None:
    signed = sign_stream_name("rooms/1", TURBO_KEY)
    async with (
        running(public()) as server,
        sse(server, f"/events?turbo_signed_stream_name={quote(signed)}") as client,
    ):
        assert client.status == 200
        await broadcast(server, {"stream": "rooms/1", "data": json.dumps(HTML)})
        events = [await client.event() for _ in range(3)]
        assert events[-1] == {"data": HTML, "id": f"1/{server.broker.epoch}/rooms/1"}  # type: ignore[union-attr]
    clear = config(broker="memory", turbo_streams_secret=None, turbo_rails_cleartext=True)
    async with (
        running(clear) as server,
        sse(server, "/events?turbo_stream_name=chat_42&raw=1") as client,
    ):
        assert client.status == 200
        await broadcast(server, {"stream": "chat_42", "data": json.dumps("<p>hi</p>")})
        assert (await client.event()) == {
            "data": "<p>hi</p>",
            "id": f"1/{server.broker.epoch}/chat_42",
        }  # type: ignore[union-attr]


async def test_last_event_id_replays_what_was_missed_exactly_once() -> None:
    async with running(public()) as server:
        await broadcast(server, [{"stream": "s", "data": json.dumps(f"m{i}")} for i in range(1, 6)])
        epoch = server.broker.epoch  # type: ignore[union-attr]
        async with sse(
            server, "/events?stream=s", headers=[("Last-Event-ID", f"2/{epoch}/s")]
        ) as client:
            kinds = [await client.event() for _ in range(6)]
            assert [e.get("event") for e in kinds[:2]] == ["welcome", "confirm_subscription"]  # type: ignore[union-attr]
            assert [e["data"] for e in kinds[2:5]] == ["m3", "m4", "m5"]  # type: ignore[index]
            assert kinds[5]["event"] == "confirm_history"  # type: ignore[index]
            await broadcast(server, {"stream": "s", "data": json.dumps("m6")})
            assert (await client.event()) == {"data": "m6", "id": f"6/{epoch}/s"}


async def test_history_since_and_rejected_history() -> None:
    async with running(public()) as server:
        await broadcast(server, {"stream": "s", "data": '"old"'})
        async with sse(server, "/events?stream=s&history_since=1") as client:
            events = [await client.event() for _ in range(4)]
            assert events[2]["data"] == "old"  # type: ignore[index]
            assert events[3]["event"] == "confirm_history"  # type: ignore[index]
        async with sse(
            server, "/events?stream=s", headers=[("Last-Event-ID", "1/wrong-epoch/s")]
        ) as client:
            events = [await client.event() for _ in range(3)]
            assert events[2]["event"] == "reject_history"  # type: ignore[index]


async def test_status_codes() -> None:
    async with running(public(jwt_secret=JWT_KEY, enforce_jwt=True)) as server:
        port = server.main_port
        token = encode_token({"u": 1}, JWT_KEY)
        assert (await http(port, "GET", f"/events?jid={token}")).status == 400  # no channel
        signed = sign_stream_name("x", "not-the-key")
        assert (
            await http(port, "GET", f"/events?jid={token}&signed_stream={quote(signed)}")
        ).status == 400
        assert (await http(port, "GET", "/events?stream=x")).status == 401  # no token, enforced
        expired = encode_token({"u": 1}, JWT_KEY, exp=1)
        assert (await http(port, "GET", f"/events?stream=x&jid={expired}")).status == 401
        assert (await http(port, "PUT", "/events?stream=x")).status == 405
        options = await http(port, "OPTIONS", "/events")
        assert options.status == 200
        assert "GET" in options.headers["access-control-allow-methods"]
        bad_id = [("Last-Event-ID", "abc/e/s")]
        assert (
            await http(port, "GET", f"/events?stream=x&jid={token}", headers=bad_id)
        ).status == 400
        assert (
            await http(port, "GET", f"/events?stream=x&jid={token}&history_since=soon")
        ).status == 400
        ignored = [("Last-Event-ID", "x" * 5000)]
        async with sse(server, f"/events?stream=x&jid={token}", headers=ignored) as client:
            assert client.status == 200


async def test_post_body_of_commands_keeps_full_json() -> None:
    async with running(public()) as server:
        lines = (
            b'{"identifier":"{\\"channel\\":\\"$pubsub\\",\\"stream_name\\":\\"a\\"}"}\n\n'
            b'{"identifier":"{\\"channel\\":\\"$pubsub\\",\\"stream_name\\":\\"b\\"}"}\n'
        )
        async with sse(server, "/events", method="POST", body=lines) as client:
            assert client.status == 200
            assert [(await client.event())["event"] for _ in range(3)] == [  # type: ignore[index]
                "welcome",
                "confirm_subscription",
                "confirm_subscription",
            ]
            await broadcast(server, {"stream": "b", "data": '"x"'})
            data = json.loads((await client.event())["data"])  # type: ignore[index]
            assert data["identifier"] == '{"channel":"$pubsub","stream_name":"b"}'
            assert data["message"] == "x"
        bad = await http(server.main_port, "POST", "/events", b"not json\n")
        assert bad.status == 400


async def test_shutdown_ends_the_stream_with_a_disconnect_event() -> None:
    async with running(public()) as server, sse(server, "/events?stream=s") as client:
        await client.event()
        await client.event()
        server.shutdown()
        last = await client.event()
        assert last is not None
        assert last["event"] == "disconnect"
        assert json.loads(last["data"]) == {
            "type": "disconnect",
            "reason": "server_restart",
            "reconnect": True,
        }
        assert await client.event() is None  # the response ended
