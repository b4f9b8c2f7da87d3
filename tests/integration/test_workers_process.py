"""``cableway --workers 2`` as real processes: a supervisor, two workers, one port.

What the in-process tests (``test_workers.py``) cannot show: the workers share the
supervisor's listening socket (connections spread over both; ``/metrics`` from either
counts both), a broadcast accepted by either worker reaches subscribers on both, a
worker killed under a flood loses no message for clients that reconnect as
``@anycable/web`` and ``EventSource`` do (and is replaced), SIGTERM drains every worker
(and the port refuses connections meanwhile, as one server's does), a second signal
kills them, workers whose supervisor was killed drain and exit, a bad TLS file stops
the supervisor in one line, and a replacement worker that cannot start is retried while
the other worker serves.

Which worker serves a client is read from the kernel: the server side of each client's
TCP connection (``/proc/net/tcp``) is a socket held open by exactly one worker process
(``/proc/<pid>/fd``). Waits are bounded; nothing sleeps in place of a signal (a short
poll of a real condition: the supervisor's log, ``/health``'s ``cableway-workers``
header, the process table).
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h11
import pytest
import trio
import trustme
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from .helpers import SseClient, broadcast, cable, http, recv_json, subscribe, welcome

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists()
    or not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="reads Linux's /proc to find the workers and tell them apart",
)

EXT = ["actioncable-v1-ext-json"]
WORKERS = 2
#: a poll's interval while waiting for a condition (never a wait for its own sake)
POLL = 0.02
STARTING = re.compile(r"Starting (\d+) workers on port (\d+)")
JOINED = re.compile(r"worker (\d+) \(pid (\d+)\) joined the hub")
SERVER_RESTART = {"type": "disconnect", "reason": "server_restart", "reconnect": True}


def identifier(stream: str) -> str:
    return json.dumps({"channel": "$pubsub", "stream_name": stream})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def poll_until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds (the caller bounds the wait)."""
    while True:
        if condition():
            return
        await trio.sleep(POLL)


