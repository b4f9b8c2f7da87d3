"""permessage-deflate over the real driver (in-memory streams): negotiated only when
enabled and offered, a broadcast compressed once for every compressing subscriber,
compressed client commands inflated on both parser paths, and bombs closed with 1009."""

from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any

import pytest
import trio
import trio.testing
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import PerMessageDeflate

from cableway.protocol.broadcast import Publication
from cableway.protocol.wsframe import Deflater
from cableway.transport.server import Server

from .helpers import CONFIG, Client, connect, turbo_identifier

DEFLATE_CONFIG = dataclasses.replace(CONFIG, enable_ws_compression=True)
HTML = (
    '<turbo-stream action="append" target="messages"><template>'
    + "".join(
        f'<div id="message_{i}" class="message"><p class="author">user {i}</p>'
        f'<p class="body">Message number {i} in the room, with a few more words.</p></div>'
        for i in range(16)
    )
    + "</template></turbo-stream>"
)
PING = b'{"command":"ping"}'


class RawClient(Client):
    """A wsproto client that also keeps every byte the server sent, and the 101's headers."""

    def __init__(self, stream: trio.abc.Stream, *, offer: bool) -> None:
        super().__init__(stream)
        self.offer = offer
        self.raw = bytearray()
        self.extensions: list[str] = []

    async def handshake(self, target: str = "/cable") -> None:
        extensions = [PerMessageDeflate()] if self.offer else []
        await self.stream.send_all(
            self.ws.send(
                Request(
                    host="test",
                    target=target,
                    subprotocols=["actioncable-v1-json"],
                    extensions=extensions,
                )
            )
        )
        event = await self.next_event()
        assert isinstance(event, AcceptConnection)
        head = bytes(self.raw).partition(b"\r\n\r\n")[0].decode().split("\r\n")
        self.extensions = [
            line.partition(":")[2].strip()
            for line in head
            if line.lower().startswith("sec-websocket-extensions:")
        ]
        welcome = await self.recv()
        assert welcome is not None
        assert welcome["type"] == "welcome"

    async def next_event(self) -> Any:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            self.raw += data
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)


def masked(payload: bytes, *, opcode: int = 0x1, fin: bool = True, rsv1: bool = False) -> bytes:
    mask = b"\x0a\x0b\x0c\x0d"
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def deflated(payload: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


async def _open(
    nursery: trio.Nursery, server: Server, *, offer: bool = True
) -> tuple[RawClient, trio.abc.Stream]:
    client, server_end = await connect(nursery, server)
    raw = RawClient(client.stream, offer=offer)
    await raw.handshake()
    return raw, server_end


@pytest.mark.parametrize(("enabled", "offer"), [(True, True), (True, False), (False, True)])
async def test_compression_is_negotiated_only_when_enabled_and_offered(
    enabled: bool, offer: bool
) -> None:
    server = Server(DEFLATE_CONFIG if enabled else CONFIG)
    async with trio.open_nursery() as nursery:
        client, _ = await _open(nursery, server, offer=offer)
        if enabled and offer:
            # wsproto offers "client_max_window_bits=15; server_max_window_bits=15"
            assert client.extensions == [
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                "server_max_window_bits=15"
            ]
        else:
            assert client.extensions == []
        nursery.cancel_scope.cancel()


async def test_a_broadcast_is_compressed_once_for_every_compressing_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    compress = Deflater.compress

    def counted(self: Deflater, payload: bytes) -> bytes:
        calls.append(len(payload))
        return compress(self, payload)

    monkeypatch.setattr(Deflater, "compress", counted)
    server = Server(DEFLATE_CONFIG)
    identifier = turbo_identifier("room")
    async with trio.open_nursery() as nursery:
        clients = [(await _open(nursery, server, offer=i < 3))[0] for i in range(4)]
        for client in clients:
            await client.send({"command": "subscribe", "identifier": identifier})
            assert (await client.recv() or {})["type"] == "confirm_subscription"
        for client in clients:
            client.raw.clear()
        calls.clear()
        for round_ in range(2):
            server.publish([Publication("room", json.dumps(HTML + str(round_)))])
            for client in clients:
                message = await client.recv() or {}
                assert message["message"] == HTML + str(round_)
        assert len(calls) == 2  # once per broadcast, for the three compressing clients
        plain = HTML.encode()
        compressed = [bytes(c.raw) for c in clients[:3]]
        assert compressed[0] == compressed[1] == compressed[2]  # the very same bytes
        assert compressed[0][0] == 0xC1
        assert plain not in compressed[0]
        assert plain.replace(b'"', b'\\"') in clients[3].raw  # the plain client: as before
        assert len(compressed[0]) * 3 <= len(clients[3].raw)
        nursery.cancel_scope.cancel()


async def test_compressed_commands_are_answered_on_both_parser_paths() -> None:
    server = Server(DEFLATE_CONFIG)
    async with trio.open_nursery() as nursery:
        client, _ = await _open(nursery, server)
        body = deflated(PING)
        # whole compressed frames (fast path), an uncompressed one, then a compressed
        # message in two fragments with a ping between them (wsproto from there on),
        # then whole compressed frames again (now through wsproto)
        await client.stream.send_all(
            masked(body, rsv1=True)
            + masked(PING)
            + masked(body[:5], rsv1=True, fin=False)
            + masked(b"hi", opcode=0x9)
            + masked(body[5:], opcode=0x0)
            + masked(body, rsv1=True, opcode=0x2)
        )
        for _ in range(4):
            assert await client.recv() == {"type": "pong"}
        # and a command through wsproto's own client compressor
        await client.send({"command": "ping"})
        assert await client.recv() == {"type": "pong"}
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("fragmented", [False, True])
async def test_a_zip_bomb_closes_1009(fragmented: bool) -> None:
    server = Server(dataclasses.replace(DEFLATE_CONFIG, max_message_size=4096))
    async with trio.open_nursery() as nursery:
        client, _ = await _open(nursery, server)
        bomb = deflated(b'{"command":"ping","x":"' + b" " * 1_000_000 + b'"}')
        if fragmented:
            data = masked(bomb[:100], rsv1=True, fin=False) + masked(bomb[100:], opcode=0x0)
        else:
            data = masked(bomb, rsv1=True)
        await client.stream.send_all(data)
        assert await client.recv() is None
        assert client.closed is not None
        assert client.closed.code == 1009
        nursery.cancel_scope.cancel()


async def test_rsv1_on_a_control_frame_is_a_protocol_error() -> None:
    server = Server(DEFLATE_CONFIG)
    async with trio.open_nursery() as nursery:
        client, _ = await _open(nursery, server)
        await client.stream.send_all(masked(b"", opcode=0x9, rsv1=True))
        assert await client.recv() is None
        assert client.closed is not None
        assert client.closed.code == 1002
        nursery.cancel_scope.cancel()


async def test_rsv1_without_compression_is_a_protocol_error() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client, _ = await _open(nursery, server, offer=False)
        await client.stream.send_all(masked(deflated(PING), rsv1=True))
        assert await client.recv() is None
        assert client.closed is not None
        assert client.closed.code == 1002
        nursery.cancel_scope.cancel()
