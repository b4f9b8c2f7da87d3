"""Commands per second through Cableway's RPC client against the Python SDK app, and the
latency a client sees.

    .venv/bin/python bench/rpc_server.py                         # 1, 8 and 32 clients
    .venv/bin/python bench/rpc_server.py --clients 1,16 --commands 500 --unthreaded
    .venv/bin/python bench/rpc_server.py --rounds 3                # medians of 3 rounds

Three processes on 127.0.0.1: the channels app of ``bench/rpc_app.py`` (``Chat``: an
action that reads and writes channel state and transmits) under uvicorn (h11), pinned to
CPU 1; ``cableway --rpc_host`` pointing at it, pinned to CPU 0; and this script, the
clients (trio-websocket, Action Cable JSON protocol), on CPU 1 with the app. For each
client count:

* **connect**: every client opens a WebSocket (a Connect call), subscribes (a Command
  call) and waits for the confirmation: the time from the handshake to
  ``confirm_subscription`` (p50/p99) and sessions per second;
* **commands**: every client then sends ``--commands`` ``perform("remember")`` one after
  another, each waiting for the reply the app transmits (closed loop, as a user's actions
  are): commands per second for all clients together, the latency each command waits
  (p50/p99/max), and the CPU seconds the server and the app spent per 1 000 commands.

Bounded: a fixed number of clients and commands, every wait under ``--max-seconds``,
child processes stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

BENCH = Path(__file__).resolve().parent
IDENTIFIER = '{"channel":"Chat","room":"42"}'
SECRET = "rpc-server-bench-secret-0123456789"  # 32+ bytes: no short-secret warning
SERVER_CPU = 0
APP_CPU = 1


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


# -- the app process ------------------------------------------------------------------------


def serve_app(threaded: bool) -> None:
    """Runs the SDK app under uvicorn; prints its port as a JSON line."""
    import uvicorn

    sys.path.insert(0, str(BENCH))
    from rpc_app import Chat

    from cableway.channels import Application, Connection

    app = Application(Connection, [Chat], secret=SECRET).asgi(threaded=threaded)
    # IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listener says
    # TCP (else every answer waits ~40 ms for a delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    config = uvicorn.Config(app, lifespan="off", http="h11", log_config=None, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def processes(threaded: bool, max_seconds: float) -> Iterator[tuple[int, int, int]]:
    """(cable port, server pid, app pid) of the app and ``cableway --rpc_host``."""
    started: list[subprocess.Popen[str]] = []
    try:
        app_argv = [sys.executable, __file__, "--serve-app"]
        if not threaded:
            app_argv.append("--unthreaded")
        app = subprocess.Popen(
            app_argv, stdout=subprocess.PIPE, text=True, preexec_fn=lambda: pin(APP_CPU)
        )
        started.append(app)
        assert app.stdout is not None
        app_port = json.loads(app.stdout.readline())["port"]
        port = free_port()
        server_argv = [
            *(sys.executable, "-m", "cableway", "--host=127.0.0.1", f"--port={port}"),
            f"--rpc_host=http://127.0.0.1:{app_port}/_anycable",
            f"--secret={SECRET}",  # the app derives the same RPC key from it
            *("--log_level=warn", "--shutdown_timeout=2"),
            # one client here sends far more than the 100 commands/s per connection the
            # server allows by default (excess commands are dropped)
            "--commands_rate=0",
        ]
        server = subprocess.Popen(
            server_argv,
            preexec_fn=lambda: pin(SERVER_CPU),
        )
        started.append(server)
        deadline = time.monotonic() + max_seconds
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("cableway did not start")
            time.sleep(0.05)  # start-up poll, bounded by the deadline
        yield port, server.pid, app.pid
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


# -- clients --------------------------------------------------------------------------------


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def next_message(self) -> dict[str, Any]:
        """The next frame that is not a ping."""
        while True:
            message = json.loads(await self.ws.get_message())
            if message.get("type") != "ping":
                return dict(message)


async def run_clients(
    port: int, clients: int, commands: int, pids: tuple[int, int], max_seconds: float
) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/cable"
    connect_latencies: list[float] = []
    command_latencies: list[float] = []
    all_ready = trio.Event()
    ready = 0
    go = trio.Event()
    finished = 0
    all_done = trio.Event()
    perform = json.dumps(
        {
            "command": "message",
            "identifier": IDENTIFIER,
            "data": json.dumps({"action": "remember", "message": "hi"}),
        }
    )

    async def one() -> None:
        nonlocal ready, finished
        start = time.perf_counter()
        async with open_websocket_url(url, subprotocols=["actioncable-v1-json"]) as ws:
            client = Client(ws)
            welcome = await client.next_message()
            assert welcome["type"] == "welcome", welcome
            await ws.send_message(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
            confirm = await client.next_message()
            assert confirm.get("type") == "confirm_subscription", confirm
            connect_latencies.append(time.perf_counter() - start)
            ready += 1
            if ready == clients:
                all_ready.set()
            await go.wait()
            for _ in range(commands):
                sent = time.perf_counter()
                await ws.send_message(perform)
                reply = await client.next_message()
                assert reply.get("identifier") == IDENTIFIER, reply
                command_latencies.append(time.perf_counter() - sent)
            finished += 1
            if finished == clients:
                all_done.set()

    server_pid, app_pid = pids
    with trio.fail_after(max_seconds):
        async with trio.open_nursery() as nursery:
            connect_start = time.perf_counter()
            for _ in range(clients):
                nursery.start_soon(one)
            await all_ready.wait()
            connect_elapsed = time.perf_counter() - connect_start
            cpu_before = cpu_seconds(server_pid), cpu_seconds(app_pid)
            start = time.perf_counter()
            go.set()
            await all_done.wait()
            elapsed = time.perf_counter() - start
            cpu_after = cpu_seconds(server_pid), cpu_seconds(app_pid)
    total = clients * commands
    connect_latencies.sort()
    command_latencies.sort()
    return {
        "sessions_per_s": clients / connect_elapsed,
        "connect_p50_ms": statistics.median(connect_latencies) * 1e3,
        "connect_p99_ms": percentile(connect_latencies, 0.99) * 1e3,
        "commands_per_s": total / elapsed,
        "p50_ms": statistics.median(command_latencies) * 1e3,
        "p99_ms": percentile(command_latencies, 0.99) * 1e3,
        "max_ms": command_latencies[-1] * 1e3,
        "server_cpu_s_per_1k": (cpu_after[0] - cpu_before[0]) / total * 1000,
        "app_cpu_s_per_1k": (cpu_after[1] - cpu_before[1]) / total * 1000,
    }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank."""
    return values[max(0, math.ceil(len(values) * fraction) - 1)]


