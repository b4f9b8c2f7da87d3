"""§D5 resource exhaustion rows (R*) not covered elsewhere; see docs/security-tests.md."""

from __future__ import annotations

import json
from functools import partial

import trio
import trio.testing
from wsproto.events import CloseConnection, Ping, Pong

from cableway.protocol.broadcast import Publication
from cableway.transport.http import handle_connection
from cableway.transport.server import Server
from tests.integration.helpers import (
    broadcast,
    cable,
    config,
    recv_json,
    running,
    subscribe,
    turbo_identifier,
    welcome,
)
from tests.transport.helpers import CONFIG, Client

from .helpers import OP_CONT, OP_PING, OP_TEXT, RawWs, frame, open_raw


async def _close_code(client: RawWs) -> tuple[list[bytes], int | None]:
    """Pong payloads seen, then the close code (None: no close frame before EOF)."""
    pongs: list[bytes] = []
    while True:
        event = await client.next_event()
        if event is None:
            return pongs, None
        if isinstance(event, Pong):
            pongs.append(bytes(event.payload))
        if isinstance(event, CloseConnection):
            return pongs, event.code


async def test_R1_huge_frame_header_closes_1009_once_64_kib_are_assembled() -> None:
    async with running(config()) as server:
        client = await open_raw(server.main_port)
        with trio.fail_after(10):
            assert (await client.json() or {})["type"] == "welcome"
            await client.send_raw(frame(OP_TEXT, b"", length=1 << 62)[: -0 or None])
            await client.send_raw(b"a" * (70 * 1024))
            _, code = await _close_code(client)
        assert code == 1009
        await client.stream.aclose()


async def test_R2_many_small_fragments_close_1009_on_the_sum_and_pings_are_answered_before() -> (
    None
):
    async with running(config()) as server:
        client = await open_raw(server.main_port)
        with trio.fail_after(10):
            assert (await client.json() or {})["type"] == "welcome"
            data = bytearray(frame(OP_TEXT, b"[" + b"0" * 9, fin=False))
            for i in range(1, 10_000):
                if i % 1000 == 0:
                    data += frame(OP_PING, b"p%d" % i)
                data += frame(OP_CONT, b"0123456789", fin=False)
            await client.send_raw(bytes(data))
            pongs, code = await _close_code(client)
        # 65 536 / 10 B: the sum passes the limit at fragment 6 554
        assert code == 1009
        assert pongs == [b"p%d" % i for i in range(1000, 7000, 1000)]
        await client.stream.aclose()


async def test_R3_control_frame_over_125_bytes_closes_1002() -> None:
    async with running(config()) as server:
        client = await open_raw(server.main_port)
        with trio.fail_after(10):
            assert (await client.json() or {})["type"] == "welcome"
            await client.send_raw(frame(OP_PING, b"x" * 126))
            _, code = await _close_code(client)
        assert code == 1002
        await client.stream.aclose()


async def test_R3_eight_byte_length_with_msb_set_closes_1002() -> None:
    async with running(config()) as server:
        client = await open_raw(server.main_port)
        with trio.fail_after(10):
            assert (await client.json() or {})["type"] == "welcome"
            await client.send_raw(frame(OP_TEXT, b"", length=1 << 63))
            _, code = await _close_code(client)
        assert code == 1002
        await client.stream.aclose()


