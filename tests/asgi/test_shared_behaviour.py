"""One behavioural suite, run against both drivers of the sans-IO core (``serve`` fixture):
the trio server and :class:`cableway.asgi.CablewayApp` under uvicorn.

The scenarios follow tests/integration (same helpers, same assertions), so the two drivers are
held to one protocol surface: welcome and subprotocols, signed Turbo subscriptions, broadcasts
(HTTP and in-process), rejections, JWT outcomes, history and restore, SSE with Last-Event-ID.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import trio
import trio.testing

from cableway.auth.jwt import encode_token
from cableway.auth.signed_streams import sign_stream_name
from cableway.config import Config

from ..integration.helpers import (
    BROADCAST_KEY,
    JWT_KEY,
    TURBO_KEY,
    broadcast,
    cable,
    close_code,
    config,
    http,
    recv_json,
    sse,
    subscribe,
    turbo_identifier,
    welcome,
)
from .conftest import Running, Serve

HTML = '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'
EXT = ["actioncable-v1-ext-json"]
CHAT = json.dumps({"channel": "$pubsub", "stream_name": "chat"})
UPGRADE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


def reliable(**kw: object) -> Config:
    return config(broker="memory", public_streams=True, **kw)


async def test_welcome_and_subprotocol_selection(serve: Serve) -> None:
    async with serve() as server:
        async with cable(server) as ws:
            assert ws.subprotocol == "actioncable-v1-json"
            assert len(await welcome(ws)) == 21
        async with cable(server, subprotocols=EXT) as ws:
            assert ws.subprotocol == "actioncable-v1-ext-json"
        async with cable(server, subprotocols=["graphql-ws"]) as ws:
            assert ws.subprotocol is None
            await welcome(ws)
        async with cable(server, headers=[("X-Request-ID", "req-42")]) as ws:
            assert await welcome(ws) == "req-42"


async def test_signed_turbo_subscribe_then_http_and_in_process_broadcasts(serve: Serve) -> None:
    async with serve() as server, cable(server) as a, cable(server) as b:
        sid_a = await welcome(a)
        await welcome(b)
        identifier = turbo_identifier("chat/2023")
        for ws in (a, b):
            assert await subscribe(ws, identifier) == {
                "type": "confirm_subscription",
                "identifier": identifier,
            }
        response = await broadcast(server, {"stream": "chat/2023", "data": json.dumps(HTML)})
        assert response.status == 201
        for ws in (a, b):
            assert await recv_json(ws) == {"identifier": identifier, "message": HTML}
        batch = [
            {"stream": "chat/2023", "data": '{"n":1}'},
            {"stream": "elsewhere", "data": "x"},
            {"stream": "chat/2023", "data": "plain <b>text</b>", "meta": {"exclude_socket": sid_a}},
        ]
        assert (await broadcast(server, batch)).status == 201
        assert (await recv_json(a))["message"] == {"n": 1}
        assert (await recv_json(b))["message"] == {"n": 1}
        assert (await recv_json(b))["message"] == "plain <b>text</b>"
        await server.publish("chat/2023", json.dumps("in-process"))
        assert (await recv_json(a))["message"] == "in-process"  # a skipped the excluded one
        assert (await recv_json(b))["message"] == "in-process"


async def test_bad_signature_is_rejected_and_connection_stays_usable(serve: Serve) -> None:
    async with serve() as server, cable(server) as ws:
        await welcome(ws)
        bad = turbo_identifier("chat/2023", secret="not-the-key")
        assert await subscribe(ws, bad) == {"type": "reject_subscription", "identifier": bad}
        good = turbo_identifier("chat/2023")
        assert (await subscribe(ws, good))["type"] == "confirm_subscription"
        await ws.send_message(b'{"command":"ping"}')  # binary frames are read the same way
        assert await recv_json(ws) == {"type": "pong"}


async def test_jwt_outcomes(serve: Serve) -> None:
    good = encode_token({"user_id": 7}, JWT_KEY, exp=4_000_000_000)
    expired = encode_token({"user_id": 1}, JWT_KEY, exp=1_000_000)
    forged = encode_token({"user_id": 7}, "x" * 40, exp=4_000_000_000)
    async with serve(config(enforce_jwt=True)) as server:
        async with cable(server, query=f"?jid={good}") as ws:
            await welcome(ws)
        async with cable(server, headers=[("X-JID", good)]) as ws:
            await welcome(ws)
        async with cable(
            server, subprotocols=["actioncable-v1-json", f"anycable-token.{good}"]
        ) as ws:
            assert ws.subprotocol == "actioncable-v1-json"
            await welcome(ws)
        async with cable(server, query=f"?jid={expired}") as ws:
            assert await recv_json(ws) == {
                "type": "disconnect",
                "reason": "token_expired",
                "reconnect": False,
            }
            assert await close_code(ws) == 1000
        async with cable(server, query=f"?jid={forged}") as ws:
            assert (await recv_json(ws))["reason"] == "unauthorized"
        async with cable(server) as ws:  # no token while enforced
            assert (await recv_json(ws))["reason"] == "unauthorized"
            assert await close_code(ws) == 1000


async def test_pings_follow_pi_and_ptp(serve: Serve) -> None:
    async with serve() as server, cable(server, query="?pi=1&ptp=ms") as ws:
        await welcome(ws)
        with trio.fail_after(5):
            first = json.loads(await ws.get_message())
            second = json.loads(await ws.get_message())
        assert first["type"] == second["type"] == "ping"
        assert first["message"] > 1_000_000_000_000  # milliseconds
        # order, not wall time: the interval itself is asserted on trio's virtual clock
        # (tests/transport/test_pings.py), where a loaded machine cannot stretch it
        assert second["message"] > first["message"]


async def test_oversized_message_closes_1009_and_others_keep_working(serve: Serve) -> None:
    async with (
        serve(config(max_message_size=1024)) as server,
        cable(server) as big,
        cable(server) as other,
    ):
        await welcome(big)
        await welcome(other)
        await big.send_message("x" * 2000)
        assert await close_code(big) == 1009
        await other.send_message('{"command":"ping"}')
        assert await recv_json(other) == {"type": "pong"}


async def test_history_by_offset_and_since_then_reject_on_wrong_epoch(serve: Serve) -> None:
    async with serve(reliable()) as server:
        await broadcast(
            server, [{"stream": "chat", "data": json.dumps(f"m{i}")} for i in range(1, 6)]
        )
        async with cable(server, subprotocols=EXT) as ws:
            await welcome(ws)
            request = {"streams": {"chat": {"epoch": server.epoch, "offset": 3}}}
            await ws.send_message(
                json.dumps({"command": "subscribe", "identifier": CHAT, "history": request})
            )
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            assert [(await recv_json(ws))["message"] for _ in range(2)] == ["m4", "m5"]
            assert await recv_json(ws) == {"type": "confirm_history", "identifier": CHAT}
            await ws.send_message(
                json.dumps({"command": "history", "identifier": CHAT, "history": {"since": 1}})
            )
            assert [(await recv_json(ws))["offset"] for _ in range(5)] == [1, 2, 3, 4, 5]
            assert (await recv_json(ws))["type"] == "confirm_history"
            wrong = {"streams": {"chat": {"epoch": "nope", "offset": 1}}}
            await ws.send_message(
                json.dumps({"command": "history", "identifier": CHAT, "history": wrong})
            )
            assert await recv_json(ws) == {"type": "reject_history", "identifier": CHAT}


async def test_restore_by_sid_without_reauth_and_misses_nothing(serve: Serve) -> None:
    async with serve(reliable(enforce_jwt=True)) as server:
        token = encode_token({"user_id": 1}, JWT_KEY)
        async with cable(server, query=f"?jid={token}", subprotocols=EXT) as first:
            old_sid = await welcome(first)
            await subscribe(first, CHAT)
            await server.publish("chat", "before")
            seen = await recv_json(first)
            assert seen["offset"] == 1
            assert seen["epoch"] == server.epoch
        await broadcast(
            server, [{"stream": "chat", "data": "away1"}, {"stream": "chat", "data": "away2"}]
        )
        # no token this time: the restore needs none
        async with cable(server, query=f"?sid={old_sid}", subprotocols=EXT) as again:
            hello = await recv_json(again)
            assert hello["type"] == "welcome"
            assert hello["restored"] is True
            assert hello["restored_ids"] == [CHAT]
            assert hello["sid"] != old_sid
            # published while the restored subscription waits for its history: held back
            await server.publish("chat", "live")
            position = {"streams": {"chat": {"epoch": seen["epoch"], "offset": seen["offset"]}}}
            await again.send_message(
                json.dumps({"command": "history", "identifier": CHAT, "history": position})
            )
            replayed = [(await recv_json(again))["message"] for _ in range(3)]
            assert replayed == ["away1", "away2", "live"]
            assert (await recv_json(again))["type"] == "confirm_history"
            await server.publish("chat", "after")
            assert (await recv_json(again))["message"] == "after"
        # the v1 protocol never restores
        async with cable(server, query=f"?sid={old_sid}&jid={token}") as v1:
            assert "restored" not in await recv_json(v1)


async def test_sse_last_event_id_replays_what_was_missed_exactly_once(serve: Serve) -> None:
    async with serve(reliable()) as server:
        await broadcast(server, [{"stream": "s", "data": json.dumps(f"m{i}")} for i in range(1, 6)])
        epoch = server.epoch
        async with sse(
            server, "/events?stream=s", headers=[("Last-Event-ID", f"2/{epoch}/s")]
        ) as client:
            assert client.status == 200
            assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert client.headers["access-control-allow-origin"] == "*"
            events = [await client.event() for _ in range(6)]
            assert [e.get("event") for e in events[:2]] == ["welcome", "confirm_subscription"]  # type: ignore[union-attr]
            assert [(e["data"], e["id"]) for e in events[2:5]] == [  # type: ignore[index]
                ("m3", f"3/{epoch}/s"),
                ("m4", f"4/{epoch}/s"),
                ("m5", f"5/{epoch}/s"),
            ]
            assert events[5]["event"] == "confirm_history"  # type: ignore[index]
            await broadcast(server, {"stream": "s", "data": json.dumps("m6")})
            assert (await client.event()) == {"data": "m6", "id": f"6/{epoch}/s"}
            await server.publish("s", json.dumps("m7"))
            assert (await client.event()) == {"data": "m7", "id": f"7/{epoch}/s"}


async def test_sse_turbo_signed_stream_and_status_codes(serve: Serve) -> None:
    async with serve(reliable(enforce_jwt=True)) as server:
        port = server.main_port
        token = encode_token({"u": 1}, JWT_KEY)
        signed = sign_stream_name("rooms/1", TURBO_KEY)
        async with sse(
            server, f"/events?turbo_signed_stream_name={quote(signed)}&jid={token}"
        ) as client:
            assert client.status == 200
            assert [(await client.event())["event"] for _ in range(2)] == [  # type: ignore[index]
                "welcome",
                "confirm_subscription",
            ]
            await broadcast(server, {"stream": "rooms/1", "data": json.dumps(HTML)})
            assert (await client.event()) == {"data": HTML, "id": f"1/{server.epoch}/rooms/1"}
        assert (await http(port, "GET", f"/events?jid={token}")).status == 400  # no channel
        forged = sign_stream_name("x", "not-the-key")
        assert (
            await http(port, "GET", f"/events?jid={token}&signed_stream={quote(forged)}")
        ).status == 400
        assert (await http(port, "GET", "/events?stream=x")).status == 401  # no token
        assert (await http(port, "PUT", "/events?stream=x")).status == 405
        assert (await http(port, "OPTIONS", "/events")).status == 200
        bad_id = [("Last-Event-ID", "abc/e/s")]
        assert (
            await http(port, "GET", f"/events?stream=x&jid={token}", headers=bad_id)
        ).status == 400


async def test_sse_preflight_method_and_body_limit_answers(serve: Serve) -> None:
    cfg = config(
        public_streams=True, max_message_size=256, allowed_origins=("https://app.example",)
    )
    origin = [("Origin", "https://app.example")]
    async with serve(cfg) as server:
        port = server.main_port
        options = await http(port, "OPTIONS", "/events", headers=origin)
        assert (options.status, options.body) == (200, b"")
        assert options.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in options.headers["access-control-allow-methods"]
        refused = await http(port, "DELETE", "/events?stream=x", headers=origin)
        assert (refused.status, refused.body) == (405, b"Method Not Allowed")
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        line = json.dumps({"command": "subscribe", "identifier": CHAT}).encode()
        too_big = await http(port, "POST", "/events", line + b"\n" + b" " * 256, origin)
        assert (too_big.status, too_big.body) == (413, b"Payload Too Large")
        async with sse(server, "/events", method="POST", body=line) as client:
            assert client.status == 200
            assert (await client.event())["event"] == "welcome"  # type: ignore[index]


async def test_one_message_larger_than_the_outbox_bound_reaches_a_client_that_reads(
    serve: Serve,
) -> None:
    # the bound counts earlier output still waiting, never the message being queued
    cfg = config(public_streams=True, ws_max_pending_size=1024)
    async with serve(cfg) as server, cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, CHAT))["type"] == "confirm_subscription"
        big = "y" * 8192
        await server.publish("chat", json.dumps(big))
        assert await recv_json(ws) == {"identifier": CHAT, "message": big}
        await ws.send_message('{"command":"ping"}')  # still connected
        assert await recv_json(ws) == {"type": "pong"}


async def test_broadcast_status_codes_health_and_404(serve: Serve) -> None:
    async with serve() as server:
        port, path = server.broadcast_port, "/_broadcast"
        ok = {"stream": "s", "data": "x"}
        assert (await broadcast(server, ok)).status == 201
        assert (await broadcast(server, ok, key=None)).status == 401
        assert (await broadcast(server, ok, key="wrong")).status == 401
        auth = [("authorization", f"Bearer {BROADCAST_KEY}")]
        assert (await http(port, "GET", path, headers=auth)).status == 422
        for body in [b"not json", b'{"stream":"s"}', b'{"stream":"s","data":5}']:
            assert (await http(port, "POST", path, body, auth)).status == 400, body
        too_big = b'{"stream":"s","data":"' + b"x" * (1 << 20) + b'"}'
        assert (await http(port, "POST", path, too_big, auth)).status == 413
        health = await http(server.main_port, "GET", "/health")
        assert health.status == 200
        assert b"stayin' alive" in health.body
        assert health.headers["x-anycable-version"].startswith("cableway-")
        assert (await http(server.main_port, "GET", "/nope")).status == 404


async def test_foreign_origin_is_refused_with_403(serve: Serve) -> None:
    cfg = config(allowed_origins=("https://app.example", "*.trusted.example"))
    async with serve(cfg) as server:
        for origin in ["https://evil.example", "https://app.example.evil.com", "null"]:
            refused = await http(
                server.main_port, "GET", "/cable", headers=[*UPGRADE, ("Origin", origin)]
            )
            assert refused.status == 403
        for origin in ["https://app.example", "https://a.trusted.example"]:
            async with cable(server, headers=[("Origin", origin)]) as ws:
                await welcome(ws)


async def test_remote_disconnect_closes_matching_sessions(serve: Serve) -> None:
    token = encode_token({"user_id": 5}, JWT_KEY)
    async with (
        serve() as server,
        cable(server, query=f"?jid={token}") as five,
        cable(server) as anonymous,
    ):
        await welcome(five)
        await welcome(anonymous)
        command = {
            "command": "disconnect",
            "payload": {"identifier": '{"user_id":5}', "reconnect": True},
        }
        assert (await broadcast(server, command)).status == 201
        assert await recv_json(five) == {
            "type": "disconnect",
            "reason": "remote",
            "reconnect": True,
        }
        assert await close_code(five) == 1000
        await anonymous.send_message('{"command":"ping"}')
        assert await recv_json(anonymous) == {"type": "pong"}


def _metric(text: str, name: str) -> float:
    """The value of ``anycable_go_<name>`` in a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(f"anycable_go_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


async def _metrics(server: Running) -> str:
    response = await http(server.main_port, "GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.body.decode()


async def test_metrics_are_served_at_metrics_http_with_the_same_names(serve: Serve) -> None:
    async with serve(config(metrics_http="/metrics")) as server, cable(server) as ws:
        await welcome(ws)
        identifier = turbo_identifier("room")
        await subscribe(ws, identifier)
        assert (await broadcast(server, {"stream": "room", "data": '"hi"'})).status == 201
        assert (await recv_json(ws))["message"] == "hi"
        auth = [("authorization", f"Bearer {BROADCAST_KEY}")]
        bad = await http(server.broadcast_port, "POST", "/_broadcast", b"not json", auth)
        assert bad.status == 400
        text = await _metrics(server)
        assert _metric(text, "clients_num") == 1
        assert _metric(text, "broadcast_streams_num") == 1
        assert _metric(text, "broadcast_msg_total") == 1
        assert _metric(text, "publications_total") == 1
        assert _metric(text, "failed_broadcast_msg_total") == 1
        assert _metric(text, "server_msg_total") == 1
        assert _metric(text, "client_msg_total") >= 1  # the subscribe command


async def test_an_event_stream_counts_as_a_client_and_an_sse_client(serve: Serve) -> None:
    cfg = config(metrics_http="/metrics", public_streams=True)
    async with serve(cfg) as server, cable(server) as ws:
        await welcome(ws)
        async with sse(server, "/events?stream=chat") as client:
            assert (await client.event())["event"] == "welcome"  # type: ignore[index]
            text = await _metrics(server)
            assert _metric(text, "clients_num") == 2
            assert _metric(text, "sse_clients_num") == 1


async def test_a_batch_is_delivered_in_order_and_counted_per_publication(serve: Serve) -> None:
    async with serve(config(metrics_http="/metrics")) as server, cable(server) as ws:
        await welcome(ws)
        identifier = turbo_identifier("room")
        await subscribe(ws, identifier)
        batch = [{"stream": "room", "data": json.dumps(f"m{i}")} for i in range(5)]
        batch.insert(2, {"stream": "nobody-here", "data": '"x"'})
        assert (await broadcast(server, batch)).status == 201
        assert [(await recv_json(ws))["message"] for _ in range(5)] == [f"m{i}" for i in range(5)]
        text = await _metrics(server)
        assert _metric(text, "publications_total") == 6
        assert _metric(text, "broadcast_msg_total") == 6
        assert _metric(text, "server_msg_total") == 5


async def test_max_conn_makes_extra_sessions_wait_not_fail(serve: Serve) -> None:
    async with serve(config(max_conn=1)) as server, cable(server) as a:
        await welcome(a)
        got_in = trio.Event()

        async def second() -> None:
            async with cable(server) as b:
                await welcome(b)
                got_in.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert not got_in.is_set()  # waiting for a slot
            await a.aclose()
            with trio.fail_after(5):
                await got_in.wait()
