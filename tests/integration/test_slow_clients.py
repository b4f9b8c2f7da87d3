"""Slow clients on real loopback sockets: who is ``too_slow``, and what the wire shows.

A publication answered ``201`` reaches every subscriber that reads, whatever its size
within the body limit; ``too_slow`` is for a client that does not read, and dropping it
never leaves half a frame (or half an SSE event) followed by anything else. The clients
here are raw sockets whose every received byte is parsed, frame by frame.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import trio
import trio.testing

from cableway.config import Config
from cableway.protocol.broadcast import Publication
from cableway.transport.server import Server

from .helpers import broadcast, config, running, turbo_identifier

STREAM = "burst"


@dataclass
class Frame:
    opcode: int
    payload: bytes


def parse_frames(buf: bytearray) -> list[Frame]:
    """Take the whole server frames at the start of ``buf`` (which keeps the rest),
    checking each is a frame a server may send: final, unmasked, no reserved bits,
    a known opcode, valid JSON text."""
    frames: list[Frame] = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        assert b0 & 0x70 == 0, f"reserved bits set: {bytes(buf[:16])!r}"
        assert b0 & 0x80, "the server never fragments"
        assert not b1 & 0x80, "server frames are not masked"
        opcode = b0 & 0x0F
        assert opcode in (0x1, 0x8, 0x9, 0xA), f"opcode {opcode}: {bytes(buf[:16])!r}"
        n, head = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, head = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, head = struct.unpack_from("!Q", buf, 2)[0], 10
        if len(buf) < head + n:
            break
        payload = bytes(buf[head : head + n])
        del buf[: head + n]
        if opcode == 0x1:
            json.loads(payload.decode("utf-8"))  # a whole message, or this raises
        frames.append(Frame(opcode, payload))
    return frames


@dataclass
class RawClient:
    """A WebSocket client on a raw socket that checks every byte the server sends."""

    sock: trio.SocketStream
    buf: bytearray = field(default_factory=bytearray)
    messages: list[dict[str, object]] = field(default_factory=list)
    closed_with: int | None = None

    @classmethod
    async def subscribed(cls, server: Server, stream: str) -> RawClient:
        sock = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        await sock.send_all(
            b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
        )
        client = cls(sock)
        head = bytearray()
        while b"\r\n\r\n" not in head:
            data = await sock.receive_some(65536)
            assert data
            head += data
        status, _, rest = bytes(head).partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101")
        client.buf += rest
        await client.receive_until(lambda m: m.get("type") == "welcome")
        command = {"command": "subscribe", "identifier": turbo_identifier(stream)}
        await client.send_text(json.dumps(command))
        await client.receive_until(lambda m: m.get("type") == "confirm_subscription")
        client.messages.clear()
        return client

    async def send_text(self, text: str) -> None:
        data = text.encode()
        assert len(data) < 65536
        # masked with a zero key: valid, and the payload stays as it is
        head = (
            bytes([0x81, 0xFE]) + struct.pack("!H", len(data))
            if len(data) > 125
            else bytes([0x81, 0x80 | len(data)])
        )
        await self.sock.send_all(head + b"\0\0\0\0" + data)

    def _take(self) -> None:
        for frame in parse_frames(self.buf):
            assert self.closed_with is None, "a frame after the close frame"
            if frame.opcode == 0x1:
                self.messages.append(json.loads(frame.payload))
            elif frame.opcode == 0x8:
                self.closed_with = struct.unpack_from("!H", frame.payload)[0]

    async def receive_some(self) -> bool:
        """Read and parse what arrived; False at EOF."""
        try:
            data = await self.sock.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            return False
        self.buf += data
        self._take()
        return True

    async def receive_until(self, done: object) -> None:
        assert callable(done)
        self._take()
        while not any(done(m) for m in self.messages):
            assert await self.receive_some(), "the server closed the connection"

    async def read_to_the_end(self) -> None:
        """Read until EOF (answering the server's close), checking every frame."""
        answered = False
        while await self.receive_some():
            if self.closed_with is not None and not answered:
                answered = True
                await self.sock.send_all(b"\x88\x82\0\0\0\0" + struct.pack("!H", 1000))
        assert not self.buf, f"{len(self.buf)} bytes of a frame cut short"

    def data(self) -> list[int]:
        out = []
        for m in self.messages:
            message = m.get("message")
            if m.get("type") is None and isinstance(message, list):
                out.append(int(message[0]))
        return out


def _batch(count: int, pad: int, first: int = 0) -> list[dict[str, str]]:
    return [{"stream": STREAM, "data": json.dumps([first + i, "x" * pad])} for i in range(count)]


def _largest_batch(cfg: Config, pad: int) -> list[dict[str, str]]:
    """As many messages as fit in one broadcast body at the body limit."""
    size, count = 2, 0  # the brackets
    while size + len(json.dumps(_batch(1, pad, count)[0])) + 2 <= cfg.max_broadcast_body:
        size += len(json.dumps(_batch(1, pad, count)[0])) + 2  # and ", "
        count += 1
    batch = _batch(count, pad)
    assert cfg.max_broadcast_body - 200 < len(json.dumps(batch)) <= cfg.max_broadcast_body
    return batch


async def test_a_batch_at_the_body_limit_reaches_every_reader() -> None:
    """The server adds the identifier and more to each message: for three readers, a
    body at the limit is well over ``ws_max_pending_size`` each, and all of it arrives."""
    cfg = config()
    batch = _largest_batch(cfg, pad=100)  # under the 10 000 messages a batch may hold
    async with running(cfg) as server:
        readers = [await RawClient.subscribed(server, STREAM) for _ in range(3)]

        async def read_all(client: RawClient) -> None:
            while len(client.data()) < len(batch):
                assert await client.receive_some(), "dropped"

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for client in readers:
                    nursery.start_soon(read_all, client)
                assert (await broadcast(server, batch)).status == 201
        assert server.metrics.value("disconnected_slow_clients_total") == 0
        for client in readers:
            assert client.data() == list(range(len(batch)))
            assert client.closed_with is None
        wire = server.metrics.value("data_sent_total")
        assert wire > 3 * 1.5 * cfg.ws_max_pending_size  # per reader, well past the bound
        for client in readers:
            await client.sock.aclose()


async def test_a_reader_that_stops_is_dropped_with_whole_frames_and_the_others_get_all() -> None:
    """One subscriber stops reading while 60 KB messages keep coming: it is dropped as
    ``too_slow``, the frame in flight is finished, then the ``disconnect`` message and
    the close frame follow (parsed from the raw bytes). The others get every message."""
    async with running(config(ws_max_pending_size=256 * 1024)) as server:
        readers = [await RawClient.subscribed(server, STREAM) for _ in range(2)]
        stalled = await RawClient.subscribed(server, STREAM)
        sent = 0

        async def read_all(client: RawClient, done: trio.Event) -> None:
            while not (done.is_set() and len(client.data()) >= sent):
                assert await client.receive_some(), "dropped"

        with trio.fail_after(30):
            finished = trio.Event()
            async with trio.open_nursery() as nursery:
                for client in readers:
                    nursery.start_soon(read_all, client, finished)
                # publish until the stalled client is found too slow (bounded)
                while not server.metrics.value("disconnected_slow_clients_total"):
                    assert sent < 400, "the stalled client was never dropped"
                    response = await broadcast(server, _batch(6, 60_000, sent))
                    assert response.status == 201
                    sent += 6
                # a few more, which the stalled client must not get
                for _ in range(3):
                    assert (await broadcast(server, _batch(6, 60_000, sent))).status == 201
                    sent += 6
                finished.set()
            await stalled.read_to_the_end()
        assert server.metrics.value("disconnected_slow_clients_total") == 1
        for client in readers:
            assert client.data() == list(range(sent))
        got = stalled.data()
        assert got == list(range(len(got)))  # a prefix, in order
        assert len(got) < sent
        assert stalled.messages[-1] == {
            "type": "disconnect",
            "reason": "too_slow",
            "reconnect": True,
        }
        assert stalled.closed_with == 1000
        for client in [*readers, stalled]:
            await client.sock.aclose()


def _publish(server: Server, first: int, count: int) -> None:
    server.publish(
        [Publication(STREAM, json.dumps([first + i, "x" * 60_000])) for i in range(count)]
    )


async def test_too_slow_finishes_the_frame_in_flight_before_the_disconnect() -> None:
    """A batch the kernel takes only part of, to a client that reads nothing: the client
    is dropped when more is due, and what it finally reads is whole frames (the batch in
    flight, the ``disconnect`` message, the close frame) and nothing after the close."""
    async with running(config(ws_max_pending_size=64 * 1024)) as server:
        client = await RawClient.subscribed(server, STREAM)
        with trio.fail_after(30):
            _publish(server, 0, 40)  # 2.4 MB: more than the kernel takes at once
            (session,) = server.sessions
            assert session.outbox.started, "the kernel took the whole batch"
            # what is started does not count: the next batch is queued behind it
            _publish(server, 40, 2)
            assert not server.metrics.value("disconnected_slow_clients_total")
            # the client still reads nothing: 120 kB of unstarted output, too slow
            _publish(server, 42, 2)
            assert server.metrics.value("disconnected_slow_clients_total") == 1
            await client.read_to_the_end()
        assert client.data() == list(range(40))
        assert client.messages[-1] == {
            "type": "disconnect",
            "reason": "too_slow",
            "reconnect": True,
        }
        assert client.closed_with == 1000
        await client.sock.aclose()


async def test_too_slow_over_sse_ends_with_whole_events() -> None:
    """The same over SSE (HTTP/1.1 chunks): every chunk whole, every event whole, then the
    ``disconnect`` event and the last chunk."""
    cfg = config(ws_max_pending_size=64 * 1024, public_streams=True)
    async with running(cfg) as server:
        sock = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        await sock.send_all(
            b"GET /events?stream=" + STREAM.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        with trio.fail_after(30):
            while not server.sessions:
                await trio.testing.wait_all_tasks_blocked()
            (session,) = server.sessions
            _publish(server, 0, 40)
            assert session.outbox.started, "the kernel took the whole batch"
            _publish(server, 40, 2)
            _publish(server, 42, 2)
            assert server.metrics.value("disconnected_slow_clients_total") == 1
            raw = bytearray()
            while data := await sock.receive_some(65536):
                raw += data
        await sock.aclose()
        head, _, body = bytes(raw).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding: chunked" in head.lower()
        events: list[bytes] = []
        while True:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            chunk, crlf, body = body[:size], body[size : size + 2], body[size + 2 :]
            assert crlf == b"\r\n", "a chunk cut short"
            if not size:
                break
            assert chunk.endswith(b"\n\n"), "an event cut short"
            events.extend(chunk.split(b"\n\n")[:-1])
        assert body == b"", "bytes after the last chunk"
        data = [e for e in events if e.startswith(b"data:")]
        assert [json.loads(e.partition(b"data: ")[2].split(b"\n")[0])[0] for e in data] == list(
            range(40)
        )
        assert events[-1].startswith(b"event: disconnect")
        assert b'"too_slow"' in events[-1]
