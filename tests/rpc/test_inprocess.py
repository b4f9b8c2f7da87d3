"""Application channels in the ASGI app's own process (issue 18 item 4):
``CablewayApp(config, channels=Application(...))`` under uvicorn, the same chat app as the
HTTP RPC tests, no HTTP hop; a real WebSocket client."""

from __future__ import annotations

import json
from typing import Any

import trio
from trio_websocket import open_websocket_url

from cableway.asgi import CablewayApp
from cableway.config import Config
from cableway.integration import IntegrationSettings
from tests.asgi.host import UvicornHost

from .apphost import Events, Holder
from .chat import make_app

IDENT = '{"channel":"chat","room":"42"}'
KEY = "broadcast-key-in-process"


async def recv(ws: Any) -> dict[str, Any]:
    with trio.fail_after(5):
        while True:
            message = json.loads(await ws.get_message())
            if message.get("type") != "ping":
                return message  # type: ignore[no-any-return]


async def send(ws: Any, command: str, identifier: str = IDENT, **data: Any) -> None:
    message: dict[str, Any] = {"command": command, "identifier": identifier}
    if data:
        message["data"] = json.dumps(data)
    await ws.send_message(json.dumps(message))


async def test_channels_run_in_process_under_the_asgi_app() -> None:
    events = Events()
    holder = Holder()
    host = UvicornHost(holder)
    channels = make_app(
        events,
        settings=IntegrationSettings(
            secret="s",
            broadcast_key=KEY,
            http_broadcast_url=f"http://127.0.0.1:{host.port}/_broadcast",
        ),
    )
    holder.app = CablewayApp(Config(broadcast_key=KEY, broker="none"), channels=channels)
    await trio.to_thread.run_sync(host.start)
    try:
        url = f"ws://127.0.0.1:{host.port}/cable"
        async with open_websocket_url(url, subprotocols=["actioncable-v1-json"]) as ws:
            message = await recv(ws)
            assert message["type"] == "disconnect"  # no ?user=: the app rejects
            # trio-websocket keeps its TCP stream after a server-initiated close
            await ws._stream.aclose()
        async with open_websocket_url(
            url + "?user=alice", subprotocols=["actioncable-v1-json"]
        ) as ws:
            assert (await recv(ws))["type"] == "welcome"
            await send(ws, "subscribe")
            assert await recv(ws) == {"identifier": IDENT, "type": "confirm_subscription"}
            await send(ws, "message", action="speak", message="hi")
            got = [await recv(ws), await recv(ws)]
            assert {"identifier": IDENT, "message": {"echo": "hi"}} in got
            assert {"identifier": IDENT, "message": {"message": "hi", "from": "alice"}} in got
            await send(ws, "message", action="remember", message="kept")
        await events.wait_for(("disconnect", {"user": "alice"}))
        assert ("unsubscribed", {"room": "42"}, {"last": "kept"}) in events
    finally:
        await trio.to_thread.run_sync(host.stop)
