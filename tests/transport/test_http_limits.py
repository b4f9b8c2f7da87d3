"""The front door's bounds: request smuggling (issue 13.5), the node-wide budget of
request bodies in flight (13.6), chunk sizes past the body limit and the rate of
"invalid broadcast" warnings (13.7). In-memory streams under trio's clock."""

from __future__ import annotations

import dataclasses
import logging
import re
from functools import partial

import pytest
import trio
import trio.testing

from cableway.ops import logs
from cableway.transport import httpconn
from cableway.transport.http import handle_connection
from cableway.transport.server import Server

from .helpers import CONFIG

BODY = b'{"stream":"room","data":"hi"}'
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def statuses(output: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.[01] (\d{3}) ", output)


async def exchange(server: Server, data: bytes) -> bytes:
    """Send ``data``, then EOF; everything the server answers until it closes."""
    client, server_end = trio.testing.memory_stream_pair()
    output = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(data)
        await trio.testing.wait_all_tasks_blocked()
        await client.send_eof()
        while chunk := await client.receive_some(65536):
            output += chunk
    return bytes(output)


def head(method: bytes, path: bytes, framing: bytes, *, version: bytes = b"1.1") -> bytes:
    return (
        method + b" " + path + b" HTTP/" + version + b"\r\nHost: x\r\n"
        b"Authorization: Bearer k\r\n" + framing + b"\r\n"
    )


# a body that ends the request where Transfer-Encoding says, followed by a request
# that a Content-Length reader would take as the rest of the body
CHUNKED_THEN_SMUGGLED = b"0\r\n\r\n" + SMUGGLED
AMBIGUOUS = [
    pytest.param(
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(CHUNKED_THEN_SMUGGLED),
        CHUNKED_THEN_SMUGGLED,
        id="length-and-chunked",
    ),
    pytest.param(
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"0\r\n\r\n",
        id="chunked-and-length",
    ),
    pytest.param(b"Transfer-Encoding: identity\r\n", BODY, id="te-not-chunked"),
    pytest.param(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n", id="te-chunked-first"),
    pytest.param(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", id="te-twice"
    ),
    pytest.param(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n", id="te-obs-fold"),
    pytest.param(b"Content-Length: 3\r\nContent-Length: 5\r\n", b"abcde", id="lengths-differ"),
    pytest.param(b"Content-Length:\r\n 5\r\n", b"abcde", id="length-obs-fold"),
]


@pytest.mark.parametrize(("framing", "body"), AMBIGUOUS)
@pytest.mark.parametrize("path", [b"/_broadcast", b"/health"], ids=["fast-path", "h11-path"])
async def test_an_ambiguous_body_framing_gets_400_and_the_connection_closes(
    framing: bytes, body: bytes, path: bytes
) -> None:
    server = Server(CONFIG)
    published: list[object] = []
    server.publish = published.append  # type: ignore[method-assign]
    request = head(b"POST", path, framing) + body
    output = await exchange(server, request + SMUGGLED)
    assert statuses(output) == [b"400"], output
    assert output.startswith(b"HTTP/1.1 400 Bad Request\r\n"), output
    assert b"\r\nconnection: close\r\n" in output.lower(), output
    assert not published


async def test_transfer_encoding_in_an_http10_request_gets_400() -> None:
    request = head(b"POST", b"/_broadcast", b"Transfer-Encoding: chunked\r\n", version=b"1.0")
    output = await exchange(Server(CONFIG), request + b"0\r\n\r\n")
    assert statuses(output) == [b"400"], output


async def test_a_chunk_declared_past_the_body_limit_gets_413_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(dataclasses.replace(CONFIG, max_broadcast_body=4096))
    huge = b"ffffffffff\r\n"
    past_the_total = b"bb8\r\n" + b"x" * 3000 + b"\r\n7d0\r\n"  # 3000 + 2000 > 4096
    cases = [
        (b"/_broadcast", huge, b"413"),
        (b"/_broadcast", past_the_total, b"413"),
        (b"/health", huge, b"200"),  # answered, but the body is not waited for
    ]
    for path, chunks, status in cases:
        client, server_end = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(handle_connection, server, server_end, main=True))
            start = trio.current_time()
            await client.send_all(head(b"POST", path, b"Transfer-Encoding: chunked\r\n") + chunks)
            # the client sends no more (and no EOF): the answer must not wait for it
            output = b""
            while b"\r\n\r\n" not in output:
                output += await client.receive_some(65536)
            assert trio.current_time() - start < 1, output  # not the 5 s body timeout
            assert statuses(output) == [status], output
            assert b"\r\nconnection: close\r\n" in output.lower(), output
            await client.aclose()


async def test_a_huge_chunk_size_relies_on_h11s_chunk_counter() -> None:
    """What :func:`httpconn.chunk_left` reads from h11 (a private counter) is still there."""
    conn = httpconn.h11.Connection(httpconn.h11.SERVER)
    conn.receive_data(head(b"POST", b"/", b"Transfer-Encoding: chunked\r\n") + b"abc\r\nxy")
    assert isinstance(conn.next_event(), httpconn.h11.Request)
    assert isinstance(conn.next_event(), httpconn.h11.Data)
    assert httpconn.chunk_left(conn) == 0xABC - 2


def upload_head(size: int) -> bytes:
    return head(b"POST", b"/_broadcast", b"Content-Length: %d\r\n" % size)


async def test_bodies_in_flight_are_bounded_node_wide_and_past_it_get_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = dataclasses.replace(CONFIG, max_broadcast_body=40_000, max_bodies_in_flight=50_000)
    server = Server(config)
    door = server.front_door
    assert door.body_limit == 65536  # never less than one largest body of any route
    prefix = b'{"stream":"room","data":"'
    body = prefix + b"x" * (40_000 - len(prefix) - 2) + b'"}'
    assert len(body) == 40_000
    first, first_end = trio.testing.memory_stream_pair()
    second, second_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, first_end, main=True))
        nursery.start_soon(partial(handle_connection, server, second_end, main=True))
        await first.send_all(upload_head(len(body)) + body[:100])  # in flight
        await trio.testing.wait_all_tasks_blocked()
        assert door.body_bytes == 40_000
        await second.send_all(upload_head(len(body)) + body[:100])
        refused = b""
        while chunk := await second.receive_some(65536):
            refused += chunk
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refused
        assert b"\r\nretry-after: 1\r\n" in refused
        assert b"\r\nconnection: close\r\n" in refused
        assert "the budget is 65536 (--max_bodies_in_flight)" in caplog.text
        await first.send_all(body[100:])
        answer = await first.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 201 Created\r\n"), answer
        assert door.body_bytes == 0  # given back once answered
        # the budget is free again: the next upload is taken
        await first.send_all(upload_head(len(body)) + body)
        answer = await first.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 201 Created\r\n"), answer
        await first.aclose()
    assert door.body_bytes == 0


