"""Whisper and presence on a Python application channel (``Channel.whispers_to``,
``join_presence``, ``leave_presence``), end to end with real WebSocket clients: over
HTTP RPC through a Cableway server, and in-process under ``CablewayApp``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from cableway.asgi import CablewayApp
from cableway.channels import Application, Channel, Connection
from cableway.config import Config
from cableway.rpc import CommandMessage, Env, PresenceResponse, Status
from cableway.rpc.settings import RpcSettings
from tests.asgi.host import UvicornHost
from tests.integration.helpers import config, running

from .apphost import Holder
from .chat import KEY

IDENT = '{"channel":"room","room":"42"}'
EXT = ["actioncable-v1-ext-json"]


class UserConnection(Connection):
    def connect(self) -> None:
        user = self.params.get("user")
        if not user:
            self.reject()
        self.identified_by(user=user)


class RoomChannel(Channel):
    channel_name = "room"

    def subscribed(self) -> None:
        stream = f"room:{self.params['room']}"
        self.whispers_to(stream)
        user = self.identifiers["user"]
        if user != "watcher":
            self.join_presence(stream, user, {"name": user.title()})

    def away(self) -> None:
        self.leave_presence()


def make_app() -> Application:
    return Application(UserConnection, [RoomChannel])


async def test_the_sdk_answers_w_p_and_the_presence_join() -> None:
    app = make_app()
    request = CommandMessage(
        command="subscribe",
        identifier=IDENT,
        connection_identifiers='{"user":"alice"}',
        env=Env(url="http://localhost/cable"),
    )
    answer = await app.process(request)
    assert answer.status is Status.SUCCESS
    assert answer.streams == ["room:42"]
    assert answer.env.istate == {"$w": "room:42", "$p": "room:42"}
    assert answer.presence == PresenceResponse(type="join", id="alice", info='{"name":"Alice"}')
    leave = CommandMessage(
        command="message",
        identifier=IDENT,
        connection_identifiers='{"user":"alice"}',
        data='{"action":"away"}',
        env=Env(url="http://localhost/cable", istate=answer.env.istate),
    )
    answer = await app.process(leave)
    assert answer.presence == PresenceResponse(type="leave")
    assert answer.env.istate == {}  # unchanged keys are not echoed


def test_join_presence_wants_an_id() -> None:
    channel = RoomChannel(UserConnection(Env()), IDENT, {"room": "42"}, {})
    with pytest.raises(ValueError, match="presence id"):
        channel.join_presence("s", "")


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(5):
        while True:
            message = json.loads(await ws.get_message())
            if message.get("type") != "ping":
                return message  # type: ignore[no-any-return]


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(json.dumps({"identifier": IDENT, **message}))


Open = Callable[[str], Any]


async def scenario(open_client: Open) -> None:
    """alice and bob in room 42: presence joins, a whisper to the others only, the
    presence set, a leave from an action, and a leave on unsubscribe."""
    async with open_client("alice") as alice, open_client("bob") as bob:
        for ws in (alice, bob):
            assert (await recv(ws))["type"] == "welcome"
        await send(alice, command="subscribe")
        assert (await recv(alice))["type"] == "confirm_subscription"
        joined = await recv(alice)
        assert joined["type"] == "presence"
        assert joined["message"] == {"type": "join", "id": "alice", "info": {"name": "Alice"}}
        await send(bob, command="subscribe")
        assert (await recv(bob))["type"] == "confirm_subscription"
        assert (await recv(bob))["message"]["id"] == "bob"
        assert (await recv(alice))["message"] == {
            "type": "join",
            "id": "bob",
            "info": {"name": "Bob"},
        }
        # a whisper reaches the others, not the sender, and makes no call to the app
        await send(bob, command="whisper", data={"typing": "bob"})
        whisper = await recv(alice)
        assert whisper["message"] == {"typing": "bob"}
        assert whisper["identifier"] == IDENT
        await send(alice, command="presence")
        info = await recv(alice)
        assert info["type"] == "presence"
        records = {r["id"]: r["info"] for r in info["message"]["records"]}
        assert records == {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}
        # bob's own next message is the answer to his presence request: he got no whisper
        await send(bob, command="presence")
        assert (await recv(bob))["message"]["type"] == "info"
        # an action leaves (CommandResponse.presence), then unsubscribe leaves too
        await send(bob, command="message", data=json.dumps({"action": "away"}))
        assert (await recv(alice))["message"] == {"type": "leave", "id": "bob"}
        assert (await recv(bob))["message"] == {"type": "leave", "id": "bob"}
        # the client's own join (channel.presence.join) uses the same presence set
        await send(bob, command="join", presence={"id": "bob", "info": {"name": "B"}})
        assert (await recv(alice))["message"] == {
            "type": "join",
            "id": "bob",
            "info": {"name": "B"},
        }
        await send(bob, command="unsubscribe")
        assert (await recv(alice))["message"] == {"type": "leave", "id": "bob"}


@asynccontextmanager
async def over_http() -> AsyncIterator[Open]:
    holder = Holder()
    host = UvicornHost(holder)
    holder.app = make_app().asgi()
    settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/_anycable", key=KEY)
    await trio.to_thread.run_sync(host.start)
    try:
        async with running(config(rpc=settings, broker="memory")) as server:

            def open_client(user: str) -> Any:
                url = f"ws://127.0.0.1:{server.main_port}/cable?user={user}"
                return open_websocket_url(url, subprotocols=EXT)

            yield open_client
    finally:
        await trio.to_thread.run_sync(host.stop)


@asynccontextmanager
async def in_process() -> AsyncIterator[Open]:
    holder = Holder()
    host = UvicornHost(holder)
    holder.app = CablewayApp(Config(broker="memory"), channels=make_app())
    await trio.to_thread.run_sync(host.start)
    try:

        def open_client(user: str) -> Any:
            url = f"ws://127.0.0.1:{host.port}/cable?user={user}"
            return open_websocket_url(url, subprotocols=EXT)

        yield open_client
    finally:
        await trio.to_thread.run_sync(host.stop)


async def test_whisper_and_presence_over_http_rpc() -> None:
    async with over_http() as open_client:
        await scenario(open_client)


async def test_whisper_and_presence_in_process() -> None:
    async with in_process() as open_client:
        await scenario(open_client)


def test_the_new_helpers_are_not_actions_and_an_action_named_presence_still_works() -> None:
    assert RoomChannel.action_names() == frozenset({"away"})

    class Lobby(Channel):
        def presence(self) -> None:
            self.transmit("who")

    app = Application(UserConnection, [Lobby])
    request = CommandMessage(
        command="message",
        identifier='{"channel":"Lobby"}',
        connection_identifiers='{"user":"alice"}',
        data='{"action":"presence"}',
        env=Env(url="http://localhost/cable"),
    )
    answer = trio.run(app.process, request)
    assert answer.status is Status.SUCCESS
    assert answer.transmissions == ['{"identifier":"{\\"channel\\":\\"Lobby\\"}","message":"who"}']
