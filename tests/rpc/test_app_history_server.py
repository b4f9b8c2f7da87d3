"""History and session restore on a Python application channel that reads two streams,
end to end with real WebSocket clients on the extended protocol: over HTTP RPC through a
Cableway server, and in-process under ``CablewayApp`` (both drivers). The client asks
for history with its subscribe (as ``@anycable/web`` does), loses its socket, messages
are broadcast while it is away, and the restored session gets exactly those, once, per
stream in order, without a Connect call, then the live ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from cableway.asgi import CablewayApp
from cableway.channels import Application, Channel, Connection
from cableway.config import Config
from cableway.rpc.settings import RpcSettings
from tests.asgi.host import UvicornHost
from tests.integration.helpers import BROADCAST_KEY, config, http, running

from .apphost import Events, Holder
from .chat import KEY

IDENT = '{"channel":"feed","room":"7"}'
EXT = ["actioncable-v1-ext-json"]
STREAMS = ("feed:7", "user:alice")


class UserConnection(Connection):
    def connect(self) -> None:
        user = self.params.get("user")
        if not user:
            self.reject()
        CONNECTS.append(user)
        self.identified_by(user=user)


class FeedChannel(Channel):
    """The room's feed and the user's own notifications, under one subscription."""

    channel_name = "feed"

    def subscribed(self) -> None:
        self.stream_from(f"feed:{self.params['room']}")
        self.stream_from(f"user:{self.identifiers['user']}")


CONNECTS = Events()


def make_app() -> Application:
    return Application(UserConnection, [FeedChannel])


@dataclass
class Target:
    """Where clients connect and broadcasts go."""

    port: int
    broadcast_port: int
    broadcast_path: str

    def client(self, query: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        url = f"ws://127.0.0.1:{self.port}/cable?{query}"
        return open_websocket_url(url, subprotocols=EXT)

    async def publish(self, stream: str, data: str) -> None:
        body = json.dumps({"stream": stream, "data": json.dumps(data)}).encode()
        headers = [("authorization", f"Bearer {BROADCAST_KEY}")]
        headers.append(("content-type", "application/json"))
        response = await http(self.broadcast_port, "POST", self.broadcast_path, body, headers)
        assert response.status < 300, response


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(5):
        while True:
            message = json.loads(await ws.get_message())
            if message.get("type") != "ping":
                return message  # type: ignore[no-any-return]


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(json.dumps({"identifier": IDENT, **message}))


def position(message: dict[str, Any]) -> tuple[str, int, object]:
    assert message["identifier"] == IDENT, message
    return message["stream_id"], message["offset"], message["message"]


async def scenario(target: Target, closed: Callable[[], Awaitable[None]]) -> None:
    CONNECTS.clear()
    async with target.client("user=alice") as ws:
        welcome = await recv(ws)
        sid = welcome["sid"]
        await send(ws, command="subscribe", history={"since": 1})
        assert (await recv(ws))["type"] == "confirm_subscription"
        assert await recv(ws) == {"type": "confirm_history", "identifier": IDENT}
        await target.publish("feed:7", "f1")
        await target.publish("user:alice", "u1")
        first = [await recv(ws), await recv(ws)]
        assert [position(m) for m in first] == [("feed:7", 1, "f1"), ("user:alice", 1, "u1")]
        epoch = first[0]["epoch"]
    await closed()  # the server saw the socket go
    for stream, data in [("feed:7", "f2"), ("user:alice", "u2"), ("feed:7", "f3")]:
        await target.publish(stream, data)  # while the client is away
    async with target.client(f"user=alice&sid={sid}") as ws:
        welcome = await recv(ws)
        assert welcome["restored"] is True
        assert welcome["restored_ids"] == [IDENT]
        streams = {s: {"epoch": epoch, "offset": 1} for s in STREAMS}
        await send(ws, command="history", history={"streams": streams})
        replay = [position(await recv(ws)) for _ in range(3)]
        assert replay == [("feed:7", 2, "f2"), ("feed:7", 3, "f3"), ("user:alice", 2, "u2")]
        assert await recv(ws) == {"type": "confirm_history", "identifier": IDENT}
        await target.publish("user:alice", "u3")
        assert position(await recv(ws)) == ("user:alice", 3, "u3")  # nothing twice between
        # an unknown epoch: the whole request is rejected
        await send(
            ws, command="history", history={"streams": {"feed:7": {"epoch": "x", "offset": 0}}}
        )
        assert await recv(ws) == {"type": "reject_history", "identifier": IDENT}
    assert list(CONNECTS) == ["alice"]  # the restored session made no Connect call


@asynccontextmanager
async def hosted(app: Any) -> AsyncIterator[UvicornHost]:
    holder = Holder()
    host = UvicornHost(holder)
    holder.app = app
    await trio.to_thread.run_sync(host.start)
    try:
        yield host
    finally:
        await trio.to_thread.run_sync(host.stop)


async def test_history_and_restore_on_an_app_channel_over_http_rpc() -> None:
    async with hosted(make_app().asgi()) as host:
        settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/_anycable", key=KEY)
        async with running(config(rpc=settings, broker="memory")) as server:
            target = Target(
                server.main_port, server.broadcast_port, server.config.http_broadcast_path
            )

            async def closed() -> None:
                with trio.fail_after(5):
                    for session in list(server.node.sessions):
                        await session.wait_closed()

            await scenario(target, closed)


async def test_history_and_restore_on_an_app_channel_in_process() -> None:
    cfg = Config(broker="memory", broadcast_key=BROADCAST_KEY)
    app = CablewayApp(cfg, channels=make_app())
    async with hosted(app) as host:
        target = Target(host.port, host.port, cfg.http_broadcast_path)

        async def closed() -> None:
            pass  # the snapshot is restorable whether or not the app saw the close yet

        await scenario(target, closed)
