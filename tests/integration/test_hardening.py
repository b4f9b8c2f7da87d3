"""Operator-facing protections: origins, connection cap, dead peers, failures, shutdown."""

from __future__ import annotations

import json

import pytest
import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import Request, TextMessage

from cableway.protocol.connection import CableConnection

from .helpers import cable, close_code, config, http, recv_json, running, sse, welcome


async def test_websocket_from_a_foreign_origin_is_refused_with_403() -> None:
    cfg = config(allowed_origins=("https://app.example", "*.trusted.example"))
    async with running(cfg) as server:
        # (raw requests: trio-websocket leaks its socket when an upgrade is refused)
        upgrade = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]
        for origin in ["https://evil.example", "https://app.example.evil.com", "null"]:
            refused = await http(
                server.main_port, "GET", "/cable", headers=[*upgrade, ("Origin", origin)]
            )
            assert refused.status == 403
        assert (await http(server.main_port, "GET", "/cable", headers=upgrade)).status == 403
        two = [*upgrade, ("Origin", "https://app.example"), ("Origin", "https://evil.example")]
        assert (await http(server.main_port, "GET", "/cable", headers=two)).status == 400
        for origin in ["https://app.example", "https://a.trusted.example"]:
            async with cable(server, headers=[("Origin", origin)]) as ws:
                await welcome(ws)


async def test_sse_cors_echoes_allowed_origins_with_credentials_only() -> None:
    cfg = config(broker="memory", public_streams=True, allowed_origins=("https://app.example",))
    async with running(cfg) as server:
        async with sse(
            server, "/events?stream=s", headers=[("Origin", "https://app.example")]
        ) as ok:
            assert ok.headers["access-control-allow-origin"] == "https://app.example"
            assert ok.headers["access-control-allow-credentials"] == "true"
            assert ok.headers["vary"] == "Origin"
        async with sse(
            server, "/events?stream=s", headers=[("Origin", "https://evil.example")]
        ) as bad:
            assert "access-control-allow-origin" not in bad.headers
            assert "access-control-allow-credentials" not in bad.headers
        preflight = await http(
            server.main_port, "OPTIONS", "/events", headers=[("Origin", "https://evil.example")]
        )
        assert "access-control-allow-origin" not in preflight.headers
    async with (
        running(config(public_streams=True)) as server,
        sse(server, "/events?stream=s", headers=[("Origin", "https://x.example")]) as any_origin,
    ):
        assert any_origin.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in any_origin.headers


async def test_max_conn_makes_extra_connections_wait_not_fail() -> None:
    async with running(config(max_conn=2)) as server, cable(server) as a, cable(server) as b:
        await welcome(a)
        await welcome(b)
        waiting = trio.Event()
        got_in = trio.Event()

        async def third() -> None:
            waiting.set()
            async with cable(server) as c:
                await welcome(c)
                got_in.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(third)
            await waiting.wait()
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert not got_in.is_set()  # queued in the backlog
            await a.aclose()
            with trio.fail_after(5):
                await got_in.wait()


async def test_native_pings_keep_answering_clients_and_drop_silent_ones() -> None:
    cfg = config(enable_native_pings=True, pong_timeout=1.0)
    async with running(cfg) as server:
        # trio-websocket answers WebSocket PING frames by itself, as browsers do (while
        # its reader runs: the test keeps reading so that its queue never fills up)
        async with cable(server, query="?pi=1") as ws:
            await welcome(ws)
            with trio.fail_after(5):
                for _ in range(3):
                    assert json.loads(await ws.get_message())["type"] == "ping"
        # a peer that answers nothing (a vanished browser) is dropped after the timeout
        async with await trio.open_tcp_stream("127.0.0.1", server.main_port) as raw:
            client = WSConnection(ConnectionType.CLIENT)
            await raw.send_all(client.send(Request(host="x", target="/cable?pi=1")))
            messages: list[dict[str, object]] = []
            with trio.fail_after(10):
                while not any(m.get("type") == "disconnect" for m in messages):
                    client.receive_data(await raw.receive_some(65536))
                    for event in client.events():
                        if isinstance(event, TextMessage):
                            messages.append(json.loads(event.data))
            assert messages[-1] == {"type": "disconnect", "reason": "no_pong", "reconnect": True}


async def test_an_unexpected_error_closes_only_that_connection_with_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = CableConnection.receive_message

    def explode(self: CableConnection, message: str | bytes, *, now: float) -> None:
        if message == '{"command":"boom"}':
            raise RuntimeError("a bug")
        original(self, message, now=now)

    monkeypatch.setattr(CableConnection, "receive_message", explode)
    async with running() as server, cable(server) as victim, cable(server) as bystander:
        await welcome(victim)
        await welcome(bystander)
        await victim.send_message('{"command":"boom"}')
        assert await close_code(victim) == 1011
        await bystander.send_message('{"command":"ping"}')
        assert await recv_json(bystander) == {"type": "pong"}
