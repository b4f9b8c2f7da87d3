"""The broadcast client against the real server (trio) and a stdlib stub (asyncio, 5xx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import trio

from cableway.auth.keys import derive_broadcast_key
from cableway.toolkit import turbo_stream
from cableway.toolkit.broadcaster import (
    BroadcastAuthError,
    Broadcaster,
    BroadcastError,
    BroadcastRejected,
    BroadcastUnavailable,
    encode_data,
)
from cableway.toolkit.streams import gid_param, signed_stream_name, stream_name_from
from cableway.toolkit.tokens import identification_token
from cableway.transport.server import Server

from ..integration.helpers import (
    BROADCAST_KEY,
    JWT_KEY,
    TURBO_KEY,
    cable,
    config,
    recv_json,
    running,
    subscribe,
    welcome,
)
from .stub_http import closed_port, silent_listener, stub_server

PUBLIC = config(public_streams=True)


def pubsub(stream: str) -> str:
    return json.dumps({"channel": "$pubsub", "stream_name": stream})


def client(server: Server, **kwargs: object) -> Broadcaster:
    url = f"http://127.0.0.1:{server.broadcast_port}{server.config.http_broadcast_path}"
    options: dict[str, object] = {"key": BROADCAST_KEY, **kwargs}
    return Broadcaster(url, **options)  # type: ignore[arg-type]


async def in_thread(fn: Callable[[], object]) -> object:
    with trio.fail_after(10):
        return await trio.to_thread.run_sync(fn)


# --- real server ---------------------------------------------------------------------------


async def test_broadcast_reaches_a_subscriber_as_sent() -> None:
    async with running(PUBLIC) as server, cable(server) as ws:
        await welcome(ws)
        identifier = pubsub("news")
        assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
        b = client(server)
        html = turbo_stream.append("messages", '<p class="x">Hi "you"</p>')
        cases: list[tuple[Callable[[], None], object]] = [
            (lambda: b.broadcast("news", html), html),  # a str arrives as that exact string
            (lambda: b.broadcast("news", {"text": "hi", "n": [1, 2]}), {"text": "hi", "n": [1, 2]}),
            (lambda: b.broadcast("news", 42), 42),
            (lambda: b.broadcast_raw("news", '{"a":1}'), {"a": 1}),  # JSON text: parsed
            (lambda: b.broadcast_raw("news", "plain <b>text</b>"), "plain <b>text</b>"),
        ]
        for send, expected in cases:
            await in_thread(send)
            assert await recv_json(ws) == {"identifier": identifier, "message": expected}


async def test_turbo_stream_round_trip_with_signed_model_stream() -> None:
    class Room:
        def to_gid_param(self) -> str:
            return gid_param("myapp", "Room", 1)

    signed = signed_stream_name(Room(), "messages", secret=TURBO_KEY)
    identifier = json.dumps(
        {"channel": "Turbo::StreamsChannel", "signed_stream_name": signed},
        separators=(",", ":"),
    )
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
        html = turbo_stream.append("messages", "<p>Hello</p>")
        stream = stream_name_from(Room(), "messages")
        assert stream == "Z2lkOi8vbXlhcHAvUm9vbS8x:messages"
        await in_thread(lambda: client(server).broadcast(stream, html))
        assert await recv_json(ws) == {"identifier": identifier, "message": html}


async def test_batch_is_delivered_in_order() -> None:
    async with running(PUBLIC) as server, cable(server) as ws:
        await welcome(ws)
        for stream in ("a", "b"):
            assert (await subscribe(ws, pubsub(stream)))["type"] == "confirm_subscription"
        b = client(server)
        await in_thread(lambda: b.broadcast_many([("a", "one"), ("b", {"n": 2}), ("a", "three")]))
        await in_thread(lambda: b.broadcast_many([("b", '"raw"')], raw=True))
        await in_thread(lambda: b.broadcast_many([]))  # nothing to send, no request
        assert [await recv_json(ws) for _ in range(4)] == [
            {"identifier": pubsub("a"), "message": "one"},
            {"identifier": pubsub("b"), "message": {"n": 2}},
            {"identifier": pubsub("a"), "message": "three"},
            {"identifier": pubsub("b"), "message": "raw"},
        ]


async def test_exclude_socket_skips_that_connection() -> None:
    async with running(PUBLIC) as server, cable(server) as me, cable(server) as other:
        my_sid = await welcome(me)
        await welcome(other)
        for ws in (me, other):
            assert (await subscribe(ws, pubsub("s")))["type"] == "confirm_subscription"
        b = client(server)
        await in_thread(lambda: b.broadcast("s", "to others", exclude_socket=my_sid))
        await in_thread(lambda: b.broadcast("s", "to all"))
        assert (await recv_json(other))["message"] == "to others"
        assert (await recv_json(other))["message"] == "to all"
        assert (await recv_json(me))["message"] == "to all"  # the first one never came


async def test_secret_derives_the_servers_key() -> None:
    cfg = config(public_streams=True, broadcast_key=derive_broadcast_key("qwerty"))
    async with running(cfg) as server, cable(server) as ws:
        await welcome(ws)
        await subscribe(ws, pubsub("s"))
        b = client(server, key=None, secret="qwerty")
        await in_thread(lambda: b.broadcast("s", "ok"))
        assert (await recv_json(ws))["message"] == "ok"
        # an explicit key wins over the secret
        wrong = client(server, key="wrong", secret="qwerty")
        with pytest.raises(BroadcastAuthError):
            await in_thread(lambda: wrong.broadcast("s", "no"))


@pytest.mark.parametrize(
    "kwargs", [{"key": "wrong"}, {"key": None}, {"key": None, "secret": "other"}]
)
async def test_bad_or_missing_key_raises_auth_error(kwargs: dict[str, object]) -> None:
    async with running() as server:
        b = client(server, **kwargs)
        with pytest.raises(BroadcastAuthError) as info:
            await in_thread(lambda: b.broadcast("s", "x"))
    assert info.value.status == 401
    assert "broadcast key" in str(info.value)
    assert isinstance(info.value, BroadcastError)


async def test_oversized_body_is_rejected_with_its_status() -> None:
    async with running() as server:
        b = client(server)
        with pytest.raises(BroadcastRejected) as info:
            await in_thread(lambda: b.broadcast_raw("s", "x" * (1 << 20)))
    assert info.value.status == 413
    assert "413" in str(info.value)


async def test_remote_disconnect_matches_the_token_identifiers() -> None:
    token = identification_token({"user_id": 5}, JWT_KEY)
    other_token = identification_token({"user_id": 6}, JWT_KEY)
    async with (
        running() as server,
        cable(server, query=f"?jid={token}") as target,
        cable(server, query=f"?jid={other_token}") as bystander,
    ):
        await welcome(target)
        await welcome(bystander)
        await in_thread(lambda: client(server).disconnect({"user_id": 5}))
        assert await recv_json(target) == {
            "type": "disconnect",
            "reason": "remote",
            "reconnect": False,
        }
        # the other connection is still open: it still answers commands
        assert (await subscribe(bystander, pubsub("x")))["type"] == "reject_subscription"


async def test_async_methods_under_trio() -> None:
    token = identification_token({"user_id": 7}, JWT_KEY)
    async with running(PUBLIC) as server, cable(server, query=f"?jid={token}") as ws:
        await welcome(ws)
        await subscribe(ws, pubsub("t"))
        b = client(server)
        with trio.fail_after(10):
            await b.abroadcast("t", "one")
            await b.abroadcast_raw("t", '{"two":2}')
            await b.abroadcast_many([("t", "three")])
        assert [(await recv_json(ws))["message"] for _ in range(3)] == ["one", {"two": 2}, "three"]
        with trio.fail_after(10):
            await b.adisconnect({"user_id": 7}, reconnect=True)
        assert await recv_json(ws) == {"type": "disconnect", "reason": "remote", "reconnect": True}
        bad = client(server, key="wrong")
        with pytest.raises(BroadcastAuthError), trio.fail_after(10):
            await bad.abroadcast("t", "x")


# --- without the real server ---------------------------------------------------------------


def test_async_methods_under_asyncio() -> None:
    with stub_server() as stub:
        b = Broadcaster(stub.url, key="k")

        async def main() -> None:
            await asyncio.wait_for(b.abroadcast("chat", "<p>x</p>"), 10)
            await asyncio.wait_for(b.abroadcast_many([("a", 1), ("b", 2)]), 10)
            await asyncio.wait_for(b.adisconnect('{"user_id":1}'), 10)

        asyncio.run(main())
        stub.status = 401
        with pytest.raises(BroadcastAuthError):
            asyncio.run(b.abroadcast("chat", "x"))
    assert [json.loads(r.body) for r in stub.requests[:3]] == [
        {"stream": "chat", "data": '"<p>x</p>"'},
        [{"stream": "a", "data": "1"}, {"stream": "b", "data": "2"}],
        {"command": "disconnect", "payload": {"identifier": '{"user_id":1}', "reconnect": False}},
    ]


def test_async_methods_need_a_running_loop() -> None:
    coro = Broadcaster("http://127.0.0.1:1/_broadcast").abroadcast("s", "x")
    with pytest.raises(RuntimeError, match="asyncio or trio"):
        coro.send(None)
    coro.close()


def test_request_shape() -> None:
    with stub_server() as stub:
        Broadcaster(stub.url, key="k").broadcast(
            "chat", "hi", exclude_socket="sid-1", transient=True
        )
        Broadcaster(stub.url).broadcast("chat", "hi")
    first, second = stub.requests
    assert first.path == "/_broadcast"
    assert first.headers["authorization"] == "Bearer k"
    assert first.headers["content-type"] == "application/json"
    assert json.loads(first.body) == {
        "stream": "chat",
        "data": '"hi"',
        "meta": {"exclude_socket": "sid-1", "transient": True},
    }
    assert "authorization" not in second.headers
    assert second.body == b'{"stream":"chat","data":"\\"hi\\""}'


def test_url_path_and_query_are_kept() -> None:
    with stub_server() as stub:
        Broadcaster(f"http://127.0.0.1:{stub.port}/custom/path?x=1").broadcast("s", "x")
    assert stub.requests[0].path == "/custom/path?x=1"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BroadcastRejected),
        (403, BroadcastAuthError),
        (422, BroadcastRejected),
        (500, BroadcastUnavailable),
        (503, BroadcastUnavailable),
        (302, BroadcastError),
    ],
)
def test_status_to_error(status: int, error: type[BroadcastError]) -> None:
    body = b"Bad Request: publication data must be a string\n"
    with stub_server(status, body) as stub, pytest.raises(error) as info:
        Broadcaster(stub.url).broadcast("s", "x")
    assert type(info.value) is error
    assert info.value.status == status
    assert info.value.body == "Bad Request: publication data must be a string\n"
    assert "publication data must be a string" in str(info.value)
    assert "\n" not in str(info.value)


def test_2xx_answers_are_success() -> None:
    with stub_server(200) as stub:
        Broadcaster(stub.url).broadcast("s", "x")
    assert len(stub.requests) == 1


def test_connection_refused_is_unavailable() -> None:
    port = closed_port()
    with pytest.raises(BroadcastUnavailable, match="cannot reach") as info:
        Broadcaster(f"http://127.0.0.1:{port}/_broadcast").broadcast("s", "x")
    assert info.value.status is None


def test_timeout_is_unavailable() -> None:
    with silent_listener() as port, pytest.raises(BroadcastUnavailable, match="cannot reach"):
        Broadcaster(f"http://127.0.0.1:{port}/_broadcast", timeout=0.2).broadcast("s", "x")


@pytest.mark.parametrize(
    "url", ["localhost:8080/_broadcast", "ftp://h/x", "http:///x", "http://h:x/"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        Broadcaster(url)


def test_bad_arguments_are_refused_before_sending() -> None:
    b = Broadcaster("http://127.0.0.1:1/_broadcast")
    with pytest.raises(ValueError, match="stream"):
        b.broadcast("", "x")
    with pytest.raises(TypeError, match="raw data"):
        b.broadcast_raw("s", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="raw data"):
        b.broadcast_many([("s", 5)], raw=True)
    with pytest.raises(TypeError):
        b.broadcast("s", object())
    with pytest.raises(ValueError, match="identifiers"):
        b.disconnect("")
    with pytest.raises(ValueError, match="timeout"):
        Broadcaster("http://h/", timeout=0)


def test_repr_never_shows_the_key() -> None:
    text = repr(Broadcaster("http://h/_broadcast", key="top-secret"))
    assert "top-secret" not in text
    assert "with key" in text


def test_encode_data() -> None:
    assert encode_data("<p>é</p>") == '"<p>\\u00e9</p>"'
    assert json.loads(encode_data("<p>é</p>")) == "<p>é</p>"
    assert encode_data({"a": [1, None]}) == '{"a":[1,null]}'
