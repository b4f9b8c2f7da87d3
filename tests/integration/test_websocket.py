from __future__ import annotations

import json

import trio

from cableway.auth.jwt import encode_token

from .helpers import (
    JWT_KEY,
    broadcast,
    cable,
    close_code,
    config,
    http,
    recv_json,
    running,
    subscribe,
    turbo_identifier,
    welcome,
)

HTML = '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'


async def test_rails_client_gets_v1_protocol_and_welcome_with_sid() -> None:
    async with running() as server, cable(server) as ws:
        assert ws.subprotocol == "actioncable-v1-json"
        sid = await welcome(ws)
        assert len(sid) == 21


async def test_ext_client_gets_ext_protocol_and_unknown_offer_gets_none() -> None:
    async with running() as server:
        async with cable(server, subprotocols=["actioncable-v1-ext-json"]) as ws:
            assert ws.subprotocol == "actioncable-v1-ext-json"
        async with cable(server, subprotocols=["graphql-ws"]) as ws:
            assert ws.subprotocol is None
            await welcome(ws)


async def test_x_request_id_becomes_the_sid() -> None:
    async with running() as server, cable(server, headers=[("X-Request-ID", "req-42")]) as ws:
        assert await welcome(ws) == "req-42"


async def test_signed_turbo_stream_receives_http_broadcast_once_per_identifier() -> None:
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        identifier = turbo_identifier("chat/2023")
        assert await subscribe(ws, identifier) == {
            "type": "confirm_subscription",
            "identifier": identifier,
        }
        response = await broadcast(server, {"stream": "chat/2023", "data": json.dumps(HTML)})
        assert response.status == 201
        assert await recv_json(ws) == {"identifier": identifier, "message": HTML}
        # batch, JSON data and non-JSON data, in order
        batch = [
            {"stream": "chat/2023", "data": '{"n":1}'},
            {"stream": "elsewhere", "data": "x"},
            {"stream": "chat/2023", "data": "plain <b>text</b>"},
        ]
        assert (await broadcast(server, batch)).status == 201
        assert (await recv_json(ws))["message"] == {"n": 1}
        assert (await recv_json(ws))["message"] == "plain <b>text</b>"


async def test_bad_signature_is_rejected_and_connection_stays_usable() -> None:
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        bad = turbo_identifier("chat/2023", secret="not-the-key")
        assert await subscribe(ws, bad) == {"type": "reject_subscription", "identifier": bad}
        good = turbo_identifier("chat/2023")
        assert (await subscribe(ws, good))["type"] == "confirm_subscription"


async def test_duplicate_subscribe_is_silent_and_unsubscribe_stops_delivery() -> None:
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        identifier = turbo_identifier("room")
        await subscribe(ws, identifier)
        await ws.send_message(json.dumps({"command": "subscribe", "identifier": identifier}))
        await ws.send_message('{"command":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}  # no second confirmation came first
        await ws.send_message(json.dumps({"command": "unsubscribe", "identifier": identifier}))
        await ws.send_message('{"command":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}  # unsubscribe is processed, not acked
        await broadcast(server, {"stream": "room", "data": "after"})
        await ws.send_message('{"command":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}  # nothing was delivered before it
        assert len(server.hub) == 0


async def test_exclude_socket_skips_that_session() -> None:
    async with running() as server, cable(server) as a, cable(server) as b:
        sid_a = await welcome(a)
        await welcome(b)
        identifier = turbo_identifier("room")
        await subscribe(a, identifier)
        await subscribe(b, identifier)
        await broadcast(server, {"stream": "room", "data": "1", "meta": {"exclude_socket": sid_a}})
        await broadcast(server, {"stream": "room", "data": "2"})
        assert (await recv_json(b))["message"] == 1
        assert (await recv_json(b))["message"] == 2
        assert (await recv_json(a))["message"] == 2


async def test_expired_token_gets_token_expired_then_close() -> None:
    token = encode_token({"user_id": 1}, JWT_KEY, exp=1_000_000)
    async with running() as server, cable(server, query=f"?jid={token}") as ws:
        assert await recv_json(ws) == {
            "type": "disconnect",
            "reason": "token_expired",
            "reconnect": False,
        }
        assert await close_code(ws) == 1000


async def test_valid_token_in_header_or_subprotocol_and_forged_token() -> None:
    good = encode_token({"user_id": 7}, JWT_KEY, exp=4_000_000_000)
    forged = encode_token({"user_id": 7}, "x" * 40, exp=4_000_000_000)
    async with running(config(enforce_jwt=True)) as server:
        async with cable(server, headers=[("X-JID", good)]) as ws:
            await welcome(ws)
        async with cable(
            server, subprotocols=["actioncable-v1-json", f"anycable-token.{good}"]
        ) as ws:
            assert ws.subprotocol == "actioncable-v1-json"
            await welcome(ws)
        async with cable(server, query=f"?jid={forged}") as ws:
            assert (await recv_json(ws))["reason"] == "unauthorized"
        async with cable(server) as ws:  # no token while enforced
            assert await recv_json(ws) == {
                "type": "disconnect",
                "reason": "unauthorized",
                "reconnect": False,
            }


async def test_jwt_param_renames_query_and_header() -> None:
    good = encode_token({"user_id": 7}, JWT_KEY)
    async with running(config(enforce_jwt=True, jwt_param="token")) as server:
        async with cable(server, query=f"?token={good}") as ws:
            await welcome(ws)
        async with cable(server, headers=[("X-Token", good)]) as ws:
            await welcome(ws)


async def test_pings_follow_pi_and_ptp() -> None:
    async with running() as server, cable(server, query="?pi=1&ptp=ms") as ws:
        await welcome(ws)
        with trio.fail_after(5):
            first = json.loads(await ws.get_message())
            second = json.loads(await ws.get_message())
        assert first["type"] == second["type"] == "ping"
        assert first["message"] > 1_000_000_000_000  # milliseconds
        # order, not wall time: the interval itself is asserted on trio's virtual clock
        # (tests/transport/test_pings.py), where a loaded machine cannot stretch it
        assert second["message"] > first["message"]


async def test_oversized_message_closes_1009_and_others_keep_working() -> None:
    async with (
        running(config(max_message_size=1024)) as server,
        cable(server) as big,
        cable(server) as other,
    ):
        await welcome(big)
        await welcome(other)
        await big.send_message("x" * 2000)
        assert await close_code(big) == 1009
        await other.send_message('{"command":"ping"}')
        assert await recv_json(other) == {"type": "pong"}


async def test_garbage_and_binary_frames_do_not_hurt() -> None:
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        for junk in [
            "nope",
            "[]",
            '{"command":"fly"}',
            '{"command":"message","identifier":"x","data":"{}"}',
        ]:
            await ws.send_message(junk)
        await ws.send_message(b'{"command":"ping"}')  # binary frames are read the same way
        assert await recv_json(ws) == {"type": "pong"}


async def test_health_404_and_non_upgrade_cable() -> None:
    async with running() as server:
        health = await http(server.main_port, "GET", "/health")
        assert health.status == 200
        assert b"stayin' alive" in health.body
        assert (await http(server.main_port, "GET", "/nope")).status == 404
        plain = await http(server.main_port, "GET", "/cable")
        assert plain.status == 400
        assert plain.headers["sec-websocket-version"] == "13"


async def test_graceful_shutdown_sends_server_restart_and_1001() -> None:
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        server.shutdown()
        assert await recv_json(ws) == {
            "type": "disconnect",
            "reason": "server_restart",
            "reconnect": True,
        }
        assert await close_code(ws) == 1001