def show(figures: dict[str, float]) -> str:
    return "  ".join(f"{key}={value:,.2f}" for key, value in figures.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32", help="client counts, comma-separated")
    parser.add_argument("--commands", type=int, default=1000, help="per client")
    parser.add_argument("--rounds", type=int, default=1, help="every count N times, medians")
    parser.add_argument("--unthreaded", action="store_true", help="app: callbacks on the loop")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per client count")
    parser.add_argument("--json", help="append the results as JSON lines to this file")
    parser.add_argument("--serve-app", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_app:
        serve_app(threaded=not args.unthreaded)
        return 0
    pin(APP_CPU)
    counts = [int(item) for item in args.clients.split(",")]
    label = "on the loop" if args.unthreaded else "threaded"
    print(
        f"cableway --rpc_host -> channels SDK under uvicorn ({label}), {args.commands} per client"
    )
    rounds: dict[int, list[dict[str, float]]] = {clients: [] for clients in counts}
    with processes(not args.unthreaded, args.max_seconds) as (port, server_pid, app_pid):
        for number in range(1, args.rounds + 1):
            for clients in counts:
                figures = trio.run(
                    run_clients,
                    *(port, clients, args.commands, (server_pid, app_pid), args.max_seconds),
                )
                rounds[clients].append(figures)
                print(f"round {number}  {clients:4} clients  {show(figures)}")
    if args.rounds > 1:
        print(f"medians of {args.rounds} rounds")
    for clients, results in rounds.items():
        medians = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"{clients:4} clients  {show(medians)}")
        if args.json:
            with open(args.json, "a", encoding="utf-8") as out:
                record = {"bench": "rpc_server", "app": label, "clients": clients, **medians}
                out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
