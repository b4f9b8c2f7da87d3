"""The echo mode of the WebSocket driver (what Autobahn runs against), over memory streams."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from cableway.transport.server import Server

from ..fuzz_module import load_fuzz_module

_echo = load_fuzz_module("autobahn/echo_server.py")
echo_config, main, serve_echo = _echo.echo_config, _echo.main, _echo.serve_echo


async def _events(stream: trio.abc.Stream, ws: WSConnection, count: int) -> list[Event]:
    out: list[Event] = []
    with trio.fail_after(5):
        while len(out) < count:
            data = await stream.receive_some(65536)
            ws.receive_data(bytes(data) if data else None)
            out.extend(ws.events())
    return out


async def test_echoes_text_and_binary_and_closes_1009_over_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server_end = trio.testing.memory_stream_pair()
    ws = WSConnection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_echo, Server(echo_config(max_message_size=1000)), server_end)
        await client.send_all(ws.send(Request(host="echo", target="/")))
        assert isinstance((await _events(client, ws, 1))[0], AcceptConnection)
        await client.send_all(ws.send(TextMessage(data="héllo", message_finished=False)))
        await client.send_all(ws.send(TextMessage(data=" wörld")))
        await client.send_all(ws.send(BytesMessage(data=b"\x00\xff")))
        text, data = await _events(client, ws, 2)
        assert isinstance(text, TextMessage)
        assert text.data == "héllo wörld"
        assert isinstance(data, BytesMessage)
        assert bytes(data.data) == b"\x00\xff"
        await client.send_all(ws.send(BytesMessage(data=b"x" * 1001)))
        (close,) = await _events(client, ws, 1)
        assert isinstance(close, CloseConnection)
        assert close.code == 1009


async def test_negotiates_compression_and_echoes_through_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server_end = trio.testing.memory_stream_pair()
    ws = WSConnection(ConnectionType.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_echo, Server(echo_config(max_message_size=100_000)), server_end)
        offer = PerMessageDeflate()
        await client.send_all(ws.send(Request(host="echo", target="/", extensions=[offer])))
        (accept,) = await _events(client, ws, 1)
        assert isinstance(accept, AcceptConnection)
        assert [type(e) for e in accept.extensions] == [PerMessageDeflate]
        assert offer.server_no_context_takeover
        assert offer.client_no_context_takeover
        big = "compress me " * 1000
        await client.send_all(ws.send(TextMessage(data=big)))  # compressed by the client
        await client.send_all(ws.send(BytesMessage(data=b"\x00" * 5000)))
        text, data = await _events(client, ws, 2)
        assert isinstance(text, TextMessage)
        assert text.data == big
        assert isinstance(data, BytesMessage)
        assert bytes(data.data) == b"\x00" * 5000
        nursery.cancel_scope.cancel()


async def test_refuses_a_plain_http_request() -> None:
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_echo, Server(echo_config()), server_end)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        with trio.fail_after(5):
            response = await client.receive_some(65536)
    assert response.startswith(b"HTTP/1.1 400 ")


def test_main_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--port", "not-a-number"])
    assert exc.value.code == 2
