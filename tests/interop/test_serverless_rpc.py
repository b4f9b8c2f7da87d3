"""Cableway calling an application written with ``@anycable/serverless-js`` (the official JS
RPC SDK, 0.1.0 with the import workaround of rpc.md §7.2) over HTTP RPC, driven by the stock
``@rails/actioncable`` consumer: connect accepted and rejected, subscribe accepted and
rejected, an action with a transmission and a room broadcast, stop streams, Disconnect with
the identifiers."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import (
    INTEROP_DIR,
    CablewayServer,
    _attach_section,
    _cableway_command,
    _free_port,
    _LineCollector,
)

if TYPE_CHECKING:
    from .conftest import NodeClient

    ClientFactory = Callable[..., NodeClient]

pytestmark = pytest.mark.interop

CHAT = {"channel": "chat", "room": "42"}
WAIT = 10.0


class JsApp:
    def __init__(self, node: str, options: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [node, str(INTEROP_DIR / "serverless_app.mjs"), json.dumps(options)],
            cwd=INTEROP_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        assert self.process.stdout is not None
        self.output = _LineCollector(self.process.stdout)
        ready = self.wait("ready")
        self.port = int(ready["port"])

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.output.text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def find(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    def wait(self, event: str) -> dict[str, Any]:
        self.output.wait_until(lambda: bool(self.find(event)), time.monotonic() + WAIT)
        found = self.find(event)
        assert found, f"no {event!r} from the JS app:\n{self.output.text()}"
        return found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.output.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def js_stack(request: pytest.FixtureRequest, node_executable: str) -> Iterator[tuple[JsApp, int]]:
    port = _free_port()
    key, broadcast_key = secrets.token_hex(16), secrets.token_hex(16)
    app = JsApp(
        node_executable,
        {
            "key": key,
            "broadcast_url": f"http://127.0.0.1:{port}/_broadcast",
            "broadcast_key": broadcast_key,
        },
    )
    _attach_section(request, "serverless-js app", app.output.text)
    argv = [
        *_cableway_command(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--rpc_host", f"http://127.0.0.1:{app.port}/api/anycable",
        "--http_rpc_secret", key,
        "--broadcast_key", broadcast_key,
        "--http_broadcast_port", str(port),
    ]  # fmt: skip
    server = CablewayServer(port, "", "", broadcast_key, argv)
    _attach_section(request, f"cableway --rpc_host (port {port})", server.describe)
    try:
        server.start()
        yield app, port
    finally:
        server.stop()
        app.stop()


def test_serverless_js_app_through_cableway(
    js_stack: tuple[JsApp, int], rails_client: ClientFactory
) -> None:
    app, port = js_stack
    client = rails_client(
        url=f"ws://127.0.0.1:{port}/cable?user=alice",
        subscriptions=[
            {"name": "chat", "params": CHAT},
            {"name": "roomless", "params": {"channel": "chat"}},
        ],
    )
    client.wait_for("connected", name="chat")
    client.wait_for("rejected", name="roomless")
    assert app.wait("connect")["headers"]["REMOTE_ADDR"] == "127.0.0.1"

    client.command("perform", name="chat", action="speak", data={"message": "hi"})
    client.wait_for("received", name="chat", message={"echo": "hi"})
    client.wait_for("received", name="chat", message={"message": "hi", "from": "alice"})

    client.command("perform", name="chat", action="leave")
    client.command("perform", name="chat", action="speak", data={"message": "after"})
    client.wait_for("received", name="chat", message={"echo": "after"})
    assert not client.find("received", name="chat", message={"message": "after", "from": "alice"})

    assert client.disconnect() == 0
    assert app.wait("disconnect")["identifiers"] == {"user": "alice"}
    assert app.find("unsubscribed")[0]["params"] == {"room": "42"}
    assert not app.find("error")


def test_serverless_js_rejects_a_connection(
    js_stack: tuple[JsApp, int], rails_client: ClientFactory
) -> None:
    _app, port = js_stack
    client = rails_client(url=f"ws://127.0.0.1:{port}/cable", control="none")
    assert client.wait_for("socket_close")["code"] == 1000
    frame = client.wait_frame(lambda data: data.get("type") == "disconnect")
    assert frame["data"]["reason"] == "unauthorized"
