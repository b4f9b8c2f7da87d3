"""``POST /_broadcast`` on a kept-alive connection: one deadline per connection, re-armed.

The head of each request, and the body of a broadcast, must arrive within the handshake
deadline; between requests the connection may idle up to that deadline again.
"""

from __future__ import annotations

import re
from functools import partial

import trio
import trio.testing

from cableway.transport.http import handle_connection
from cableway.transport.server import Server

from .helpers import CONFIG

BODY = b'{"stream":"s","data":"x"}'


def post(body: bytes = BODY, *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size + body
    )


async def _read_until(stream: trio.abc.Stream, count: int) -> bytes:
    data = b""
    while data.count(b"HTTP/1.1 ") < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def test_pipelined_and_spaced_posts_on_one_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + post())
        answers = await _read_until(client, 2)
        assert answers.count(b"HTTP/1.1 201 ") == 2
        # idle for most of the deadline, twice: each request re-arms it
        for _ in range(2):
            await trio.sleep(server.handshake_timeout * 0.9)
            await client.send_all(post())
            assert (await _read_until(client, 1)).startswith(b"HTTP/1.1 201 ")
        # then idle past it: the server closes the connection
        start = trio.current_time()
        assert await client.receive_some(65536) == b""
        assert trio.current_time() - start <= server.handshake_timeout + 1


async def test_a_trickled_body_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + post(b"{", length=100))
        for _ in range(int(server.handshake_timeout) + 5):
            await trio.sleep(1)
            try:
                await client.send_all(b" ")
            except trio.BrokenResourceError:
                break
        answers = b""
        while chunk := await client.receive_some(65536):
            answers += chunk
        assert answers.startswith(b"HTTP/1.1 201 ")
        assert b"HTTP/1.1 408 " in answers


async def test_answers_held_back_are_written_before_the_connection_closes() -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    last = post().replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + post() + last)
        answers = b""
        while chunk := await client.receive_some(65536):
            answers += chunk
    assert answers.count(b"HTTP/1.1 201 ") == 3


async def test_an_error_answer_follows_the_answers_held_back() -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + post(b"not json") + post())
        answers = await _read_until(client, 3)
        statuses = re.findall(rb"HTTP/1\.1 (\d+) ", answers)
        assert statuses == [b"201", b"400", b"201"]
        nursery.cancel_scope.cancel()