async def test_R4_permessage_deflate_is_not_negotiated() -> None:
    async with running(config()) as server:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
            async with stream:
                await stream.send_all(
                    b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n"
                    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                    b"\r\n"
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await stream.receive_some(4096)
                    assert chunk
                    head += chunk
    status, *headers = head.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert status.startswith(b"HTTP/1.1 101")
    assert not [h for h in headers if h.lower().startswith(b"sec-websocket-extensions")]


async def test_R5_10000_distinct_subscribes_confirm_128_and_reject_the_rest() -> None:
    async with running(config(commands_rate=0)) as server, cable(server) as ws:
        await welcome(ws)
        with trio.fail_after(60):
            for i in range(10_000):
                await ws.send_message(
                    json.dumps({"command": "subscribe", "identifier": turbo_identifier(f"s{i}")})
                )
            kinds: dict[str, int] = {}
            for _ in range(10_000):
                kind = (await recv_json(ws))["type"]
                kinds[kind] = kinds.get(kind, 0) + 1
        assert kinds == {"confirm_subscription": 128, "reject_subscription": 9_872}
        assert len(server.hub) == 128


async def test_R6_same_identifier_10000_times_is_one_subscription_and_one_hub_entry() -> None:
    identifier = turbo_identifier("dup")
    async with running(config(commands_rate=0)) as server, cable(server) as ws:
        await welcome(ws)
        with trio.fail_after(30):
            message = json.dumps({"command": "subscribe", "identifier": identifier})
            for _ in range(10_000):
                await ws.send_message(message)
            assert (await recv_json(ws))["type"] == "confirm_subscription"
            assert len(server.hub) == 1
            assert sum(len(s) for s in server.hub.recipients("dup").values()) == 1
            assert (await broadcast(server, {"stream": "dup", "data": '"once"'})).status == 201
            assert (await recv_json(ws))["message"] == "once"
            # nothing else was queued: a ping command is answered next, not a 2nd copy
            await ws.send_message('{"command":"ping"}')
            assert (await recv_json(ws)) == {"type": "pong"}


async def test_R7_command_flood_is_rate_limited_and_sessions_stay_responsive() -> None:
    cfg = config(commands_rate=100.0, commands_burst=200)
    async with running(cfg) as server, cable(server) as other:
        await welcome(other)
        assert (await subscribe(other, turbo_identifier("calm")))["type"] == "confirm_subscription"
        client = await open_raw(server.main_port)
        pongs = 0
        ping = frame(OP_TEXT, b'{"command":"ping"}')
        with trio.fail_after(60):
            assert (await client.json() or {})["type"] == "welcome"
            start = trio.current_time()

            async def count() -> None:
                nonlocal pongs
                while (message := await client.json()) is not None:
                    if message == {"type": "pong"}:
                        pongs += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(count)
                for _ in range(100):
                    await client.send_raw(ping * 1000)  # 100 000 commands
                elapsed = trio.current_time() - start
                # the other session is served promptly while the flood is being read
                sent_at = trio.current_time()
                assert (await broadcast(server, {"stream": "calm", "data": '"hi"'})).status == 201
                assert (await recv_json(other))["message"] == "hi"
                assert trio.current_time() - sent_at < 1.0
                # the flooding session itself still answers once tokens refill
                answered = pongs
                while pongs == answered:
                    await client.send_raw(ping)
                    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                nursery.cancel_scope.cancel()
        assert pongs < 100_000
        assert pongs <= 200 + 100 * (trio.current_time() - start) + 1, (pongs, elapsed)
        await client.stream.aclose()


async def test_R12_silent_connections_over_max_conn_queue_and_existing_sessions_work() -> None:
    async with running(config(max_conn=3, handshake_timeout=30)) as server, cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, turbo_identifier("r12")))["type"] == "confirm_subscription"
        silent = [await trio.open_tcp_stream("127.0.0.1", server.main_port) for _ in range(52)]
        try:
            with trio.fail_after(5):
                # in-process publication: the HTTP endpoint shares the capped port here
                server.publish([Publication(stream="r12", data='"ok"')])
                assert (await recv_json(ws))["message"] == "ok"
                await ws.send_message('{"command":"ping"}')
                assert await recv_json(ws) == {"type": "pong"}
            # only max_conn connections are being served: the rest wait in the backlog
            assert server.connections is not None
            assert server.connections.borrowed_tokens == 3
        finally:
            for stream in silent:
                await stream.aclose()


async def test_R15_5000_digit_integer_data_is_ignored_and_the_session_survives() -> None:
    async with running(config()) as server, cable(server) as ws:
        await welcome(ws)
        identifier = turbo_identifier("r15")
        assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
        with trio.fail_after(5):
            big = "1" * 5000
            await ws.send_message(
                f'{{"command":"message","identifier":{json.dumps(identifier)},"data":{big}}}'
            )
            await ws.send_message(
                f'{{"command":"message","identifier":{json.dumps(identifier)},"data":"{big}"}}'
            )
            await ws.send_message(f'{{"command":"ping","n":{big}}}')
            await ws.send_message('{"command":"ping"}')
            assert await recv_json(ws) == {"type": "pong"}
            assert (await broadcast(server, {"stream": "r15", "data": '"alive"'})).status == 201
            assert (await recv_json(ws))["message"] == "alive"


async def test_R16_ping_flood_from_a_non_reader_keeps_pongs_within_the_outbox() -> None:
    """10 000 pings of 125 B to a client that reads nothing: the pongs may not pile up."""
    server = Server(CONFIG)
    bound = CONFIG.ws_max_pending_size
    peak = 0
    async with trio.open_nursery() as nursery:
        client_end, server_end = trio.testing.lockstep_stream_pair()
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        client = Client(client_end)
        with trio.fail_after(30):
            await client.handshake()
            assert (await client.recv() or {}).get("type") == "welcome"
            (session,) = server.sessions
            ping = client.ws.send(Ping(b"x" * 125))
            for _ in range(10_000):
                try:
                    await client.stream.send_all(ping)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                peak = max(peak, session.outbox.size)
                if session._closing:  # the protection may also close the session
                    break
        nursery.cancel_scope.cancel()
    # a pong is 127 B: 10 000 of them are 1.27 MB, over the 1 MiB outbox bound; the
    # bound is on what was queued before a frame, so one pong may pass it, no more
    assert peak <= bound + 127, f"{peak} B of pongs queued for a client that reads nothing"


async def test_R17_sse_connections_share_the_max_conn_limit() -> None:
    async with running(config(max_conn=2, public_streams=True)) as server:
        opened = []
        try:
            for _ in range(10):
                opened.append(await trio.open_tcp_stream("127.0.0.1", server.main_port))
                await opened[-1].send_all(b"GET /events?stream=x HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                while server.connections is not None and server.connections.borrowed_tokens < 2:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
                await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            assert server.connections is not None
            assert server.connections.borrowed_tokens == 2
            assert sum(1 for s in server.sessions) == 2
        finally:
            for stream in opened:
                await stream.aclose()
