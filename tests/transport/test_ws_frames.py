"""Client frames: whole simple frames are parsed without wsproto; the rest hands over to it.

Both paths must behave the same for the client, whatever order frames come in.
"""

from __future__ import annotations

import dataclasses
import socket
import struct

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, Pong

from cableway.transport import ws
from cableway.transport.http import handle_connection
from cableway.transport.server import Server

from .helpers import CONFIG, Client, connect

PING = b'{"command":"ping"}'


def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, mask: bytes = b"abcd") -> bytes:
    """A masked client frame."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


async def _welcomed(nursery: trio.Nursery, server: Server) -> Client:
    client, _ = await connect(nursery, server)
    await client.handshake()
    welcome = await client.recv()
    assert welcome is not None
    assert welcome["type"] == "welcome"
    return client


async def test_whole_frames_in_one_write_are_all_answered() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        # text, binary, 16-bit length, empty text: all whole, in one write
        padded = b'{"command":"ping","x":"' + b"y" * 200 + b'"}'
        await client.stream.send_all(
            frame(PING) + frame(PING, opcode=0x2) + frame(padded) + frame(b"") + frame(PING)
        )
        for _ in range(4):
            assert await client.recv() == {"type": "pong"}
        nursery.cancel_scope.cancel()


async def test_split_and_control_frames_hand_over_to_wsproto() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        data = frame(PING)
        await client.stream.send_all(data[:5])  # a partial frame
        await trio.testing.wait_all_tasks_blocked()
        await client.stream.send_all(data[5:])
        assert await client.recv() == {"type": "pong"}
        # a fragmented message, then a ping frame, then a whole frame again
        await client.stream.send_all(frame(PING[:5], fin=False) + frame(PING[5:], opcode=0x0))
        assert await client.recv() == {"type": "pong"}
        await client.stream.send_all(frame(b"hi", opcode=0x9) + frame(PING))
        assert await client.next_event() == Pong(payload=b"hi")
        assert await client.recv() == {"type": "pong"}
        nursery.cancel_scope.cancel()


async def test_control_frame_first_then_whole_frames() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        await client.stream.send_all(frame(b"x", opcode=0x9) + frame(PING))
        assert await client.next_event() == Pong(payload=b"x")
        assert await client.recv() == {"type": "pong"}
        nursery.cancel_scope.cancel()


async def test_invalid_utf8_in_a_whole_frame_closes_1007() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        await client.stream.send_all(frame(PING) + frame(b"\xff\xfe"))
        assert await client.recv() == {"type": "pong"}
        assert await client.recv() is None
        assert client.closed is not None
        assert client.closed.code == 1007


async def test_unmasked_frame_closes_1002() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        await client.stream.send_all(bytes([0x81, len(PING)]) + PING)
        assert await client.recv() is None
        assert client.closed is not None
        assert client.closed.code == 1002


async def test_oversized_whole_frame_closes_1009(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = 100
    server = Server(dataclasses.replace(CONFIG, max_message_size=limit))
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        await client.stream.send_all(frame(b"x" * (limit + 1)))
        assert await client.recv() is None
        assert client.closed is not None
        assert client.closed.code == 1009


async def test_frames_sent_with_the_upgrade_request_are_processed() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client, _ = await connect(nursery, server)
        request = (
            b"GET /cable HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
        )
        await client.stream.send_all(request + frame(PING))
        head = b""
        while b"\r\n\r\n" not in head:
            head += await client.stream.receive_some(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        rest = b""
        while rest.count(b"\x81") < 2 or b'"pong"' not in rest:
            rest += await client.stream.receive_some(65536)
        assert b'{"type":"welcome"' in rest
        assert b'{"type":"pong"}' in rest
        nursery.cancel_scope.cancel()


async def test_close_frame_after_whole_frames_is_answered() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        close = frame(struct.pack("!H", 1000), opcode=0x8)
        await client.stream.send_all(frame(PING) + close)
        assert await client.recv() == {"type": "pong"}
        event = await client.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == 1000


@pytest.mark.parametrize(
    ("payload", "code"),
    [(struct.pack("!H", 1000), 1000), (struct.pack("!H", 1001), 1001), (b"", 1005)],
)
async def test_common_close_is_answered_without_wsproto(
    payload: bytes, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tab closing (no status, 1000, 1001) is answered with wsproto's reply, and the
    session never builds a wsproto connection for it (set-up and tear-down cost)."""
    built: list[object] = []

    class Counted(ws.Connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ws, "Connection", Counted)
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        await client.stream.send_all(frame(PING) + frame(payload, opcode=0x8))
        assert await client.recv() == {"type": "pong"}
        event = await client.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == code
        assert event.reason == ""
        assert await client.stream.receive_some(65536) == b""  # then the server closes
        nursery.cancel_scope.cancel()
    assert built == []


async def test_other_close_codes_still_go_through_wsproto() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed(nursery, server)
        await client.stream.send_all(frame(struct.pack("!H", 4001) + b"bye", opcode=0x8))
        event = await client.next_event()
        assert isinstance(event, CloseConnection)
        assert (event.code, event.reason) == (4001, "bye")
        nursery.cancel_scope.cancel()


_UPGRADE = (
    b"GET /cable HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
)


class _Spawned(trio.abc.Instrument):
    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def _welcomed_socket(nursery: trio.Nursery, server: Server) -> socket.socket:
    """A served connection over a real socket pair, welcomed; the client's end."""
    client, served = socket.socketpair()
    client.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(served))
    nursery.start_soon(lambda: handle_connection(server, stream, main=True))
    client.send(_UPGRADE)
    got = b""
    while b"welcome" not in got:
        await trio.lowlevel.wait_readable(client)
        got += client.recv(65536)
    return client


async def test_close_reply_is_written_to_the_socket_then_closed() -> None:
    server = Server(CONFIG)
    async with trio.open_nursery() as nursery:
        client = await _welcomed_socket(nursery, server)
        client.send(frame(struct.pack("!H", 1000), opcode=0x8))
        got = b""
        while True:
            await trio.lowlevel.wait_readable(client)
            chunk = client.recv(65536)
            if not chunk:
                break
            got += chunk
        assert got == b"\x88\x02\x03\xe8"  # the close reply, then EOF
        client.close()
    assert server.metrics.value("failed_server_msg_total") == 0


async def test_close_from_a_client_already_gone_is_counted_without_a_writer_task() -> None:
    """The mix's churn: a close frame, then a reset. The reply cannot be written; that
    is counted as any failed write, and no task is started to find it out."""
    server = Server(CONFIG)
    spawned = _Spawned()
    async with trio.open_nursery() as nursery:
        client = await _welcomed_socket(nursery, server)
        trio.lowlevel.add_instrument(spawned)
        client.send(frame(struct.pack("!H", 1000), opcode=0x8))
        client.close()  # gone before the server reads its close
    trio.lowlevel.remove_instrument(spawned)
    assert server.metrics.value("failed_server_msg_total") == 1
    assert not [name for name in spawned.names if name.endswith("_writer")]
