"""REST API requests per second on one keep-alive connection, next to ``POST /_broadcast``.

    .venv/bin/python bench/api_requests.py                  # 5 000 requests per endpoint
    .venv/bin/python bench/api_requests.py --requests 20000 --rounds 3

Cableway runs as a child process (``--broker=memory``, a secret, 127.0.0.1, a fresh port,
no subscribers); one client sends each request and reads its whole answer before the next,
on one keep-alive connection: ``POST /_broadcast`` (the raw fast path), ``POST /api/publish``
(the same intake through h11), ``GET /api/presence/<stream>/users`` (an empty stream).
Reports requests/s per endpoint (median of the rounds). Bounded in count and time; the child
is stopped on exit. On its own, not part of ``run.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SECRET = "bench-secret-of-at-least-thirty-two-bytes"
ROOT = Path(__file__).resolve().parents[1]


def _key(purpose: str) -> str:
    return hmac.new(SECRET.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
    if method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def _read_answer(sock: socket.socket, buf: bytearray) -> int:
    """Read one whole answer (head and Content-Length body); its status."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode("latin-1").lower()
    length = 0
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    status = int(head.split(" ", 2)[1])
    del buf[: end + length]
    return status


def _run(port: int, request: bytes, count: int, expect: int, limit: float) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        start = time.perf_counter()
        for done in range(count):
            sock.sendall(request)
            status = _read_answer(sock, buf)
            if status != expect:
                raise RuntimeError(f"answer {status}, expected {expect}")
            if time.perf_counter() - start > limit:
                count = done + 1
                break
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per endpoint and round")
    args = parser.parse_args()
    port = _free_port()
    env = {**os.environ, "ANYCABLE_SECRET": SECRET}
    child = subprocess.Popen(
        [sys.executable, "-m", "cableway", "--host=127.0.0.1", f"--port={port}", "--broker=memory"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("cableway did not start") from None
                time.sleep(0.05)
        body = json.dumps({"stream": "bench", "data": json.dumps("x" * 100)}).encode()
        broadcast_key, api_key = _key("broadcast-cable"), _key("api-cable")
        cases = {
            "POST /_broadcast": (_request("POST", "/_broadcast", broadcast_key, body), 201),
            "POST /api/publish": (_request("POST", "/api/publish", api_key, body), 201),
            "GET /api/presence/bench/users": (
                _request("GET", "/api/presence/bench/users", api_key),
                200,
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (request, expect) in cases.items():
                results[name].append(_run(port, request, args.requests, expect, args.max_seconds))
        for name, rates in results.items():
            print(
                f"{name:32} {statistics.median(rates):9.0f} requests/s  (rounds: "
                + ", ".join(f"{rate:.0f}" for rate in rates)
                + ")"
            )
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
