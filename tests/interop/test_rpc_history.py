"""History and session restore on an application channel written with ``cableway.channels``
that reads two streams (``stream_from`` twice), served under uvicorn, with
``cableway --rpc_host --broker=memory`` in front of it, driven by the real ``@anycable/web``
client (``anycable_client.mjs``, protocol ``actioncable-v1-ext-json``).

The client subscribes (its subscribe carries ``history.since``), loses its socket with no
close frame, messages are broadcast to both streams while it is away, it reconnects by
itself with ``?sid=``, the welcome restores the channel (no re-subscribe, no Connect call)
and the client asks for ``history`` with its position on each stream. A message published
between the restored welcome and the server seeing that ``history`` command is held, so
what the app's ``message`` callback sees is every message exactly once, per stream in
order. Client behaviour relied on: see ``test_anycable_reliable.py``'s docstring.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from cableway.auth.keys import derive_broadcast_key

from .conftest import REPO_ROOT, CablewayServer, _attach_section, _cableway_command, _free_port
from .test_examples import AppProcess

if TYPE_CHECKING:
    from .conftest import NodeClient, TcpProxy

    ClientFactory = Callable[..., NodeClient]
    ProxyFactory = Callable[[int], TcpProxy]

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
        print(json.dumps({"event": "connect", "user": user}), flush=True)
        self.identified_by(user=user)

class FeedChannel(Channel):
    channel_name = "feed"

    def subscribed(self):
        self.stream_from("feed:" + str(self.params["room"]))
        self.stream_from("user:" + self.identifiers["user"])

app = Application(UserConnection, [FeedChannel]).asgi()
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(json.dumps({"event": "listening", "port": sock.getsockname()[1]}), flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
"""

FEED = {"name": "feed", "channel": "feed", "params": {"room": "7"}}
RECONNECT = {"interval_ms": 150, "max_ms": 1000}
RECONNECT_TIMEOUT = 15.0


@pytest.fixture
def app_and_server(request: pytest.FixtureRequest) -> Iterator[tuple[AppProcess, CablewayServer]]:
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
        cable = CablewayServer(port, secret, "", derive_broadcast_key(secret), argv)
        _attach_section(request, f"cableway --rpc_host (port {port})", cable.describe)
        cable.start()
        yield app, cable
    finally:
        if cable is not None:
            cable.stop()
        app.close()


def test_anycable_web_restores_a_two_stream_app_channel_and_gets_what_it_missed_once(
    app_and_server: tuple[AppProcess, CablewayServer],
    tcp_proxy: ProxyFactory,
    anycable_client: ClientFactory,
) -> None:
    app, server = app_and_server
    proxy = tcp_proxy(server.port)
    client = anycable_client(
        url=f"ws://127.0.0.1:{proxy.port}/cable?user=alice", streams=[FEED], reconnect=RECONNECT
    )

    def broadcast(stream: str, text: str) -> None:
        assert server.broadcast(stream, json.dumps({"text": text}), timeout=10.0) == 201

    client.wait_for("channel_connect", name="feed")
    [subscribe] = [
        ev["data"] for ev in client.find("sent") if ev["data"].get("command") == "subscribe"
    ]
    assert "since" in subscribe["history"]  # @anycable/web asks with every subscribe
    client.wait_frame(lambda f: f.get("type") == "confirm_history")
    broadcast("feed:7", "f1")
    broadcast("user:alice", "u1")
    client.wait_for("message", name="feed", message={"text": "u1"})

    proxy.hold()
    client.command("kill_socket")  # no close frame: the client reconnects by itself
    client.wait_for("socket_close", socket=1)
    for stream, text in [("feed:7", "f2"), ("user:alice", "u2"), ("feed:7", "f3")]:
        broadcast(stream, text)  # while away

    proxy.hold_client_data()  # the handshake passes, what the client sends then waits
    proxy.restore()
    welcome = client.wait_frame(lambda f: f.get("type") == "welcome" and f.get("restored"))["data"]
    assert welcome["restored_ids"] == ['{"channel":"feed","room":"7"}']
    client.wait_event(
        lambda ev: ev.get("event") == "sent" and ev["data"].get("command") == "history",
        what="history command",
    )
    broadcast("user:alice", "u3")  # after the restore, before the server has seen `history`
    proxy.release_client_data()
    client.wait_for("info", name="feed", type="history_received", timeout=RECONNECT_TIMEOUT)
    broadcast("feed:7", "f4")
    client.wait_for("message", name="feed", message={"text": "f4"})
    assert client.disconnect() == 0

    seen = [ev["message"]["text"] for ev in client.find("message", name="feed")]
    # live, then the replay stream by stream (as AnyCable-Go replays), then live again
    assert seen == ["f1", "u1", "f2", "f3", "u2", "u3", "f4"], f"the app saw {seen}"
    [history] = [ev["data"] for ev in client.find("sent") if ev["data"].get("command") == "history"]
    assert set(history["history"]["streams"]) == {"feed:7", "user:alice"}
    # the restored session made no Connect call (the app prints one line per Connect)
    assert app.describe().count('"event": "connect"') == 1, app.describe()
    assert server.error_lines() == []
