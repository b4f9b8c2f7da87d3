"""§D3 broadcast endpoint rows (B*) not covered elsewhere; see docs/security-tests.md."""

from __future__ import annotations

import contextlib
import json

import pytest
import trio

from tests.integration.helpers import (
    BROADCAST_KEY,
    cable,
    config,
    recv_json,
    running,
    subscribe,
    turbo_identifier,
    welcome,
)


async def _raw_request(port: int, data: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(data)
            received = b""
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                received += chunk
            return received


def _head(path: str, extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BROADCAST_KEY}\r\n"
        "Content-Type: application/json\r\n"
    ).encode() + extra


async def test_B4_chunked_body_over_the_cap_gets_413() -> None:
    async with running(config(max_broadcast_body=1024)) as server:
        chunk = b"x" * 512
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
        head = _head(server.config.http_broadcast_path, b"Transfer-Encoding: chunked\r\n\r\n")
        answer = await _raw_request(server.broadcast_port, head + body)
        assert answer.startswith(b"HTTP/1.1 413")


async def test_B6_array_over_the_10000_batch_bound_is_refused_and_nothing_is_published() -> None:
    async with running(config()) as server, cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, turbo_identifier("b6")))["type"] == "confirm_subscription"
        batch = [{"stream": "b6", "data": json.dumps(f"m{i}")} for i in range(10_001)]
        body = json.dumps(batch).encode()
        head = _head(server.config.http_broadcast_path, b"Content-Length: %d\r\n\r\n" % len(body))
        answer = await _raw_request(server.broadcast_port, head + body)
        assert answer[9:10] == b"4", answer[:40]
        nested = b"[" * 100_000 + b"]" * 100_000
        head = _head(server.config.http_broadcast_path, b"Content-Length: %d\r\n\r\n" % len(nested))
        answer = await _raw_request(server.broadcast_port, head + nested)
        assert answer[9:10] == b"4", answer[:40]
        # nothing was partially published: the next thing the subscriber sees is a pong
        await ws.send_message('{"command":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhello0\r\n\r\n",  # no CRLF after the chunk data
        b"5\r\nhelloXX0\r\n\r\n",  # junk where the CRLF should be
        b"zz\r\nhello\r\n0\r\n\r\n",  # non-hex size
    ],
)
async def test_B7_malformed_chunk_terminators_get_400(body: bytes) -> None:
    async with running(config()) as server:
        head = _head(server.config.http_broadcast_path, b"Transfer-Encoding: chunked\r\n\r\n")
        answer = await _raw_request(server.broadcast_port, head + body)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:40]


async def test_B8_slow_post_body_is_cut_at_the_request_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from functools import partial

    from cableway.transport.http import handle_connection
    from cableway.transport.server import Server
    from tests.transport.helpers import CONFIG

    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    cut_after: float | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        start = trio.current_time()
        await client.send_all(
            b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        for _ in range(60):
            await trio.sleep(1)
            try:
                await client.send_all(b" ")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                cut_after = trio.current_time() - start
                break
        nursery.cancel_scope.cancel()
    assert cut_after is not None
    assert cut_after <= server.handshake_timeout + 1
