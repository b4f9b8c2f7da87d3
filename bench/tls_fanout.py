"""What TLS costs the fan-out: ``ws://`` against ``wss://`` subscribers, in one run.

For each mode (plain text, then TLS; in turn, ``--rounds`` times) one Cableway node is
started (pinned to CPU 0 when the machine has two CPUs), ``--subscribers`` WebSocket clients
subscribe to one public ``$pubsub`` stream, and ``--broadcasts`` broadcasts are POSTed to the
node's broadcast endpoint (on the main port, over the same transport as the clients) at
``--rate`` per second. Clients run in this process (CPU 1), on raw non-blocking sockets
(``ssl`` in non-blocking mode for TLS) and one ``selectors`` loop; every message carries its
intended send time, so latency includes queueing (no coordinated omission).

Printed per mode (medians over the rounds) and as TLS/plain ratios: the node's CPU
microseconds per delivery (``/proc/<pid>/stat`` over the measured window, divided by the
deliveries), latency p50/p99, and losses. Certificates are made at run time with trustme::

    .venv/bin/python bench/tls_fanout.py --subscribers 1000 --broadcasts 200 --rate 20 --rounds 3

Bounded: every round has ``--max-seconds``; the node is killed on exit. ``--json FILE``
appends one JSON line per round and one summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trustme

MARK = re.compile(rb"cwb:(\d+):(\d+):")
TAIL = 64
SERVER_CPU, CLIENT_CPU = 0, 1
TICKS = os.sysconf("SC_CLK_TCK")
IDENTIFIER = json.dumps({"channel": "$pubsub", "stream_name": "bench"}, separators=(",", ":"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


#: whether the node and the clients get a CPU each (decided once, before pinning this process)
PIN = {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)


def frame(text: str) -> bytes:
    """A masked client text frame (zero mask key: valid and free)."""
    data = text.encode()
    n = len(data)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + data


class Node:
    def __init__(self, tls: tuple[Path, Path] | None, workdir: Path, tag: str) -> None:
        self.port = free_port()
        profile = os.environ.get("TLS_BENCH_PROFILE")  # a directory: cProfile the node there
        self.profiled = bool(profile)
        cmd = [
            sys.executable,
            *(["-m", "cProfile", "-o", f"{profile}/{tag}.prof"] if profile else []),
            "-m",
            "cableway",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--noauth",
            "--public_streams",
            "--broker=none",
            "--broadcast_key=bench-key",
            "--log_level=warn",
            "--ws_max_pending_size=67108864",
        ]
        if tls is not None:
            cmd += [f"--ssl_cert={tls[0]}", f"--ssl_key={tls[1]}"]

        def pin() -> None:
            if PIN:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, {SERVER_CPU})

        self.log = open(workdir / f"{tag}.log", "ab")  # noqa: SIM115 - lives with the node
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, preexec_fn=pin)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"the node did not start: see {workdir / tag}.log")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.profiled:  # let cProfile write its file
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.proc.kill()
        self.proc.wait()
        self.log.close()


class Clients:
    """N subscribers on one selectors loop; counts markers and their latencies."""

    def __init__(self, port: int, n: int, context: ssl.SSLContext | None) -> None:
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.tails: dict[int, bytes] = {}
        self.latencies: list[int] = []
        self.seen = 0
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(
                b"GET /cable HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
            )
            got = b""
            while b"confirm_subscription" not in got:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("a subscriber was closed during set-up")
                got += chunk
                if b'"welcome"' in got and b"subscribe" not in got:
                    sock.sendall(
                        frame(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
                    )
                    got += b"subscribe"  # sent once
            sock.setblocking(False)
            self.socks.append(sock)
            self.tails[sock.fileno()] = b""
            self.selector.register(sock, selectors.EVENT_READ)

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = b""
            try:
                while chunk := sock.recv(262144):  # until it would block
                    data += chunk
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            if not data:
                continue
            now = time.monotonic_ns()
            fd = sock.fileno()
            buf = self.tails[fd] + data
            end = 0
            for match in MARK.finditer(buf):
                self.seen += 1
                self.latencies.append(now - int(match.group(2)))
                end = match.end()
            self.tails[fd] = buf[max(end, len(buf) - TAIL) :]

    def close(self) -> None:
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()
        self.selector.close()


def publisher(
    port: int,
    context: ssl.SSLContext | None,
    count: int,
    rate: float,
    payload: int,
    start_ns: int,
    errors: list[str],
) -> None:
    """POST ``count`` broadcasts on one keep-alive connection, on an open-loop schedule."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    pad = "x" * payload
    reader = sock.makefile("rb")
    try:
        for seq in range(count):
            due = start_ns + int(seq * 1e9 / rate)
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            data = json.dumps(f"cwb:{seq}:{due}:{pad}")
            body = json.dumps({"stream": "bench", "data": data}).encode()
            sock.sendall(
                b"POST /_broadcast HTTP/1.1\r\nHost: localhost\r\n"
                b"Authorization: Bearer bench-key\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = reader.readline()
            while reader.readline() not in (b"\r\n", b""):
                pass
            if b" 201 " not in status:
                errors.append(status.decode(errors="replace"))
                return
    finally:
        reader.close()
        sock.close()


def one_round(
    mode: str, files: tuple[Path, Path], ca: trustme.CA, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    tls = mode == "tls"
    context = None
    if tls:
        context = ssl.create_default_context()
        ca.configure_trust(context)
    node = Node(files if tls else None, workdir, mode)
    clients = None
    try:
        clients = Clients(node.port, args.subscribers, context)
        errors: list[str] = []
        # warm-up (not measured): the first requests and deliveries of a fresh node
        start_ns = time.monotonic_ns()
        publisher(node.port, context, 5, args.rate, args.payload, start_ns, errors)
        deadline = time.monotonic() + args.max_seconds
        while clients.seen < 5 * args.subscribers and time.monotonic() < deadline:
            clients.pump(0.05)
        clients.seen, clients.latencies = 0, []
        expected = args.subscribers * args.broadcasts
        start_ns = time.monotonic_ns() + 200_000_000
        thread = threading.Thread(
            target=publisher,
            args=(node.port, context, args.broadcasts, args.rate, args.payload, start_ns, errors),
            daemon=True,
        )
        cpu0 = cpu_seconds(node.proc.pid)
        own0 = time.process_time()
        wall0 = time.monotonic()
        thread.start()
        deadline = wall0 + args.max_seconds
        while clients.seen < expected and time.monotonic() < deadline and not errors:
            clients.pump(0.05)
        cpu1 = cpu_seconds(node.proc.pid)
        wall = time.monotonic() - wall0
        own = time.process_time() - own0
        thread.join(timeout=5)
        latencies = sorted(clients.latencies)

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6

        return {
            "mode": mode,
            "subscribers": args.subscribers,
            "broadcasts": args.broadcasts,
            "rate": args.rate,
            "payload": args.payload,
            "delivered": clients.seen,
            "lost": expected - clients.seen,
            "errors": errors,
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "wall_s": round(wall, 3),
            # above ~0.85 the clients (this process) bound the latency, not the node
            "client_cpu_frac": round(own / wall, 3),
            "us_per_delivery": round((cpu1 - cpu0) * 1e6 / max(1, clients.seen), 3),
            "p50_ms": round(pct(0.50), 3) if latencies else None,
            "p99_ms": round(pct(0.99), 3) if latencies else None,
        }
    finally:
        if clients is not None:
            clients.close()
        node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="broadcasts per second")
    parser.add_argument("--payload", type=int, default=200, help="padding bytes per message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per round")
    parser.add_argument("--json", help="append JSON lines (rounds, then the summary) here")
    args = parser.parse_args()
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with tempfile.TemporaryDirectory(prefix="cableway-tls-bench-") as tmp:
        workdir = Path(tmp)
        ca = trustme.CA()
        issued = ca.issue_cert("localhost", "127.0.0.1")
        cert, key = workdir / "server.crt", workdir / "server.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
        rows: list[dict[str, Any]] = []
        for round_no in range(args.rounds):
            for mode in ("plain", "tls"):
                row = one_round(mode, (cert, key), ca, args, workdir)
                row["round"] = round_no
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    summary: dict[str, Any] = {"summary": True, "pinned": PIN}
    for mode in ("plain", "tls"):
        mine = [row for row in rows if row["mode"] == mode]
        for field in ("us_per_delivery", "p50_ms", "p99_ms"):
            values = [row[field] for row in mine if row[field] is not None]
            summary[f"{mode}_{field}"] = round(statistics.median(values), 3) if values else None
        summary[f"{mode}_lost"] = sum(row["lost"] for row in mine)
    for field in ("us_per_delivery", "p50_ms", "p99_ms"):
        plain, tls = summary[f"plain_{field}"], summary[f"tls_{field}"]
        summary[f"ratio_{field}"] = round(tls / plain, 2) if plain and tls else None
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
            out.write(json.dumps(summary) + "\n")
    return 0 if summary["plain_lost"] == 0 and summary["tls_lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
