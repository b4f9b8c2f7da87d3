"""Cableway calling an application over AnyCable's HTTP RPC (rpc.md §4): the chat app of
tests/rpc/chat.py written with cableway.channels, served by uvicorn on 127.0.0.1, driven
through a real Cableway server by a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from cableway.auth.jwt import encode_token
from cableway.channels import Application, Channel, Connection
from cableway.integration import IntegrationSettings
from cableway.rpc.settings import RpcSettings
from cableway.transport.server import Server
from tests.asgi.host import UvicornHost
from tests.integration.helpers import (
    BROADCAST_KEY,
    JWT_KEY,
    cable,
    close_code,
    config,
    recv_json,
    running,
)

from .apphost import Events, Holder
from .chat import KEY, make_app

IDENT = '{"channel":"chat","room":"42"}'


@asynccontextmanager
async def chat_server(
    events: list[Any], *, key: str = KEY, broker: str = "none", **rpc: Any
) -> AsyncIterator[Server]:
    """The chat app under uvicorn and a Cableway server calling it."""
    holder = Holder()
    host = UvicornHost(holder)
    settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/_anycable", key=key, **rpc)
    async with running(config(rpc=settings, broker=broker)) as server:
        holder.app = make_app(
            events,
            settings=IntegrationSettings(
                secret="s",
                broadcast_key=BROADCAST_KEY,
                http_broadcast_url=f"http://127.0.0.1:{server.broadcast_port}/_broadcast",
            ),
        ).asgi()
        await trio.to_thread.run_sync(host.start)
        try:
            yield server
        finally:
            await trio.to_thread.run_sync(host.stop)


async def send(ws: Any, command: str, identifier: str = IDENT, **data: Any) -> None:
    message: dict[str, Any] = {"command": command, "identifier": identifier}
    if data:
        message["data"] = json.dumps(data)
    await ws.send_message(json.dumps(message))


async def test_connect_subscribe_perform_broadcast_and_disconnect() -> None:
    events = Events()
    async with chat_server(events) as server:
        async with cable(server, "?user=alice", headers=[("Cookie", "_session_id=abc")]) as ws:
            welcome = await recv_json(ws)
            assert welcome["type"] == "welcome"
            await send(ws, "subscribe")
            assert await recv_json(ws) == {"identifier": IDENT, "type": "confirm_subscription"}
            await send(ws, "message", action="speak", message="hi")
            # the transmission, and the room broadcast the action made through Cableway
            got = [await recv_json(ws), await recv_json(ws)]
            assert {"identifier": IDENT, "message": {"echo": "hi"}} in got
            assert {"identifier": IDENT, "message": {"message": "hi", "from": "alice"}} in got
            await send(ws, "message", action="remember", message="kept")
            await send(ws, "message", action="visit")
            await send(ws, "message", action="recall")
            assert await recv_json(ws) == {
                "identifier": IDENT,
                "message": {"last": "kept", "visits": "2"},
            }
            # stop_stream_from: room broadcasts no longer arrive
            await send(ws, "message", action="leave")
            await send(ws, "message", action="speak", message="again")
            assert await recv_json(ws) == {"identifier": IDENT, "message": {"echo": "again"}}
            await send(ws, "message", action="recall")
            assert (await recv_json(ws))["message"]["last"] == "kept"
        # Disconnect after the socket is gone: unsubscribed with its state, then disconnect
        await events.wait_for(("disconnect", {"user": "alice"}))
        connect = next(e for e in events if e[0] == "connect")
        assert connect[1] == {"_session_id": "abc"}
        assert connect[2] == "127.0.0.1"
        assert ("unsubscribed", {"room": "42"}, {"last": "kept"}) in events
        assert server.metrics.snapshot()["rpc_call_total"] >= 9


async def test_rejected_connect_closes_with_the_apps_message() -> None:
    events = Events()
    async with chat_server(events) as server, cable(server) as ws:
        message = await recv_json(ws)
        assert message["type"] == "disconnect"
        assert message["reason"] == "unauthorized"
        assert await close_code(ws) == 1000
    assert server.metrics.snapshot()["failed_auths_total"] == 1


async def test_rejected_subscription_gets_no_stream() -> None:
    events = Events()
    async with chat_server(events) as server, cable(server, "?user=bob") as ws:
        await recv_json(ws)
        await send(ws, "subscribe", identifier='{"channel":"chat"}')
        assert await recv_json(ws) == {
            "identifier": '{"channel":"chat"}',
            "type": "reject_subscription",
        }
        assert "never" not in set(server.node.registry.streams())
        # built-in channels keep working without RPC
        await send(ws, "subscribe", identifier='{"channel":"$pubsub","stream_name":"x"}')
        reply = await recv_json(ws)
        assert reply["type"] == "reject_subscription"  # public streams are off here


async def test_wrong_secret_closes_1011_and_counts_an_error() -> None:
    events = Events()
    async with chat_server(events, key="wrong") as server, cable(server, "?user=a") as ws:
        assert await close_code(ws) == 1011
    assert server.metrics.snapshot()["rpc_error_total"] == 1
    assert not [e for e in events if e[0] == "connect"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_backend_down_at_start_closes_1011_after_retries() -> None:
    settings = RpcSettings(host=f"http://127.0.0.1:{_closed_port()}/_anycable", request_timeout=1.0)
    async with running(config(rpc=settings)) as server, cable(server, "?user=a") as ws:
        assert await close_code(ws) == 1011
    counts = server.metrics.snapshot()
    assert counts["rpc_error_total"] == 1
    assert counts["rpc_retries_total"] >= 2


async def test_a_garbage_answer_is_a_failed_call() -> None:
    async def garbage(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status":"SUCCESS"}'})

    host = UvicornHost(garbage)
    settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/rpc")
    await trio.to_thread.run_sync(host.start)
    try:
        async with running(config(rpc=settings)) as server, cable(server) as ws:
            assert await close_code(ws) == 1011
        assert server.metrics.snapshot()["rpc_error_total"] == 1
    finally:
        await trio.to_thread.run_sync(host.stop)


async def test_a_jwt_identified_client_skips_connect_and_its_identifiers_reach_the_app() -> None:
    events = Events()
    async with chat_server(events) as server:
        token = encode_token({"user": "jwt"}, JWT_KEY)
        async with cable(server, f"?jid={token}") as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await send(ws, "subscribe")
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            await send(ws, "message", action="speak", message="hey")
            got = [await recv_json(ws), await recv_json(ws)]
            assert {"identifier": IDENT, "message": {"message": "hey", "from": "jwt"}} in got
        # auto mode: an RPC subscribe makes the session disconnectable
        await events.wait_for(("disconnect", {"user": "jwt"}))
        assert not [e for e in events if e[0] == "connect"]


async def test_disconnect_mode_never_makes_no_disconnect_call() -> None:
    events = Events()
    async with chat_server(events, disconnect_mode="never") as server:
        async with cable(server, "?user=carol") as ws:
            await recv_json(ws)
            await send(ws, "subscribe")
            await recv_json(ws)
            [session] = server.node.sessions
        with trio.fail_after(5):
            await session.wait_closed()
        assert session.rpc is not None
        assert session.rpc.disconnect_request() is None
        calls = server.metrics.snapshot()["rpc_call_total"]
    assert calls == 2  # connect, subscribe
    assert not [e for e in events if e[0] == "disconnect"]


async def test_without_rpc_host_app_channels_are_rejected_as_before() -> None:
    async with running(config()) as server, cable(server) as ws:
        await recv_json(ws)
        await send(ws, "subscribe")
        assert (await recv_json(ws))["type"] == "reject_subscription"
    assert "rpc_call_total" not in server.metrics.snapshot()


class SlowChannel(Channel):
    """An app channel whose ``hang`` action never answers in time."""

    channel_name = "slow"
    released: asyncio.Event | None = None

    def subscribed(self) -> None:
        self.stream_from("slow")

    async def hang(self) -> None:
        released = SlowChannel.released = asyncio.Event()
        await released.wait()

    def ping(self) -> None:
        self.transmit({"pong": True})


SLOW = '{"channel":"slow"}'


@asynccontextmanager
async def slow_server(**rpc: Any) -> AsyncIterator[tuple[Server, UvicornHost]]:
    SlowChannel.released = None
    host = UvicornHost(Application(Connection, [SlowChannel]).asgi())
    settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/_anycable", **rpc)
    await trio.to_thread.run_sync(host.start)
    try:
        async with running(config(rpc=settings)) as server:
            yield server, host
    finally:
        if SlowChannel.released is not None:
            await trio.to_thread.run_sync(host.call, _release)
        await trio.to_thread.run_sync(host.stop)


async def _release() -> None:
    assert SlowChannel.released is not None
    SlowChannel.released.set()


async def test_a_command_slower_than_the_timeout_sends_nothing_and_the_session_goes_on() -> None:
    async with slow_server(request_timeout=0.5) as (server, _host):
        async with cable(server) as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await send(ws, "subscribe", identifier=SLOW)
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            await send(ws, "message", identifier=SLOW, action="hang")
            await send(ws, "message", identifier=SLOW, action="ping")
            # the hung call times out with nothing sent; the next command is answered
            assert await recv_json(ws) == {"identifier": SLOW, "message": {"pong": True}}
        counts = server.metrics.snapshot()
        assert counts["rpc_timeout_total"] == 1
        assert counts["rpc_error_total"] == 1


async def test_backend_gone_mid_session_fails_calls_without_closing_the_session() -> None:
    async with slow_server(request_timeout=0.5) as (server, host):
        async with cable(server) as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await send(ws, "subscribe", identifier=SLOW)
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            await trio.to_thread.run_sync(host.stop)
            await send(ws, "message", identifier=SLOW, action="ping")
            await send(ws, "subscribe", identifier='{"channel":"$pubsub","stream_name":"x"}')
            # the failed call sent nothing; the session still answers built-in commands
            assert (await recv_json(ws))["type"] == "reject_subscription"
            assert not ws.closed
        counts = server.metrics.snapshot()
        assert counts["rpc_error_total"] >= 1
        assert counts["rpc_retries_total"] >= 1


async def test_a_restored_session_gets_its_app_channels_and_state_back_without_rpc() -> None:
    events = Events()
    ext = ["actioncable-v1-ext-json"]
    async with chat_server(events, broker="memory") as server:
        async with cable(server, "?user=alice", subprotocols=ext) as ws:
            sid = (await recv_json(ws))["sid"]
            await send(ws, "subscribe")
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            await send(ws, "message", action="remember", message="kept")
            await send(ws, "message", action="visit")
            await send(ws, "message", action="recall")
            assert (await recv_json(ws))["message"] == {"last": "kept", "visits": "2"}
            [session] = server.node.sessions
        with trio.fail_after(5):
            await session.wait_closed()
        # its Disconnect call runs after the close, in the disconnect queue: count from
        # when it is done
        await events.wait_for(("disconnect", {"user": "alice"}))
        calls = server.metrics.snapshot()["rpc_call_total"]
        async with cable(server, f"?sid={sid}", subprotocols=ext) as ws:
            welcome = await recv_json(ws)
            assert welcome["restored"] is True
            assert welcome["restored_ids"] == [IDENT]
            # no Connect, no subscribe: the first call is the action
            assert server.metrics.snapshot()["rpc_call_total"] == calls
            await send(ws, "message", action="recall")
            assert (await recv_json(ws))["message"] == {"last": "kept", "visits": "2"}
            # as extended-protocol clients do after a restore: ask for what was missed
            # (nothing here), which releases the restored stream's held live messages at
            # once instead of after the hold deadline (HOLD_SECONDS)
            position = {"since": int(time.time()) - 60}
            await ws.send_message(
                json.dumps({"command": "history", "identifier": IDENT, "history": position})
            )
            await send(ws, "message", action="speak", message="back")
            got: list[dict[str, Any]] = []
            while not any(m.get("message") == {"message": "back", "from": "alice"} for m in got):
                assert len(got) < 5, got
                got.append(await recv_json(ws))
            room = [m for m in got if m.get("message") == {"message": "back", "from": "alice"}]
            assert room[0]["stream_id"] == "room:42"  # the restored stream delivers
        assert [e for e in events if e[0] == "connect"] == [events[0]]


async def test_shutdown_runs_the_queued_disconnect_calls() -> None:
    events = Events()
    holder = Holder()
    host = UvicornHost(holder)
    settings = RpcSettings(
        host=f"http://127.0.0.1:{host.port}/_anycable", key=KEY, disconnect_rate=1
    )
    holder.app = make_app(events).asgi()
    await trio.to_thread.run_sync(host.start)
    try:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(
                lambda task_status: Server(config(rpc=settings)).run(task_status=task_status)
            )
            clients = []
            for user in ("u1", "u2", "u3"):
                ws = await stack_ws(nursery, server, user)
                clients.append(ws)
            server.shutdown()  # closes the sessions; at 1/s three calls would take 2 s more
        for ws in clients:
            await ws._stream.aclose()
        for user in ("u1", "u2", "u3"):
            assert ("disconnect", {"user": user}) in events
    finally:
        await trio.to_thread.run_sync(host.stop)


async def stack_ws(nursery: trio.Nursery, server: Server, user: str) -> Any:
    from trio_websocket import connect_websocket_url

    url = f"ws://127.0.0.1:{server.main_port}/cable?user={user}"
    ws = await connect_websocket_url(nursery, url, subprotocols=["actioncable-v1-json"])
    assert (await recv_json(ws))["type"] == "welcome"
    return ws
