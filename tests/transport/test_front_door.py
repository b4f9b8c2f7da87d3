from __future__ import annotations

import json

import trio
import trio.testing

from cableway.protocol.broadcast import Publication
from cableway.transport.server import Server

from .helpers import CONFIG, Client, turbo_identifier


async def _serve(server: Server, stream: trio.abc.Stream) -> None:
    from cableway.transport.http import handle_connection

    await handle_connection(server, stream, main=True)


async def _read_all(stream: trio.abc.Stream) -> bytes:
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks)


async def test_slowloris_head_is_cut_at_the_handshake_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    closed_at: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, server_end)
        start = trio.current_time()
        await client.send_all(b"GET /cable HTTP/1.1\r\n")
        # trickle one header byte every second: each read is "active", the deadline
        # still covers the whole head
        for _ in range(20):
            await trio.sleep(1)
            try:
                await client.send_all(b"X")
            except trio.BrokenResourceError:
                break
        closed_at.append(trio.current_time() - start)
        assert await _read_all(client) == b""
    assert closed_at[0] <= server.handshake_timeout + 1


async def test_huge_header_gets_431() -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, server_end)
        await client.send_all(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        )
        response = await _read_all(client)
    assert response.startswith(b"HTTP/1.1 431 ")


async def test_malformed_request_line_gets_400() -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, server_end)
        await client.send_all(b"\x00\x01garbage\r\n\r\n")
        response = await _read_all(client)
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_keep_alive_serves_several_requests() -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, server_end)
        request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        await client.send_all(
            request + request + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        response = await _read_all(client)
    assert response.count(b"HTTP/1.1 200 ") == 3


async def test_slow_reader_is_dropped_as_too_slow_and_others_get_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(CONFIG)
    identifier = turbo_identifier("room")
    # the slow client's stream only moves bytes when it reads (it never does)
    slow_end, slow_server_end = trio.testing.lockstep_stream_pair()
    fast_end, fast_server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, slow_server_end)
        nursery.start_soon(_serve, server, fast_server_end)
        slow, fast = Client(slow_end), Client(fast_end)
        for c in (slow, fast):
            await c.handshake()
            assert (await c.recv() or {})["type"] == "welcome"
            await c.send({"command": "subscribe", "identifier": identifier})
            assert (await c.recv() or {})["type"] == "confirm_subscription"
        # the slow client now stops reading; 3 MiB of broadcasts exceed its 1 MiB outbox
        chunk = "x" * 10_000
        published_at = trio.current_time()
        for i in range(300):
            server.publish([Publication("room", json.dumps(f"{i}:{chunk}"))])
            await trio.lowlevel.checkpoint()
        for i in range(300):
            message = await fast.recv()
            assert message is not None
            assert message["message"].startswith(f"{i}:")
        # The measured latency of the fast subscriber, on the virtual clock (which only
        # moves when every task waits): zero. A design that made deliveries wait behind
        # the stuck socket would show the slow client's write timeout (2 s) here.
        assert trio.current_time() - published_at == 0
        await trio.testing.wait_all_tasks_blocked()
        assert server.metrics.value("disconnected_slow_clients_total") == 1
        sessions = server.hub.recipients("room")[identifier]
        assert len(sessions) == 1  # only the fast one is left
        nursery.cancel_scope.cancel()
