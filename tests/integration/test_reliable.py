"""Reliable streams over WebSocket: positions, history, session restore, presence, whisper."""

from __future__ import annotations

import json

import trio

from cableway.config import Config

from .helpers import broadcast, cable, config, recv_json, running, subscribe, welcome

EXT = ["actioncable-v1-ext-json"]
CHAT = json.dumps({"channel": "$pubsub", "stream_name": "chat"})


def reliable(**kw: object) -> Config:
    return config(broker="memory", public_streams=True, **kw)


async def test_broadcasts_carry_positions_on_both_protocols() -> None:
    async with (
        running(reliable()) as server,
        cable(server) as v1,
        cable(server, subprotocols=EXT) as ext,
    ):
        for ws in (v1, ext):
            await welcome(ws)
            await subscribe(ws, CHAT)
        await broadcast(server, [{"stream": "chat", "data": "1"}, {"stream": "chat", "data": "2"}])
        for ws in (v1, ext):
            first, second = await recv_json(ws), await recv_json(ws)
            assert (first["offset"], second["offset"]) == (1, 2)
            assert first["stream_id"] == "chat"
            assert first["epoch"] == server.broker.epoch  # type: ignore[union-attr]
        # transient publications are not stored and carry no position
        await broadcast(server, {"stream": "chat", "data": "t", "meta": {"transient": True}})
        assert await recv_json(v1) == {"identifier": CHAT, "message": "t"}


async def test_history_by_offset_and_since_then_reject_on_wrong_epoch() -> None:
    async with running(reliable()) as server:
        await broadcast(
            server, [{"stream": "chat", "data": json.dumps(f"m{i}")} for i in range(1, 6)]
        )
        epoch = server.broker.epoch  # type: ignore[union-attr]
        async with cable(server, subprotocols=EXT) as ws:
            await welcome(ws)
            request = {"streams": {"chat": {"epoch": epoch, "offset": 3}}}
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


async def test_restore_by_sid_brings_subscriptions_back_without_reauth_and_misses_nothing() -> None:
    async with running(reliable(enforce_jwt=True)) as server:
        from cableway.auth.jwt import encode_token

        from .helpers import JWT_KEY

        token = encode_token({"user_id": 1}, JWT_KEY)
        async with cable(server, query=f"?jid={token}", subprotocols=EXT) as first:
            old_sid = await welcome(first)
            await subscribe(first, CHAT)
            await broadcast(server, {"stream": "chat", "data": "before"})
            seen = await recv_json(first)
        # while away
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
            position = {"streams": {"chat": {"epoch": seen["epoch"], "offset": seen["offset"]}}}
            await again.send_message(
                json.dumps({"command": "history", "identifier": CHAT, "history": position})
            )
            assert [(await recv_json(again))["message"] for _ in range(2)] == ["away1", "away2"]
            assert (await recv_json(again))["type"] == "confirm_history"
            await broadcast(server, {"stream": "chat", "data": "live"})
            assert (await recv_json(again))["message"] == "live"


async def test_restore_header_wins_and_unknown_sid_gets_a_plain_welcome() -> None:
    async with running(reliable()) as server:
        async with cable(server, subprotocols=EXT) as first:
            old_sid = await welcome(first)
            await subscribe(first, CHAT)
        headers = [("X-AnyCable-Restore-SID", old_sid)]
        async with cable(server, query="?sid=garbage", subprotocols=EXT, headers=headers) as ws:
            assert (await recv_json(ws))["restored"] is True
        async with cable(server, query="?sid=" + "x" * 300, subprotocols=EXT) as ws:
            assert "restored" not in await recv_json(ws)
        # the v1 protocol never restores
        async with cable(server, query=f"?sid={old_sid}") as ws:
            assert "restored" not in await recv_json(ws)


async def test_pong_timeout_disconnects_silent_ext_clients() -> None:
    async with (
        running(reliable(pong_timeout=1.0)) as server,
        cable(server, query="?pi=1", subprotocols=EXT) as ws,
    ):
        await welcome(ws)
        with trio.fail_after(10):
            while True:
                message = json.loads(await ws.get_message())
                if message["type"] == "disconnect":
                    break
        assert message == {"type": "disconnect", "reason": "no_pong", "reconnect": True}


async def test_whisper_reaches_others_not_sender_and_presence_events() -> None:
    async with (
        running(reliable()) as server,
        cable(server, subprotocols=EXT) as a,
        cable(server, subprotocols=EXT) as b,
    ):
        await welcome(a)
        await welcome(b)
        await subscribe(a, CHAT)
        await subscribe(b, CHAT)
        await a.send_message(
            json.dumps({"command": "whisper", "identifier": CHAT, "data": {"event": "typing"}})
        )
        assert await recv_json(b) == {"identifier": CHAT, "message": {"event": "typing"}}
        await a.send_message(
            json.dumps(
                {"command": "join", "identifier": CHAT, "presence": {"id": "7", "info": {"n": "A"}}}
            )
        )
        join = {
            "type": "presence",
            "identifier": CHAT,
            "message": {"type": "join", "info": {"n": "A"}, "id": "7"},
        }
        assert await recv_json(a) == join  # the whisper never came back to a
        assert await recv_json(b) == join
        await b.send_message(json.dumps({"command": "presence", "identifier": CHAT, "data": {}}))
        info = await recv_json(b)
        assert info["message"] == {
            "type": "info",
            "total": 1,
            "records": [{"info": {"n": "A"}, "id": "7"}],
        }
        await a.send_message(json.dumps({"command": "leave", "identifier": CHAT}))
        assert (await recv_json(b))["message"] == {"type": "leave", "id": "7"}
