"""§D7 lifecycle rows (L*) not covered elsewhere; see docs/security-tests.md."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest
import trio
import trio.lowlevel
import trio.testing
from wsproto.events import CloseConnection, TextMessage

from cableway.protocol.broadcast import Publication
from cableway.transport.http import handle_connection
from cableway.transport.server import Server
from tests.integration.helpers import cable, config, running, welcome
from tests.security.helpers import OP_CLOSE, OP_TEXT, RawWs, frame, open_raw
from tests.transport.helpers import CONFIG as TRANSPORT_CONFIG
from tests.transport.helpers import Client, turbo_identifier


async def test_L3_new_connections_during_shutdown_are_refused() -> None:
    # a client that never reads keeps the drain going (up to shutdown_timeout)
    async with running(config(shutdown_timeout=10)) as server, cable(server) as ws:
        await welcome(ws)
        port = server.main_port
        server.shutdown()
        with trio.fail_after(5):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    break  # refused: the listener is closed
                # accepted by the kernel before the close: it must not be served
                async with stream:
                    try:
                        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        answer = await stream.receive_some(1024)
                    except trio.BrokenResourceError:
                        answer = b""
                assert not answer.startswith(b"HTTP/1.1 200"), answer
                await trio.lowlevel.checkpoint()


# -- L2: shutdown while one client never reads --------------------------------------------

L2_SHUTDOWN_TIMEOUT = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_listening(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    stderr = proc.stderr
    with trio.fail_after(15):
        while True:
            line = await trio.to_thread.run_sync(stderr.readline, abandon_on_cancel=True)
            if not line:
                raise AssertionError("the server exited before listening")
            if b"Handle WebSocket connections" in line:
                return


async def _subscribed_client(port: int) -> RawWs:
    client = await open_raw(port, "/cable")
    assert (await client.json() or {}).get("type") == "welcome"
    identifier = json.dumps({"channel": "$pubsub", "stream_name": "all"})
    payload = json.dumps({"command": "subscribe", "identifier": identifier}).encode()
    await client.send_raw(frame(OP_TEXT, payload))
    assert (await client.json() or {}).get("type") == "confirm_subscription"
    return client


async def _post_broadcast(port: int, body: bytes) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(
            b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = b""
        while data := await stream.receive_some(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]


def _start_server(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cableway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--public",
            "--http_broadcast_port",
            str(port),
            "--shutdown_timeout",
            str(L2_SHUTDOWN_TIMEOUT),
            # the stuck client must not be dropped as too_slow before the shutdown
            # (0 is refused: the bound is at least 1 byte; 1 GiB is never reached here)
            "--ws_max_pending_size",
            str(1 << 30),
            # nor cut by the write deadline: only the shutdown timeout may end it
            "--ws_write_timeout",
            "60",
            "--max_broadcast_body",
            str(8 << 20),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_L2_shutdown_with_a_client_that_never_reads_still_exits_in_time() -> None:
    port = _free_port()
    proc = _start_server(port)
    try:
        await _wait_listening(proc)
        with trio.fail_after(30):
            stuck = await _subscribed_client(port)
            reader = await _subscribed_client(port)
        told: list[object] = []
        reader_done = trio.Event()

        async def read_everything() -> None:
            # the reading client keeps up with every broadcast and then the shutdown
            parts: list[str] = []
            while True:
                event = await reader.next_event()
                if event is None:
                    break
                if isinstance(event, CloseConnection):
                    told.append(("close", event.code))
                    break
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if not event.message_finished:
                        continue
                    message = json.loads("".join(parts))
                    parts = []
                    if message.get("type") == "disconnect":
                        told.append(message)
            reader_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_everything)
            # 32 MiB to a client that reads nothing: far past what the kernel buffers
            # hold, so the server's writes to it block (and its outbox holds the rest)
            item = json.dumps("x" * 65_000)
            batch = json.dumps([{"stream": "all", "data": item} for _ in range(64)]).encode()
            with trio.fail_after(60):
                for _ in range(8):
                    await _post_broadcast(port, batch)
            start = trio.current_time()
            os.kill(proc.pid, signal.SIGTERM)
            with trio.fail_after(L2_SHUTDOWN_TIMEOUT + 2):
                await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
            elapsed = trio.current_time() - start
            with trio.fail_after(10):
                await reader_done.wait()
        assert proc.returncode == 0
        # the stuck client held the drain until the shutdown timeout (so it really was
        # stuck), and the process still exited within the bound
        assert L2_SHUTDOWN_TIMEOUT - 0.5 <= elapsed < L2_SHUTDOWN_TIMEOUT + 2, elapsed
        assert told == [
            {"type": "disconnect", "reason": "server_restart", "reconnect": True},
            ("close", 1001),
        ]
        await stuck.stream.aclose()
        await reader.stream.aclose()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


# -- L5 / P5: cancellation mid-send, broadcast racing a close (in-memory) ------------------


class _StallingStream(trio.abc.Stream):
    """The server's end of an in-memory pair that records every byte it writes.

    Once ``budget`` is set, ``send_all`` writes at most that many more bytes and then
    blocks (a peer that stopped reading) until it is cancelled.
    """

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.written = bytearray()
        self.budget: int | None = None
        self.stalled = trio.Event()
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if self.stalled.is_set():
            # any write after the stall counts as written (as if the peer read again)
            self.written += data
            return
        if self.budget is not None:
            head, data = data[: self.budget], data[self.budget :]
            self.budget -= len(head)
            self.written += head
            await self.inner.send_all(head)
            if data:
                self.stalled.set()
                await trio.sleep_forever()
            return
        self.written += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


def _server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split unmasked server frames; returns (whole frames, trailing partial bytes)."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        head = 2
        if n == 126:
            head, n = 4, int.from_bytes(data[i + 2 : i + 4], "big")
        elif n == 127:
            head, n = 10, int.from_bytes(data[i + 2 : i + 10], "big")
        if i + head + n > len(data):
            break
        frames.append((opcode, data[i + head : i + head + n]))
        i += head + n
    return frames, data[i:]


async def _guarded(server: Server, stream: trio.abc.Stream, escaped: list[BaseException]) -> None:
    try:
        await handle_connection(server, stream, main=True)
    except BaseException as exc:
        # a cancellation (alone or grouped by the session's nursery) is the nursery's
        group = exc if isinstance(exc, BaseExceptionGroup) else BaseExceptionGroup("", [exc])
        others = group.split(trio.Cancelled)[1]
        if others is not None:
            escaped.append(others)
        raise


async def _subscribed(client: Client) -> None:
    await client.handshake()
    assert (await client.recv() or {})["type"] == "welcome"
    await client.send({"command": "subscribe", "identifier": turbo_identifier("room")})
    assert (await client.recv() or {})["type"] == "confirm_subscription"


@pytest.mark.parametrize("how", ["nursery_cancelled", "shutdown_then_cancelled", "write_timeout"])
async def test_L5_cancellation_mid_send_leaves_a_half_frame_and_nothing_after(
    how: str, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    server = Server(TRANSPORT_CONFIG)
    client_end, server_end = trio.testing.memory_stream_pair()
    stalling = _StallingStream(server_end)
    client = Client(client_end)
    escaped: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_guarded, server, stalling, escaped)
        await _subscribed(client)
        (session,) = server.sessions
        # the next write gets 1000 bytes through, then the peer stops reading
        stalling.budget = 1000
        server.publish([Publication("room", json.dumps("x" * 100_000))])
        with trio.fail_after(1):
            await stalling.stalled.wait()
        at_stall = bytes(stalling.written)
        if how == "shutdown_then_cancelled":
            # what the drain does: ask for a close (disconnect + close frame queued
            # behind the half-written frame), then cancel the handlers
            session.request_close(
                "server_restart", reconnect=True, code=1001, close_reason="Server restart"
            )
            server.publish([Publication("room", json.dumps("more"))])
            with trio.fail_after(1):
                while not session.outbox.size:
                    await trio.lowlevel.checkpoint()
        if how == "write_timeout":
            # the write deadline cancels the send; the session ends by itself
            with trio.fail_after(TRANSPORT_CONFIG.ws_write_timeout + 5):
                await session.wait_closed()
        else:
            nursery.cancel_scope.cancel()
    assert escaped == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # nothing was written after the partial frame: no disconnect, no close frame
    assert bytes(stalling.written) == at_stall
    frames, partial = _server_frames(at_stall.split(b"\r\n\r\n", 1)[1])  # after the 101
    assert partial, "the stall must fall inside a frame"
    assert all(opcode == OP_TEXT for opcode, _ in frames), frames
    assert stalling.closed
    assert server.sessions == set()


@pytest.mark.parametrize("steps_before_publish", [0, 1, 2, 3, 5, 10])
@pytest.mark.parametrize("closer", ["client", "server"])
async def test_P5_broadcast_racing_a_close_raises_nothing_and_writes_nothing_after_close(
    closer: str,
    steps_before_publish: int,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    server = Server(TRANSPORT_CONFIG)
    client_end, server_end = trio.testing.memory_stream_pair()
    recording = _StallingStream(server_end)
    client = Client(client_end)
    escaped: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_guarded, server, recording, escaped)
        await _subscribed(client)
        (session,) = server.sessions
        before = len(recording.written)
        if closer == "client":
            await client.stream.send_all(frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        else:
            session.request_close("remote", reconnect=False)
        for _ in range(steps_before_publish):
            await trio.lowlevel.checkpoint()
        for i in range(20):
            server.publish([Publication("room", json.dumps(f"racing {i}"))])
            await trio.lowlevel.checkpoint()
        if closer == "server":
            # answer the server's close so it does not wait for the close timeout
            await client.stream.send_all(frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        with trio.fail_after(10):
            await session.wait_closed()
        nursery.cancel_scope.cancel()
    assert escaped == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    frames, partial = _server_frames(bytes(recording.written[before:]))
    assert partial == b""
    closes = [i for i, (opcode, _) in enumerate(frames) if opcode == OP_CLOSE]
    assert closes == [len(frames) - 1], frames  # one close frame, and it is the last
    assert recording.closed