async def test_chunked_bodies_count_as_they_arrive_and_are_given_back_on_failure() -> None:
    server = Server(dataclasses.replace(CONFIG, max_bodies_in_flight=1))
    door = server.front_door
    door.body_limit = 1000
    chunked = head(b"POST", b"/_broadcast", b"Transfer-Encoding: chunked\r\n")
    output = await exchange(server, chunked + b"258\r\n" + b"x" * 600 + b"\r\n")
    assert statuses(output) == [b"400"], output  # cut short by the EOF
    assert door.body_bytes == 0
    output = await exchange(server, chunked + (b"258\r\n" + b"x" * 600 + b"\r\n") * 2)
    assert statuses(output) == [b"503"], output
    assert door.body_bytes == 0


async def test_invalid_broadcast_warnings_are_rate_limited(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(CONFIG)
    bad = head(b"POST", b"/_broadcast", b"Content-Length: 9\r\n") + b"{not json"
    caplog.set_level(logging.WARNING, logger="cableway")
    output = await exchange(server, bad * 50)
    assert statuses(output) == [b"400"] * 50
    lines = [r.getMessage() for r in caplog.records if r.name == "cableway.http"]
    invalid = [line for line in lines if line.startswith("invalid broadcast")]
    assert len(invalid) == logs.WARNINGS_PER_WINDOW
    assert len(lines) == logs.WARNINGS_PER_WINDOW + 1  # and one saying the rest is counted
    assert "counted, not logged" in lines[-1]
    caplog.clear()
    await trio.sleep(logs.WARNING_WINDOW_SECONDS)
    await exchange(server, bad)
    lines = [r.getMessage() for r in caplog.records if r.name == "cableway.http"]
    assert lines[0] == (
        f"40 more invalid broadcast warnings suppressed in the last "
        f"{logs.WARNING_WINDOW_SECONDS:g}s"
    )
    assert lines[1].startswith("invalid broadcast")
    assert len(lines) == 2
