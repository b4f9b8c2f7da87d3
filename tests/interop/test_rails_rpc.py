"""The stock ``@rails/actioncable`` consumer (Node) through a real ``cableway`` process calling
an application over AnyCable's HTTP RPC: the chat app of tests/rpc/chat.py written with
``cableway.channels``, served by uvicorn on 127.0.0.1 (rpc.md §4)."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import trio

from cableway.integration import IntegrationSettings
from tests.asgi.host import UvicornHost
from tests.rpc.apphost import Events, Holder
from tests.rpc.chat import KEY, make_app

from .conftest import CablewayServer, _attach_section, _cableway_command, _free_port

if TYPE_CHECKING:
    from .conftest import NodeClient

    ClientFactory = Callable[..., NodeClient]

pytestmark = pytest.mark.interop

CHAT = {"channel": "chat", "room": "42"}


class ChatStack:
    def __init__(self, server: CablewayServer, events: Events) -> None:
        self.server = server
        self.events = events

    def wait(self, item: Any) -> None:
        trio.run(self.events.wait_for, item)


@pytest.fixture
def chat_stack(request: pytest.FixtureRequest) -> Iterator[ChatStack]:
    """uvicorn serving the chat app, and ``cableway --rpc_host`` in front of it."""
    events = Events()
    holder = Holder()
    host = UvicornHost(holder)
    port = _free_port()
    broadcast_key = secrets.token_hex(16)
    holder.app = make_app(
        events,
        settings=IntegrationSettings(
            secret="s",
            broadcast_key=broadcast_key,
            http_broadcast_url=f"http://127.0.0.1:{port}/_broadcast",
        ),
    ).asgi()
    host.start()
    argv = [
        *_cableway_command(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--rpc_host", f"http://127.0.0.1:{host.port}/_anycable",
        "--http_rpc_secret", KEY,
        "--broadcast_key", broadcast_key,
        "--http_broadcast_port", str(port),
    ]  # fmt: skip
    server = CablewayServer(port, "", "", broadcast_key, argv)
    _attach_section(request, f"cableway --rpc_host (port {port})", server.describe)
    try:
        server.start()
        yield ChatStack(server, events)
    finally:
        server.stop()
        host.stop()


def test_actions_transmissions_broadcasts_stop_streams_and_disconnect(
    chat_stack: ChatStack, rails_client: ClientFactory
) -> None:
    url = f"ws://127.0.0.1:{chat_stack.server.port}/cable?user=alice"
    client = rails_client(url=url, subscriptions=[{"name": "chat", "params": CHAT}])
    assert client.wait_for("connected", name="chat")["reconnected"] is False
    welcome = client.find("frame")[0]["data"]
    assert welcome["type"] == "welcome"  # the app's welcome: Cableway adds none

    client.command("perform", name="chat", action="speak", data={"message": "hi"})
    client.wait_for("received", name="chat", message={"echo": "hi"})
    client.wait_for("received", name="chat", message={"message": "hi", "from": "alice"})

    client.command("perform", name="chat", action="remember", data={"message": "kept"})
    client.command("perform", name="chat", action="leave")
    client.command("perform", name="chat", action="speak", data={"message": "after"})
    client.wait_for("received", name="chat", message={"echo": "after"})
    assert not client.find("received", name="chat", message={"message": "after", "from": "alice"})

    assert client.disconnect() == 0
    chat_stack.wait(("disconnect", {"user": "alice"}))
    assert ("unsubscribed", {"room": "42"}, {"last": "kept"}) in chat_stack.events
    assert chat_stack.server.error_lines() == []


def test_rejected_connection_and_rejected_subscription(
    chat_stack: ChatStack, rails_client: ClientFactory
) -> None:
    anonymous = rails_client(
        url=f"ws://127.0.0.1:{chat_stack.server.port}/cable",
        subscriptions=[{"name": "chat", "params": CHAT}],
        control="none",
    )
    closed = anonymous.wait_for("socket_close")
    assert closed["code"] == 1000
    frame = anonymous.wait_frame(lambda data: data.get("type") == "disconnect")
    assert frame["data"] == {"type": "disconnect", "reason": "unauthorized", "reconnect": False}
    assert not anonymous.find("connected", name="chat")

    client = rails_client(
        url=f"ws://127.0.0.1:{chat_stack.server.port}/cable?user=bob",
        subscriptions=[{"name": "roomless", "params": {"channel": "chat"}}],
    )
    client.wait_for("rejected", name="roomless")
    assert client.disconnect() == 0


def test_an_event_source_on_an_application_channel(
    chat_stack: ChatStack, rails_client: ClientFactory, sse_client: ClientFactory
) -> None:
    """A real EventSource subscribes to the app channel (Connect and Command made before
    the stream opens) and gets what an action broadcasts to the room."""
    identifier = urllib.parse.quote(json.dumps(CHAT))
    port = chat_stack.server.port
    source = sse_client(url=f"http://127.0.0.1:{port}/events?user=bob&identifier={identifier}")
    source.wait_for("open")  # the 200: Connect accepted bob, the subscribe was confirmed

    speaker = rails_client(
        url=f"ws://127.0.0.1:{port}/cable?user=alice",
        subscriptions=[{"name": "chat", "params": CHAT}],
    )
    speaker.wait_for("connected", name="chat")
    speaker.command("perform", name="chat", action="speak", data={"message": "hi"})
    message = source.wait_for("message")
    assert json.loads(message["data"]) == {"message": "hi", "from": "alice"}

    refused = sse_client(url=f"http://127.0.0.1:{port}/events?identifier={identifier}")
    assert refused.wait_for("error")["code"] == 401  # the application rejected it
    assert speaker.disconnect() == 0