class Supervisor:
    """``python -m cableway --workers 2 ARGS`` on 127.0.0.1; its stderr kept line by line
    (the workers share it)."""

    def __init__(self, port: int, args: list[str]) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ANYCABLE_")}
        for name in ("PORT", "REDIS_URL", "CABLEWAY_WORKER"):
            environment.pop(name, None)
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cableway",
                f"--workers={WORKERS}",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--http_broadcast_port={port}",
                *args,
            ],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # what the test's helpers expect of a server
        self.main_port = self.broadcast_port = port
        self.config = SimpleNamespace(http_broadcast_path="/_broadcast")

    def _read(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        with stderr:
            for line in stderr:
                self.lines.append(line)
        self.ended.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def starting_or_ended(self) -> bool:
        """Whether the supervisor logged that it starts its workers, or its log ended."""
        return self.ended.is_set() or any(STARTING.search(line) for line in list(self.lines))

    def joined(self) -> dict[int, int]:
        """pid -> worker number, of every worker that ever joined the hub (from the log)."""
        return {
            int(m.group(2)): int(m.group(1))
            for line in list(self.lines)
            if (m := JOINED.search(line))
        }

    def workers(self) -> set[int]:
        """The pids of the supervisor's running children (its workers)."""
        pid = self.process.pid
        children: set[int] = set()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            return children
        for task in tasks:
            try:
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            except FileNotFoundError:
                continue
            children.update(int(child) for child in text.split())
        return children

    async def health(self) -> str | None:
        """``/health``'s ``cableway-workers`` header (None: no answer)."""
        try:
            response = await http(self.port, "GET", "/health")
        except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError):
            return None
        return response.headers.get("cableway-workers") if response.status == 200 else None

    async def wait_up(self, *, health: bool = True) -> None:
        """Until every running worker joined the hub and (``health``) ``/health`` says all
        are up (the caller bounds the wait)."""
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the supervisor exited with status {self.process.returncode}")
            joined = len(self.workers() & set(self.joined())) == WORKERS
            if joined and (not health or await self.health() == f"{WORKERS}/{WORKERS}"):
                return
            await trio.sleep(POLL)

    async def wait_exit(self) -> int:
        """The supervisor's exit status once it exited and its log was read to the end
        (the caller bounds the wait)."""
        status = await trio.to_thread.run_sync(self.process.wait, abandon_on_cancel=True)
        await trio.to_thread.run_sync(self.ended.wait, abandon_on_cancel=True)
        return status

    def finish(self) -> None:
        """Stop the supervisor if still running: SIGTERM (it removes its hub's directory
        once its workers exited), else, after 15 s, kill it and its workers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                for pid in self.workers():
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
        self.process.wait(10)
        self._reader.join(10)
        # shown by pytest when the test failed
        sys.stderr.write(f"--- the supervisor's log ---\n{self.log}")

    def accepted(self, port: int) -> bool:
        """Whether a worker accepted the client connection from ``port``."""
        return port in self.owners()

    def owners(self) -> dict[int, int]:
        """Client port -> the pid of the worker holding the server side of its TCP
        connection to the main port (established connections only)."""
        remote_of: dict[str, int] = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == self.port:
                remote_of[inode] = int(remote.rsplit(":", 1)[1], 16)
        owners: dict[int, int] = {}
        for pid in self.workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except FileNotFoundError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except FileNotFoundError:
                    continue
                if target.startswith("socket:["):
                    client = remote_of.get(target[8:-1])
                    if client is not None:
                        owners[client] = pid
        return owners


@asynccontextmanager
async def supervisor(*args: str, health: bool = True) -> AsyncIterator[Supervisor]:
    """A running supervisor whose workers all joined (and, with ``health``, say so on
    ``/health`` over plain HTTP); stopped (or killed) afterwards.

    The port is chosen free up front (``--port`` must be 1-65535); if another process
    takes it before the supervisor binds it, the supervisor exits 1 saying so and
    another port is tried."""
    for _attempt in range(3):
        server = Supervisor(free_port(), list(args))
        try:
            with trio.fail_after(30):
                await poll_until(server.starting_or_ended)
            if "is already in use" in server.log and server.process.poll() is not None:
                continue
            with trio.fail_after(30):
                await server.wait_up(health=health)
            yield server
            return
        finally:
            server.finish()
    pytest.fail("no free port for the supervisor in three attempts")


def client_port(ws: WebSocketConnection) -> int:
    return int(ws._stream.socket.getsockname()[1])


async def connect_to(server: Supervisor, worker: int) -> trio.SocketStream:
    """A TCP connection to the main port that worker ``worker`` (a pid) accepted.

    Connections are opened until the kernel hands one to that worker (the others are
    closed unused); the caller bounds the wait."""
    while True:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        port = int(stream.socket.getsockname()[1])
        await poll_until(functools.partial(server.accepted, port))
        if server.owners().get(port) == worker:
            return stream
        await stream.aclose()


# -- 1. connections spread -------------------------------------------------------------


async def test_connections_spread_across_both_workers() -> None:
    async with supervisor("--public", "--metrics_http=/metrics") as server:
        clients: list[WebSocketConnection] = []

        async def connect(task_status: trio.TaskStatus[None]) -> None:
            async with cable(server) as ws:
                await welcome(ws)
                clients.append(ws)
                task_status.started()
                await trio.sleep_forever()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                # both workers accept on the one socket: whichever is in accept() first
                # takes a connection, so on a busy machine one may take a run of them;
                # more connections are opened (up to 200) until both serve
                while True:
                    for _ in range(40):
                        await nursery.start(connect)
                    # every welcome came from an accepted connection: each is held by a
                    # worker
                    owners = server.owners()
                    ports = [client_port(ws) for ws in clients]
                    assert all(port in owners for port in ports), (ports, owners)
                    serving = {owners[port] for port in ports}
                    assert serving <= server.workers()
                    if len(serving) == WORKERS or len(clients) >= 200:
                        break
                assert len(serving) == WORKERS, {
                    pid: sum(owners[port] == pid for port in ports) for pid in serving
                }
                # each worker answers /metrics with every worker's clients
                for pid in server.workers():
                    stream = await connect_to(server, pid)
                    async with stream:
                        status, body = await request_on(stream, server.port, "GET", "/metrics")
                    assert status == 200
                    expected = f"anycable_go_clients_num {len(clients)}"
                    assert expected in body.decode().splitlines()
                nursery.cancel_scope.cancel()


# -- 2. a broadcast reaches every worker -----------------------------------------------


async def request_on(
    stream: trio.SocketStream, port: int, method: str, target: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTP request over ``stream``; the status and the body."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("host", f"127.0.0.1:{port}"), ("content-length", str(len(body)))]
    if body:
        headers.append(("content-type", "application/json"))
    await stream.send_all(conn.send(h11.Request(method=method, target=target, headers=headers)))
    await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    status = 0
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = int(event.status_code)
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, b"".join(chunks)


async def broadcast_via(server: Supervisor, worker: int, payload: object) -> int:
    """POST ``payload`` over a connection worker ``worker`` (a pid) accepted; the status.

    Connections are opened until the kernel hands one to that worker (the others are
    closed unused)."""
    with trio.fail_after(10):
        stream = await connect_to(server, worker)
    async with stream:
        status, _ = await request_on(
            stream, server.port, "POST", "/_broadcast", json.dumps(payload).encode()
        )
        return status


async def test_a_broadcast_to_either_worker_reaches_subscribers_on_both_in_order_once() -> None:
    news = identifier("news")
    async with supervisor("--public") as server:
        a, b = sorted(server.workers())
        clients: list[tuple[WebSocketConnection, bool]] = []

        async def connect(ext: bool, task_status: trio.TaskStatus[None]) -> None:
            async with cable(server, subprotocols=EXT if ext else None) as ws:
                await welcome(ws)
                assert (await subscribe(ws, news))["type"] == "confirm_subscription"
                clients.append((ws, ext))
                task_status.started()
                await trio.sleep_forever()

        def on_each(owners: dict[int, int]) -> dict[int, int]:
            return {
                pid: sum(owners.get(client_port(ws)) == pid for ws, _ in clients) for pid in (a, b)
            }

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                # 24 subscribers (half on the extended protocol), more while a worker has
                # fewer than 4
                while len(clients) < 24 or min(on_each(server.owners()).values()) < 4:
                    assert len(clients) < 100, on_each(server.owners())
                    await nursery.start(connect, len(clients) % 2 == 1)
                # ten broadcasts, accepted by worker a and b in turn, then a batch of two
                for i in range(10):
                    payload = {"stream": "news", "data": json.dumps(f"m{i}")}
                    assert await broadcast_via(server, (a, b)[i % 2], payload) == 201
                batch = [{"stream": "news", "data": json.dumps(f"m{i}")} for i in (10, 11)]
                assert await broadcast_via(server, b, batch) == 201
                expected = [f"m{i}" for i in range(12)]
                for ws, ext in clients:
                    got = [await recv_json(ws) for _ in expected]
                    assert [m["identifier"] for m in got] == [news] * len(expected)
                    assert [m["message"] for m in got] == expected
                    if ext:  # one offset sequence, whichever worker accepted
                        assert [m["offset"] for m in got] == list(range(1, 13))
                        assert len({m["epoch"] for m in got}) == 1
                # once: the next message anyone gets is the next broadcast
                assert (
                    await broadcast(server, {"stream": "news", "data": '"last"'}, key=None)
                ).status == 201
                for ws, _ in clients:
                    assert (await recv_json(ws))["message"] == "last"
                nursery.cancel_scope.cancel()


# -- 4. SIGTERM drains every worker ----------------------------------------------------


async def test_sigterm_tells_every_client_on_every_worker_and_exits_0() -> None:
    shutdown_timeout = 2.0
    async with supervisor("--public", f"--shutdown_timeout={shutdown_timeout:g}") as server:
        a, b = sorted(server.workers())
        told: list[tuple[str, object]] = []
        ready: list[tuple[str, int]] = []

        async def ws_client(ext: bool, task_status: trio.TaskStatus[None]) -> None:
            async with cable(server, subprotocols=EXT if ext else None) as ws:
                await welcome(ws)
                ready.append(("ws", client_port(ws)))
                task_status.started()
                while True:
                    try:
                        message = json.loads(await ws.get_message())
                    except ConnectionClosed as exc:
                        told.append(("close", exc.reason.code))
                        return
                    if message.get("type") == "disconnect":
                        told.append(("ws", message))

        async def sse_client(task_status: trio.TaskStatus[None]) -> None:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                client = SseClient(stream)
                request = h11.Request(
                    method="GET", target="/events?stream=all", headers=[("host", "127.0.0.1")]
                )
                await stream.send_all(client.conn.send(request))
                await client.start()
                assert client.status == 200
                first = await client.event()
                assert first is not None
                assert first.get("event") == "welcome"
                ready.append(("sse", int(stream.socket.getsockname()[1])))
                task_status.started()
                while True:
                    with trio.move_on_after(shutdown_timeout + 10):
                        event = await client.event()
                    if event is None:
                        return
                    if event.get("event") == "disconnect":
                        told.append(("sse", json.loads(event["data"])))

        def on_each(kind: str) -> list[int]:
            owners = server.owners()
            return [
                sum(owners.get(port) == pid for k, port in ready if k == kind) for pid in (a, b)
            ]

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                # clients of every kind on both workers
                while min(on_each("ws")) < 3:
                    assert len(ready) < 100
                    await nursery.start(ws_client, len(ready) % 2 == 1)
                while min(on_each("sse")) < 2:
                    assert len(ready) < 150
                    await nursery.start(sse_client)
                os.kill(server.process.pid, signal.SIGTERM)
                # the supervisor's budget: the workers' drain, then KILL_GRACE (5 s)
                with trio.fail_after(shutdown_timeout + 5 + 10):
                    status = await server.wait_exit()
        assert status == 0, server.log
        ws_count = sum(kind == "ws" for kind, _ in ready)
        sse_count = len(ready) - ws_count
        assert told.count(("ws", SERVER_RESTART)) == ws_count, told
        assert told.count(("close", 1001)) == ws_count, told
        assert told.count(("sse", SERVER_RESTART)) == sse_count, told
        assert "Stopping 2 workers" in server.log
        assert "still running after the shutdown budget" not in server.log
        assert "Traceback" not in server.log
        for pid in (a, b):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


# -- 5. a worker that cannot start -----------------------------------------------------


async def test_a_tls_file_that_cannot_be_read_stops_the_supervisor_in_one_line(
    tmp_path: Path,
) -> None:
    cert = tmp_path / "missing-cert.pem"
    key = tmp_path / "missing-key.pem"
    server = Supervisor(free_port(), ["--public", f"--ssl_cert={cert}", f"--ssl_key={key}"])
    try:
        with trio.fail_after(30):
            status = await server.wait_exit()
    finally:
        server.finish()
    log = server.log
    assert status == 1, log
    # as one server says it: one line, the last, and no worker started
    assert "Traceback" not in log
    error = f"cableway: error: cannot read '{cert}' (--ssl_cert): No such file or directory"
    assert [line for line in log.splitlines() if "error" in line] == [error], log
    assert log.endswith(error + "\n"), log
    assert "Starting 2 workers" not in log


async def test_a_replacement_that_cannot_start_is_retried_while_the_other_worker_serves(
    tmp_path: Path,
) -> None:
    # TLS files the supervisor and the first workers read, gone before a worker is
    # replaced: the replacement cannot start until they are back
    issued = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    cert.write_bytes(chain)
    issued.private_key_pem.write_to_path(str(key))
    args = ["--public", f"--ssl_cert={cert}", f"--ssl_key={key}"]
    async with supervisor(*args, health=False) as server:
        a, b = sorted(server.workers())
        cert.unlink()
        os.kill(a, signal.SIGKILL)
        failed = re.compile(r"worker \d \(pid \d+\) could not start with status 1; starting")
        with trio.fail_after(30):
            # retried (at least twice), and the supervisor and the other worker stay up
            await poll_until(lambda: len(failed.findall(server.log)) >= 2)
        assert server.process.poll() is None, server.log
        assert b in server.workers()
        cert.write_bytes(chain)  # the file is back: the next try joins
        with trio.fail_after(30):
            await poll_until(lambda: len(server.joined()) >= 3)
        assert b in server.workers()
    log = server.log
    assert f"(pid {a}) exited with status -9; starting another" in log
    assert "could not start (exit status" not in log  # never taken for a start-up failure
    assert "Traceback" not in log


# -- 3. a worker killed under a flood --------------------------------------------------


@dataclass
class Receiver:
    """One client of the flood: what it received, as ``(offset, epoch, payload)``."""

    kind: str  # "ws" (actioncable-v1-ext-json) or "sse"
    got: list[tuple[int, str, str]] = field(default_factory=list)
    #: its local port on its current connection
    port: int = 0
    reconnects: int = 0
    #: the ``restored`` flag of each welcome after a reconnect (WebSocket)
    restored: list[bool] = field(default_factory=list)
    #: after each reconnect: the messages replayed before ``confirm_history``
    replayed: list[int] = field(default_factory=list)
    done: bool = False

    def take(self, offset: int, epoch: str, payload: str) -> None:
        self.got.append((offset, epoch, payload))
        if self.replaying:
            self.replayed[-1] += 1

    @property
    def replaying(self) -> bool:
        return len(self.replayed) > len(self.confirmed)

    confirmed: list[bool] = field(default_factory=list)


class Publisher:
    """Posts ``m0``, ``m1``... one at a time, each until a 2xx accepts it; then, asked to,
    one post its worker dies under; then :data:`AFTER_KILL` more and ``end``.

    A 2xx means the publication was accepted; a connection error means it may not have
    been (it is posted again; had its worker died after the hub stamped it and before it
    answered, it would be accepted twice: the payload is in :attr:`ambiguous`). Any other
    status means it was not accepted (it is posted again)."""

    def __init__(self, server: Supervisor) -> None:
        self.server = server
        self.accepted: list[str] = []
        self.ambiguous: set[str] = set()
        self.refused: list[int] = []
        #: set by the test: make the next post over a connection ``victim`` accepted,
        #: its body held back until :attr:`killed`
        self.trap = trio.Event()
        self.victim = 0
        self.armed = trio.Event()
        self.killed = trio.Event()
        #: what the held-back post ended with (an exception's name, or a status)
        self.trapped: str = ""
        #: set once :data:`RECONNECT_AFTER` publications were accepted after the kill
        self.missed = trio.Event()

    async def post(self, payload: str) -> None:
        body = json.dumps({"stream": "flood", "data": json.dumps(payload)}).encode()
        headers = [("content-type", "application/json")]
        while True:
            try:
                response = await http(self.server.port, "POST", "/_broadcast", body, headers)
            except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError):
                self.ambiguous.add(payload)
                continue
            if 200 <= response.status < 300:
                self.accepted.append(payload)
                return
            self.refused.append(response.status)

    async def post_under_the_kill(self, payload: str) -> None:
        """Start posting ``payload`` to the victim, finish once it was killed."""
        body = json.dumps({"stream": "flood", "data": json.dumps(payload)}).encode()
        with trio.fail_after(10):
            stream = await connect_to(self.server, self.victim)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            headers = [
                ("host", f"127.0.0.1:{self.server.port}"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]
            request = h11.Request(method="POST", target="/_broadcast", headers=headers)
            await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body[:10])))
            self.armed.set()
            await self.killed.wait()
            try:
                with trio.fail_after(10):
                    await stream.send_all(conn.send(h11.Data(data=body[10:])))
                    await stream.send_all(conn.send(h11.EndOfMessage()))
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(bytes(await stream.receive_some(65536)))
                        elif isinstance(event, h11.Response):
                            self.trapped = str(event.status_code)
                            break
            except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError) as exc:
                # (not ambiguous: its body never reached the worker)
                self.trapped = type(exc).__name__
        if not self.trapped.isdigit() or not 200 <= int(self.trapped) < 300:
            await self.post(payload)  # not accepted: again
        else:
            self.accepted.append(payload)

    async def run(self) -> None:
        i = 0
        while not self.trap.is_set():
            await self.post(f"m{i}")
            i += 1
        await self.post_under_the_kill(f"m{i}")
        i += 1
        for n in range(AFTER_KILL):  # the flood goes on past the kill
            await self.post(f"m{i}")
            i += 1
            if n + 1 == RECONNECT_AFTER:
                self.missed.set()
        await self.post("end")


#: publications after the kill; the killed worker's clients reconnect once they missed
#: the first RECONNECT_AFTER of them (as a client backing off would)
AFTER_KILL = 200
RECONNECT_AFTER = 20


def once_in_order(
    got: list[tuple[int, str, str]], published: list[str], ambiguous: set[str]
) -> None:
    """``got`` is the stream as the hub stamped it: offsets 1, 2, 3... in one epoch, the
    payloads in the order they were accepted, each once (a publication posted twice
    because its first answer was lost shows as two adjacent stamped copies)."""
    assert [offset for offset, _, _ in got] == list(range(1, len(got) + 1)), got
    assert len({epoch for _, epoch, _ in got}) == 1, got
    payloads = [payload for _, _, payload in got]
    collapsed = [
        payload
        for i, payload in enumerate(payloads)
        if not (i and payload == payloads[i - 1] and payload in ambiguous)
    ]
    assert collapsed == published, (payloads, published)


async def test_a_worker_killed_under_a_flood_loses_no_message_and_is_replaced() -> None:
    flood = identifier("flood")
    async with supervisor("--public", "--history_limit=1000") as server:
        a, b = sorted(server.workers())
        receivers: list[Receiver] = []
        publisher = Publisher(server)
        publisher.victim = a

        async def websocket(r: Receiver, task_status: trio.TaskStatus[None]) -> None:
            """As @anycable/web does: reconnect with ?sid= and ask what was missed."""
            sid: str | None = None
            while True:
                try:
                    query = "" if sid is None else f"?sid={sid}"
                    async with cable(server, query=query, subprotocols=EXT) as ws:
                        hello = await recv_json(ws)
                        assert hello["type"] == "welcome", hello
                        if sid is None:
                            confirm = await subscribe(ws, flood)
                            assert confirm["type"] == "confirm_subscription", confirm
                        else:
                            r.restored.append(hello.get("restored") is True)
                            assert hello.get("restored_ids") == [flood], hello
                            offset, epoch, _ = r.got[-1]
                            position = {"streams": {"flood": {"epoch": epoch, "offset": offset}}}
                            command = {"command": "history", "identifier": flood}
                            r.replayed.append(0)
                            await ws.send_message(json.dumps({**command, "history": position}))
                        sid = str(hello["sid"])
                        r.port = client_port(ws)
                        if r.reconnects == 0:
                            task_status.started()
                        while True:
                            try:
                                message = json.loads(await ws.get_message())
                            except ConnectionClosed:
                                break
                            kind = message.get("type")
                            assert kind != "reject_history", message
                            if kind == "confirm_history":
                                r.confirmed.append(True)
                            elif message.get("identifier") == flood and "message" in message:
                                r.take(message["offset"], message["epoch"], message["message"])
                                if message["message"] == "end":
                                    r.done = True
                                    return
                except (HandshakeError, OSError, trio.BrokenResourceError):
                    pass
                r.reconnects += 1
                await publisher.missed.wait()

        async def event_source(r: Receiver, task_status: trio.TaskStatus[None]) -> None:
            """As EventSource does: reconnect with Last-Event-ID."""
            last_id: str | None = None
            while True:
                try:
                    async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                        client = SseClient(stream)
                        headers = [("host", "127.0.0.1")]
                        if last_id is not None:
                            headers.append(("last-event-id", last_id))
                            r.replayed.append(0)
                        request = h11.Request(
                            method="GET", target="/events?stream=flood", headers=headers
                        )
                        await stream.send_all(client.conn.send(request))
                        await client.start()
                        assert client.status == 200
                        r.port = int(stream.socket.getsockname()[1])
                        while (event := await client.event()) is not None:
                            name = event.get("event")
                            assert name != "reject_history", event
                            if name == "confirm_subscription" and r.reconnects == 0:
                                task_status.started()
                            elif name == "confirm_history":
                                r.confirmed.append(True)
                            elif name is None and "id" in event:
                                offset, epoch, stream_name = event["id"].split("/", 2)
                                assert stream_name == "flood", event
                                r.take(int(offset), epoch, event["data"])
                                last_id = event["id"]
                                if event["data"] == "end":
                                    r.done = True
                                    return
                except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError):
                    pass
                r.reconnects += 1
                await publisher.missed.wait()

        def on_each(kind: str) -> list[int]:
            owners = server.owners()
            return [
                sum(owners.get(r.port) == pid for r in receivers if r.kind == kind)
                for pid in (a, b)
            ]

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                # WebSocket and SSE clients on both workers
                while len(receivers) < 16 or min(on_each("ws")) < 3:
                    assert len(receivers) < 100
                    receivers.append(Receiver("ws"))
                    await nursery.start(websocket, receivers[-1])
                while sum(r.kind == "sse" for r in receivers) < 8 or min(on_each("sse")) < 2:
                    assert len(receivers) < 200
                    receivers.append(Receiver("sse"))
                    await nursery.start(event_source, receivers[-1])
                owners = server.owners()
                on_victim = [r for r in receivers if owners[r.port] == a]
                on_survivor = [r for r in receivers if owners[r.port] == b]
                assert len(on_victim) + len(on_survivor) == len(receivers)

                nursery.start_soon(publisher.run)
                # the flood is on and every client has some of it: kill worker a while a
                # post to it is under way
                await poll_until(
                    lambda: len(publisher.accepted) >= 50 and all(r.got for r in receivers)
                )
                publisher.trap.set()
                await publisher.armed.wait()
                os.kill(a, signal.SIGKILL)
                publisher.killed.set()
        assert all(r.done for r in receivers)
        assert publisher.accepted[-1] == "end"
        assert not publisher.refused, publisher.refused
        # the post under way when its worker died failed and was posted again; no other
        # post failed (so nothing may show twice)
        assert not publisher.trapped.isdigit(), publisher.trapped
        assert publisher.ambiguous == set()
        for r in receivers:
            once_in_order(r.got, publisher.accepted, publisher.ambiguous)
        # every client saw the same stream
        assert len({tuple(r.got) for r in receivers}) == 1
        # the killed worker's clients reconnected once, restored their sessions and got
        # what they missed (at least the RECONNECT_AFTER publications accepted before
        # they reconnected) replayed from history; the others never noticed
        for r in on_victim:
            assert r.reconnects == 1, r
            assert len(r.replayed) == len(r.confirmed) == 1, r
            assert r.replayed[0] >= RECONNECT_AFTER, r
            if r.kind == "ws":
                assert r.restored == [True], r
        assert all(r.reconnects == 0 for r in on_survivor)
        # the supervisor replaced the worker
        with trio.fail_after(30):
            await server.wait_up()
        assert a not in server.workers()
        assert b in server.workers()
        assert f"(pid {a}) exited with status -9; starting another" in server.log
        assert f"(pid {a}) left the hub" in server.log


# -- 6. the supervisor killed ----------------------------------------------------------


def gone(pid: int) -> bool:
    """Whether process ``pid`` exited (a zombie no one reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_workers_whose_supervisor_was_killed_drain_and_exit() -> None:
    async with supervisor("--public", "--shutdown_timeout=2") as server:
        a, b = sorted(server.workers())
        clients: list[tuple[WebSocketConnection, int]] = []
        told: list[dict[str, Any]] = []

        async def connect(task_status: trio.TaskStatus[None]) -> None:
            async with cable(server) as ws:
                await welcome(ws)
                clients.append((ws, client_port(ws)))
                task_status.started()
                with suppress(ConnectionClosed):
                    while True:
                        message = json.loads(await ws.get_message())
                        if message.get("type") == "disconnect":
                            told.append(message)

        def on_each() -> list[int]:
            owners = server.owners()
            return [sum(owners.get(port) == pid for _, port in clients) for pid in (a, b)]

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                while min(on_each()) < 2:
                    assert len(clients) < 100
                    await nursery.start(connect)
                server.process.kill()
                # a worker that loses its hub shuts down as on SIGTERM
                await poll_until(lambda: gone(a) and gone(b))
        assert told == [SERVER_RESTART] * len(clients)
        assert "the hub is gone; shutting down" in server.log
        # the killed supervisor could not remove its hub's directory: its last worker did
        hub = re.search(r"\(hub: (/\S+)/hub\.sock\)", server.log)
        assert hub is not None
        assert not await trio.Path(hub.group(1)).exists()


# -- 7. a second signal ----------------------------------------------------------------


async def test_a_second_sigterm_kills_the_draining_workers_at_once() -> None:
    # --shutdown_delay=60: after the first SIGTERM the workers keep serving for a minute
    async with supervisor("--public", "--shutdown_delay=60") as server:
        a, b = sorted(server.workers())
        closed: list[int | None] = []
        messages: list[dict[str, Any]] = []
        ports: list[int] = []

        async def connect(task_status: trio.TaskStatus[None]) -> None:
            async with cable(server) as ws:
                await welcome(ws)
                ports.append(client_port(ws))
                task_status.started()
                try:
                    while True:
                        message = json.loads(await ws.get_message())
                        if message.get("type") != "ping":
                            messages.append(message)
                except ConnectionClosed as exc:
                    closed.append(exc.reason.code if exc.reason else None)

        def on_each() -> list[int]:
            owners = server.owners()
            return [sum(owners.get(port) == pid for port in ports) for pid in (a, b)]

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                while min(on_each()) < 2:
                    assert len(ports) < 100
                    await nursery.start(connect)
                os.kill(server.process.pid, signal.SIGTERM)
                await poll_until(lambda: server.log.count("Waiting 60s before shutting down") == 2)
                assert server.process.poll() is None
                assert await server.health() == "2/2"  # still serving
                os.kill(server.process.pid, signal.SIGTERM)
                # well inside the minute the workers would have kept serving
                with trio.fail_after(15):
                    status = await server.wait_exit()
        assert status == 0, server.log
        assert gone(a)
        assert gone(b)
        # killed: the clients' connections end without a word
        assert messages == []
        assert closed == [1006] * len(ports)


# -- 8. draining workers stop accepting --------------------------------------------------


async def test_draining_workers_refuse_new_connections_as_one_server_does() -> None:
    # one server closes its listeners before it drains, so a client (or a load
    # balancer's health check) is refused at once instead of waiting in a backlog no one
    # accepts from; a supervisor's workers must do the same
    async with supervisor("--public", "--shutdown_timeout=5") as server:
        # a client that never answers the server's close keeps its worker draining (for
        # as long as the server waits for the answer)
        stubborn = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stubborn:
            handshake = (
                "GET /cable HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
            )
            await stubborn.send_all(handshake.encode())
            received = b""
            with trio.fail_after(10):
                while b'"welcome"' not in received:
                    received += await stubborn.receive_some(65536)
                os.kill(server.process.pid, signal.SIGTERM)
                # both workers stopped accepting (one drains, the other may be gone)
                await poll_until(lambda: server.log.count("Shutting down...") == WORKERS)
            assert server.process.poll() is None  # still draining (a port held open
            # by an exited supervisor would refuse too: that could only pass wrongly)
            with (
                trio.socket.socket() as late,
                trio.fail_after(5),
                pytest.raises(ConnectionRefusedError),
            ):
                await late.connect(("127.0.0.1", server.port))
            with trio.fail_after(5 + 5 + 10):
                assert await server.wait_exit() == 0
                while data := await stubborn.receive_some(65536):
                    received += data
        assert b'"reason":"server_restart"' in received
