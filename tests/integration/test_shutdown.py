"""SIGTERM under load: every client is told, and the process exits in time (security L1)."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

WS_CLIENTS = 500
SSE_CLIENTS = 500
SHUTDOWN_TIMEOUT = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server_process() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = WS_CLIENTS + SSE_CLIENTS + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    port = _free_port()
    proc = subprocess.Popen(
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
            str(SHUTDOWN_TIMEOUT),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _wait_listening(proc: subprocess.Popen[bytes]) -> None:
    """Read the server's log until it says it listens (bounded)."""
    assert proc.stderr is not None
    stderr = proc.stderr
    with trio.fail_after(15):
        while True:
            line = await trio.to_thread.run_sync(stderr.readline, abandon_on_cancel=True)
            if not line:
                raise AssertionError("the server exited before listening")
            if b"Handle WebSocket connections" in line:
                return


async def _ws_client(
    port: int, ready: trio.MemorySendChannel[None], results: list[tuple[str, object]]
) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(
            ws.send(Request(host="x", target="/cable?pi=0", subprotocols=["actioncable-v1-json"]))
        )
        disconnect: object = None
        close_code: int | None = None
        welcomed = False
        while close_code is None:
            data = await stream.receive_some(65536)
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    await stream.send_all(
                        ws.send(
                            TextMessage(
                                data=json.dumps(
                                    {
                                        "command": "subscribe",
                                        "identifier": '{"channel":"$pubsub","stream_name":"all"}',
                                    }
                                )
                            )
                        )
                    )
                elif isinstance(event, TextMessage):
                    message = json.loads(event.data)
                    if message["type"] == "confirm_subscription" and not welcomed:
                        welcomed = True
                        await ready.send(None)
                    elif message["type"] == "disconnect":
                        disconnect = message
                elif isinstance(event, CloseConnection):
                    close_code = event.code
        results.append(("ws", (disconnect, close_code)))


async def _sse_client(
    port: int, ready: trio.MemorySendChannel[None], results: list[tuple[str, object]]
) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /events?stream=all&pi=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = b""
        told = False
        signalled = False
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            buffer += data
            if not signalled and b"event: confirm_subscription" in buffer:
                signalled = True
                await ready.send(None)
            if (
                b'event: disconnect\ndata: {"type":"disconnect","reason":"server_restart","reconnect":true}'
                in buffer
            ):
                told = True
        results.append(("sse", told))


async def test_sigterm_with_1000_clients_tells_everyone_and_exits_in_time(
    server_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = server_process
    await _wait_listening(proc)
    results: list[tuple[str, object]] = []
    send, receive = trio.open_memory_channel[None](WS_CLIENTS + SSE_CLIENTS)
    async with trio.open_nursery() as nursery:
        for i in range(WS_CLIENTS + SSE_CLIENTS):
            client = _ws_client if i % 2 == 0 else _sse_client
            nursery.start_soon(client, port, send, results)
            if i % 50 == 49:
                await trio.lowlevel.checkpoint()
        with trio.fail_after(60):
            for _ in range(WS_CLIENTS + SSE_CLIENTS):
                await receive.receive()
        os.kill(proc.pid, signal.SIGTERM)
        with trio.fail_after(SHUTDOWN_TIMEOUT + 5):
            await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
    assert proc.returncode == 0
    # every client closed within --shutdown_timeout: the server did not have to cut the
    # drain short (it says so when it does)
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert b"Shutting down" in log
    assert b"Shutdown timeout" not in log
    ws = [r for kind, r in results if kind == "ws"]
    sse = [r for kind, r in results if kind == "sse"]
    assert len(ws) == WS_CLIENTS
    assert len(sse) == SSE_CLIENTS
    expected = ({"type": "disconnect", "reason": "server_restart", "reconnect": True}, 1001)
    assert ws.count(expected) == WS_CLIENTS, [r for r in ws if r != expected][:3]
    assert sse.count(True) == SSE_CLIENTS
