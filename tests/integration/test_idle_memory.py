"""What an idle subscribed WebSocket connection costs the server, in memory.

Most connections of a real deployment are idle subscribers: their memory is what a node
pays per client. Measured with ``tracemalloc`` in this process (the server's) between N
connections and none, the clients in a child process, after a few connections have
warmed up what is allocated once. ``bench/run.py``'s scenario (a) measures the same as
RSS of a separate server process (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from functools import partial

import trio
import trio.testing

from cableway.transport.server import Server

from .helpers import running, turbo_identifier

N = 200
#: traced bytes per idle subscribed session: 6 400 before the sessions shared their
#: identifiers and settings, dropped their instance dictionaries and unused parts and
#: parked in fewer frames, 4 070 after
LIMIT = 4_600

#: the clients: N WebSocket connections, each subscribed (then "ready"), open until
#: stdin closes
CLIENTS = r"""
import json, socket, struct, sys
port, count, identifier = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = json.dumps({"command": "subscribe", "identifier": identifier}).encode()
frame = bytes([0x81, 0xFE]) + struct.pack("!H", len(data)) + b"\0\0\0\0" + data
socks = []
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
    )
    got = b""
    while b"welcome" not in got:
        got += sock.recv(65536)
    sock.sendall(frame)
    while b"confirm_subscription" not in got:
        got += sock.recv(65536)
    socks.append(sock)
print("ready", flush=True)
sys.stdin.read()
"""


async def _clients(server: Server, nursery: trio.Nursery, count: int) -> trio.Process:
    """Start ``count`` idle subscribed clients; returns once all are subscribed."""
    command = [sys.executable, "-c", CLIENTS, str(server.main_port), str(count)]
    command.append(turbo_identifier("idle"))
    process: trio.Process = await nursery.start(
        partial(
            trio.run_process, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False
        )
    )
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        data = await process.stdout.receive_some()
        assert data, "the clients exited"
        line += data
    assert line == b"ready\n"
    await trio.testing.wait_all_tasks_blocked()
    return process


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_an_idle_subscribed_websocket_costs_the_server_little_memory() -> None:
    async with running() as server, trio.open_nursery() as nursery:
        warm = await _clients(server, nursery, 20)
        tracemalloc.start()
        try:
            before = _traced()
            clients = await _clients(server, nursery, N)
            after = _traced()
        finally:
            tracemalloc.stop()
        per_session = (after - before) / N
        assert len(server.node.sessions) == 20 + N
        assert per_session <= LIMIT, f"{per_session:.0f} bytes per idle session"
        for process in (warm, clients):
            assert process.stdin is not None
            await process.stdin.aclose()
