"""CablewayApp driven by hand-made ASGI messages on a plain asyncio loop (no server, no trio).

What a real socket cannot show deterministically: a client that does not read (bounded outbox
-> ``too_slow``; write deadline), graceful shutdown, mount prefixes, and that the asyncio path
never imports trio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cableway.asgi import CablewayApp
from cableway.config import Config
from cableway.ops.logs import WARNINGS_PER_WINDOW
from cableway.protocol.connection import CableConnection

from ..integration.helpers import BROADCAST_KEY, config, turbo_identifier

WAIT = 5.0


class FakeClient:
    """One ASGI connection: a queue of incoming messages and the list of what the app sent."""

    def __init__(self, app: CablewayApp, scope: dict[str, Any]) -> None:
        self.app = app
        self.scope = scope
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()  # websocket.send / body chunks wait for it
        self.gate.set()
        self.blocked = asyncio.Event()  # set when a send() waits for the gate
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] in ("websocket.send", "http.response.body"):
            if not self.gate.is_set():
                self.blocked.set()
            await self.gate.wait()
        self.sent.append(dict(message))
        self._changed.set()

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.app(self.scope, self.receive, self.send))  # type: ignore[arg-type]

    async def wait_until(self, check: Callable[[], bool]) -> None:
        """Wait (bounded) until ``check()`` holds; it is checked whenever the app sends."""
        async with asyncio.timeout(WAIT):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]

    def closes(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == "websocket.close"]

    async def finished(self) -> None:
        assert self.task is not None
        async with asyncio.timeout(WAIT):
            await self.task


def ws_scope(path: str = "/cable", *, root_path: str = "", query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": path,
        "root_path": root_path,
        "query_string": query,
        "headers": [(b"host", b"example")],
        "subprotocols": ["actioncable-v1-json"],
    }


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def subscribed(app: CablewayApp, stream: str) -> FakeClient:
    """A WebSocket client of ``app`` subscribed to the signed Turbo stream ``stream``
    (its welcome and confirmation received)."""
    client = FakeClient(app, ws_scope())
    client.incoming.put_nowait({"type": "websocket.connect"})
    client.start()
    subscribe = {"command": "subscribe", "identifier": turbo_identifier(stream)}
    client.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(subscribe)})
    await client.wait_until(lambda: len(client.texts()) == 2)  # welcome, confirmation
    return client


def test_a_client_that_does_not_read_is_disconnected_as_too_slow() -> None:
    async def scenario() -> None:
        app = CablewayApp(config(ws_max_pending_size=1000, ws_write_timeout=5.0))
        client = await subscribed(app, "room")
        client.gate.clear()  # from now on the client reads nothing
        for n in range(20):
            await app.broadcast("room", json.dumps("x" * 100 + str(n)))
        client.gate.set()
        await client.finished()
        texts = client.texts()
        assert [t["type"] for t in texts[:2]] == ["welcome", "confirm_subscription"]
        assert texts[-1] == {"type": "disconnect", "reason": "too_slow", "reconnect": True}
        assert len(texts) < 20  # what did not fit was dropped, not queued without bound
        assert client.closes() == [{"type": "websocket.close", "code": 1000, "reason": ""}]
        assert not app.sessions
        assert len(app.hub) == 0
        await app.aclose()

    run(scenario)


def test_a_send_that_never_completes_ends_the_session_after_the_write_deadline() -> None:
    async def scenario() -> None:
        app = CablewayApp(config(ws_write_timeout=0.2))
        client = FakeClient(app, ws_scope())
        client.gate.clear()  # never opened
        client.incoming.put_nowait({"type": "websocket.connect"})
        client.start()
        await client.finished()
        assert [m["type"] for m in client.sent] == ["websocket.accept"]
        assert not app.sessions
        await app.aclose()

    run(scenario)


def test_aclose_tells_every_client_server_restart_and_closes_1001() -> None:
    async def scenario() -> None:
        app = CablewayApp(config(broker="memory"))
        client = FakeClient(app, ws_scope())
        client.incoming.put_nowait({"type": "websocket.connect"})
        client.start()
        await client.wait_until(lambda: bool(client.texts()))
        await app.aclose(grace=WAIT)
        await client.finished()
        assert client.texts()[-1] == {
            "type": "disconnect",
            "reason": "server_restart",
            "reconnect": True,
        }
        assert client.closes() == [
            {"type": "websocket.close", "code": 1001, "reason": "Server restart"}
        ]

    run(scenario)


def test_an_unexpected_error_closes_only_that_session_with_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        app = CablewayApp(config())
        broken, healthy = FakeClient(app, ws_scope()), FakeClient(app, ws_scope())
        for client in (broken, healthy):
            client.incoming.put_nowait({"type": "websocket.connect"})
            client.start()
            await client.wait_until(lambda c=client: bool(c.texts()))  # type: ignore[misc]
        original = CableConnection.receive_message

        def explode(self: CableConnection, message: str | bytes, *, now: float) -> None:
            if message == "boom":
                raise RuntimeError("a bug")
            original(self, message, now=now)

        monkeypatch.setattr(CableConnection, "receive_message", explode)
        broken.incoming.put_nowait({"type": "websocket.receive", "text": "boom"})
        await broken.finished()
        assert broken.closes() == [
            {"type": "websocket.close", "code": 1011, "reason": "Internal Error"}
        ]
        healthy.incoming.put_nowait({"type": "websocket.receive", "text": '{"command":"ping"}'})
        await healthy.wait_until(lambda: healthy.texts()[-1] == {"type": "pong"})
        assert len(app.sessions) == 1
        await app.aclose()

    run(scenario)


@pytest.mark.parametrize(
    ("root_path", "path", "cfg", "accepted"),
    [
        ("/anycable", "/anycable/cable", Config(), True),
        ("/anycable", "/anycable/cable/", Config(), True),
        ("/anycable", "/cable", Config(), True),  # a server that does not prefix path
        ("/cable", "/cable/", Config(path=("/",)), True),
        ("/cable", "/cable", Config(path=("/",)), True),
        ("/cable", "/cable/", Config(), False),
        ("", "/other", Config(), False),
    ],
)
def test_websocket_paths_are_matched_below_the_mount_point(
    root_path: str, path: str, cfg: Config, accepted: bool
) -> None:
    async def scenario() -> None:
        app = CablewayApp(cfg)
        client = FakeClient(app, ws_scope(path, root_path=root_path))
        client.incoming.put_nowait({"type": "websocket.connect"})
        client.start()
        if accepted:
            await client.wait_until(lambda: bool(client.texts()))
            assert client.texts()[0]["type"] == "welcome"
            client.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await client.finished()
        assert (client.sent[0]["type"] == "websocket.accept") is accepted
        await app.aclose()

    run(scenario)


def test_lifespan_starts_and_stops_the_broker_sweeper() -> None:
    async def scenario() -> None:
        app = CablewayApp(Config())
        client = FakeClient(app, {"type": "lifespan"})
        client.incoming.put_nowait({"type": "lifespan.startup"})
        client.start()
        await client.wait_until(lambda: len(client.sent) == 1)
        assert app._sweeper is not None
        assert not app._sweeper.done()
        client.incoming.put_nowait({"type": "lifespan.shutdown"})
        await client.finished()
        assert [m["type"] for m in client.sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert app._sweeper is None

    run(scenario)


def test_the_asgi_module_imports_no_trio_and_no_transport() -> None:
    code = (
        "import sys, cableway.asgi; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('trio', 'trio_websocket', 'h11', "
        "'wsproto') or m.startswith('cableway.transport')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"broker": "redis"}, "--broker=redis"),
        ({"pubsub": "redis"}, "--pubsub=redis"),
        ({"broadcast_adapters": ("http", "redisx")}, "redis/redisx"),
    ],
)
def test_redis_settings_are_refused_not_ignored(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        CablewayApp(config(**changes))


def test_a_flood_of_invalid_broadcasts_is_answered_400_and_logged_a_few_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        app = CablewayApp(config(), http_broadcast=True)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/_broadcast",
            "headers": [(b"authorization", f"Bearer {BROADCAST_KEY}".encode())],
        }
        caplog.set_level(logging.WARNING, logger="cableway")
        statuses = []
        for _ in range(50):
            client = FakeClient(app, dict(scope))
            client.incoming.put_nowait({"type": "http.request", "body": b"{not json"})
            client.start()
            await client.finished()
            statuses.append(client.sent[0]["status"])
        assert statuses == [400] * 50
        lines = [r.getMessage() for r in caplog.records if r.name == "cableway.asgi"]
        invalid = [line for line in lines if line.startswith("invalid broadcast")]
        assert len(invalid) == WARNINGS_PER_WINDOW  # as the server: a few lines per window
        assert len(lines) == WARNINGS_PER_WINDOW + 1
        assert "counted, not logged" in lines[-1]
        assert app.metrics.value("failed_broadcast_msg_total") == 50

    run(scenario)


def test_what_waits_behind_a_blocked_send_counts_against_the_bound_and_is_dropped() -> None:
    async def scenario() -> None:
        # each message is about 350 bytes on the wire (the signed identifier is long)
        app = CablewayApp(config(ws_max_pending_size=3000, ws_write_timeout=5.0))
        client = await subscribed(app, "room")
        client.gate.clear()  # the next send() blocks: the client reads nothing
        for n in range(5):  # under the bound
            await app.broadcast("room", json.dumps(f"{n:03}" + "x" * 100))
        async with asyncio.timeout(WAIT):
            await client.blocked.wait()  # the writer handed the first one to send()
        for n in range(5, 20):  # with the ones waiting behind it, past the bound: too slow
            await app.broadcast("room", json.dumps(f"{n:03}" + "x" * 100))
        client.gate.set()
        await client.finished()
        texts = client.texts()
        # the message in flight is finished; what waited behind it was dropped, not sent
        assert [t.get("message", t.get("type"))[:3] for t in texts[2:]] == ["000", "dis"]
        assert texts[-1] == {"type": "disconnect", "reason": "too_slow", "reconnect": True}
        assert app.metrics.value("disconnected_slow_clients_total") == 1
        await app.aclose()

    run(scenario)
