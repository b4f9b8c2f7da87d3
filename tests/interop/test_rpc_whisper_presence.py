"""Whisper and presence on an application channel written with ``cableway.channels``
(``whispers_to``, ``join_presence``, ``leave_presence``), served under uvicorn, with
``cableway --rpc_host --broker=memory`` in front of it, driven by the real ``@anycable/web``
client (``channel.whisper``, ``channel.presence.join/leave/info``, ``presence`` events)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from .conftest import REPO_ROOT, CablewayServer, _attach_section, _cableway_command, _free_port
from .test_examples import AppProcess

if TYPE_CHECKING:
    from .conftest import NodeClient

    ClientFactory = Callable[..., NodeClient]

pytestmark = pytest.mark.interop
pytest.importorskip("uvicorn")

# The application in its own process: uvicorn on a port the OS picks (printed).
APP = """
import json, socket
import uvicorn
from cableway.channels import Application, Channel, Connection

class UserConnection(Connection):
    def connect(self):
        user = self.params.get("user")
        if not user:
            self.reject()
        self.identified_by(user=user)

class RoomChannel(Channel):
    channel_name = "room"

    def subscribed(self):
        stream = "room:" + str(self.params["room"])
        self.whispers_to(stream)
        user = self.identifiers["user"]
        self.join_presence(stream, user, {"name": user.title()})

    def away(self):
        self.leave_presence()

app = Application(UserConnection, [RoomChannel]).asgi()
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(json.dumps({"event": "listening", "port": sock.getsockname()[1]}), flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
"""

ROOM = {"name": "room", "channel": "room", "params": {"room": "42"}}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[CablewayServer]:
    secret = secrets.token_hex(16)
    app = AppProcess(
        [sys.executable, "-c", APP],
        cwd=REPO_ROOT,
        env={**os.environ, "ANYCABLE_SECRET": secret},
        server=True,
    )
    _attach_section(request, "channels app (uvicorn)", app.describe)
    cable: CablewayServer | None = None
    try:
        app_port = app.wait_for("listening")["port"]
        port = _free_port()
        argv = [
            *_cableway_command(),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--secret", secret,
            "--broker", "memory",
            "--rpc_host", f"http://127.0.0.1:{app_port}/_anycable",
        ]  # fmt: skip
        cable = CablewayServer(port, secret, "", "", argv)
        _attach_section(request, f"cableway --rpc_host (port {port})", cable.describe)
        cable.start()
        yield cable
    finally:
        if cable is not None:
            cable.stop()
        app.close()


def test_anycable_web_whispers_and_sees_presence_on_a_python_channel(
    server: CablewayServer, anycable_client: ClientFactory
) -> None:
    def client(user: str) -> NodeClient:
        return anycable_client(url=f"{server.ws_url()}?user={user}", streams=[ROOM])

    alice = client("alice")
    alice.wait_for("channel_connect", name="room")
    # the app joins each client on subscribe (CommandResponse.presence): alice sees bob's
    # (her own join may reach the client before the confirmation is handled: not checked)
    bob = client("bob")
    bob.wait_for("channel_connect", name="room")
    alice.wait_for("presence", name="room", type="join", id="bob", info={"name": "Bob"})

    bob.command("whisper", name="room", data={"typing": "bob"})
    alice.wait_for("message", name="room", message={"typing": "bob"})

    alice.command("presence_info", name="room")
    state = alice.wait_for("presence_info", name="room")["state"]
    assert state == {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}

    # the app removes bob (leave_presence in an action: CommandResponse.presence)
    bob.command("perform", name="room", action="away")
    alice.wait_for("presence", name="room", type="leave", id="bob")
    # the client's own join and leave use the same presence set
    bob.command("join", name="room", id="bob", info={"name": "B"})
    alice.wait_for("presence", name="room", type="join", id="bob", info={"name": "B"})
    bob.command("leave", name="room")
    assert len(alice.wait_count("presence", 2, name="room", type="leave", id="bob")) == 2

    assert bob.disconnect() == 0
    # the sender never got its own whisper
    assert not bob.find("message", name="room", message={"typing": "bob"})
    assert alice.disconnect() == 0
    assert server.error_lines() == []
