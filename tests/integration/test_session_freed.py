"""A closed session is freed by reference counting alone, with the cyclic collector off.

The server runs with rare garbage collections (see ``_tune_garbage_collector``): a
reference cycle through a closed session would keep its memory until one, and under
connection churn that adds up. Each case subscribes (so the hub, the timer heap and
the outbox have all seen the session), receives a broadcast, then closes the
connection cleanly or drops the TCP socket, and checks that the session is gone.
"""

from __future__ import annotations

import gc
import json
import socket
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from cableway.protocol.broadcast import Publication
from cableway.transport.server import Server
from cableway.transport.session import Session

from .helpers import config, running
from .test_slow_clients import RawClient

STREAM = "freed"


@asynccontextmanager
async def _collector_off() -> AsyncIterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _drop(sock: trio.SocketStream) -> None:
    """Drop the TCP connection (RST), as a client that vanishes does."""
    sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _ws_client(server: Server) -> tuple[trio.SocketStream, Callable[[], Awaitable[None]]]:
    client = await RawClient.subscribed(server, STREAM)
    server.publish([Publication(STREAM, json.dumps([0, "hello"]))])
    await client.receive_until(lambda m: m.get("message") == [0, "hello"])

    async def clean_close() -> None:
        # a close frame (masked, zero key), the server's reply, then EOF
        await client.sock.send_all(b"\x88\x82\0\0\0\0" + struct.pack("!H", 1000))
        await client.read_to_the_end()
        assert client.closed_with == 1000

    return client.sock, clean_close


async def _sse_client(server: Server) -> tuple[trio.SocketStream, Callable[[], Awaitable[None]]]:
    sock = await trio.open_tcp_stream("127.0.0.1", server.main_port)
    await sock.send_all(b"GET /events?stream=" + STREAM.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"confirm_subscription" not in received:
        data = await sock.receive_some(65536)
        assert data
        received += data
    server.publish([Publication(STREAM, json.dumps([0, "hello"]))])
    while b"hello" not in received:
        data = await sock.receive_some(65536)
        assert data
        received += data

    async def clean_close() -> None:
        pass  # an event-stream client just closes its connection

    return sock, clean_close


def _referrers(obj: object) -> str:
    return "; ".join(type(r).__name__ for r in gc.get_referrers(obj))


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("how", ["clean", "dropped"])
async def test_a_closed_session_is_freed_without_the_cyclic_collector(
    transport: str, how: str
) -> None:
    async with _collector_off(), running(config(public_streams=True)) as server:
        opener = _ws_client if transport == "ws" else _sse_client
        with trio.fail_after(10):
            sock, clean_close = await opener(server)
            (session,) = server.sessions
            assert isinstance(session, Session)
            assert server.hub.recipients(STREAM)
            ref = weakref.ref(session)
            del session
            if how == "clean":
                await clean_close()
            else:
                _drop(sock)
            await sock.aclose()
            while server.sessions:
                await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
        assert not server.hub.recipients(STREAM)
        alive = ref()
        assert alive is None, f"a closed session is still referenced by {_referrers(alive)}"
