"""The RESP client and the inter-node wire format, without a Redis server."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from cableway.protocol.broadcast import Publication
from cableway.transport.redis import (
    RedisConnection,
    RedisConnectionError,
    RedisError,
    encode_command,
    parse_redis_url,
)
from cableway.transport.scaleout import decode_stamped, encode_stamped


def test_parse_redis_url() -> None:
    url = parse_redis_url("rediss://u:p%40ss@cache.local:6380/3")
    assert (url.host, url.port, url.db, url.username, url.password, url.tls) == (
        "cache.local",
        6380,
        3,
        "u",
        "p@ss",
        True,
    )
    assert url.describe() == "rediss://cache.local:6380/3"  # no credentials
    assert parse_redis_url("redis://localhost").port == 6379
    for bad in ["http://x", "redis://", "redis://h/x"]:
        with pytest.raises(ValueError, match=r"URL|host|database"):
            parse_redis_url(bad)


def test_encode_command() -> None:
    assert encode_command("SET", b"k", 5) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n"


def test_stamped_round_trip() -> None:
    publication = Publication("s", '{"a":1}', exclude_socket="sid", broadcast_type="presence")
    assert decode_stamped(encode_stamped(publication, 7, "ep")) == (publication, 7, "ep")
    transient = Publication("s", "x", transient=True)
    assert decode_stamped(encode_stamped(transient, None, None)) == (transient, None, None)


async def test_replies_are_parsed_and_a_closed_connection_is_an_error() -> None:
    client, server = trio.testing.memory_stream_pair()
    connection = RedisConnection(client)
    await server.send_all(b"+OK\r\n:12\r\n$-1\r\n*2\r\n$1\r\na\r\n*0\r\n-ERR bad\r\n")
    replies = await connection.pipeline([("A",), ("B",), ("C",), ("D",), ("E",)])
    assert replies[:4] == [b"OK", 12, None, [b"a", []]]
    assert isinstance(replies[4], RedisError)
    await server.aclose()
    with pytest.raises(RedisConnectionError):
        await connection.execute("PING")
    with pytest.raises(RedisConnectionError):  # never reused after a failure
        await connection.execute("PING")
