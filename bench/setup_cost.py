"""Server CPU per connection's life, as the mix's churn clients live it.

    .venv/bin/python bench/setup_cost.py                            # cableway and floor-trio
    .venv/bin/python bench/setup_cost.py --targets cableway,cableway-base \\
        --baseline /tmp/base/src --count 3000 --rounds 3
    .venv/bin/python bench/setup_cost.py --targets cableway --profile /tmp/prof

Each connection does what a churn client of scenario (i) does (``loadgen.py``,
``Churn``): connect, send the upgrade with ``?pi=3`` and ``actioncable-v1-json``, read
the ``101`` and the ``welcome``, subscribe to a signed Turbo stream, read the
confirmation, then leave: every other one with a close frame and a reset, the others
with a reset alone. The connections are served one after another (as the mix's 100 a
second arrive: one at a time), from this process pinned to CPU 1; the server runs as in
``run.py`` (pinned to CPU 0). The figure is the server's CPU time (``schedstat`` of all
its threads) over the connections, less what it spends idle in the same wall time, per
connection; with it the same time split into user (the Python) and system (the kernel) time
from ``/proc/<pid>/stat``, which varies less from round to round than the total (use
``--count 10000`` or more: the split is counted in clock ticks). Bounded: ``--count``
connections per round, each socket with a 5 s timeout.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/ is not a package
from loadgen import WS_KEY, client_frame, client_frame_close, sign_stream_name


def server_cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def server_user_sys_s(pid: int) -> tuple[float, float]:
    """User and system CPU time of ``pid`` (every thread) so far, in seconds (clock ticks:
    exact enough over thousands of lives, and the split ``schedstat`` does not give)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def read_until(sock: socket.socket, buf: bytearray, marker: bytes) -> None:
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        buf += chunk


def one_life(port: int, request: bytes, subscribe: bytes, close_frame: bool) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        buf = bytearray()
        read_until(sock, buf, b"welcome")
        sock.sendall(subscribe)
        read_until(sock, buf, b"confirm_subscription")
        if close_frame:
            sock.sendall(client_frame_close(1000))
    finally:
        sock.close()  # SO_LINGER 0: a reset


def start_profiler(
    pid: int, outdir: Path, name: str, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    """py-spy on CPU 1 (``--native``: C frames too), raw format for flame graphs."""
    outdir.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", str(args.profile_rate)]
    cmd += ["--format", "raw", "--output", str(outdir / f"{name}.txt")]
    # --native stops the process for each sample (py-spy cannot do it without): the CPU
    # figures of a profiled run are not the ones to quote
    cmd.append("--native" if args.native else "--nonblocking")
    proc = run.spawn(cmd, run.LOADGEN_CPU, outdir / f"{name}.py-spy.log")
    time.sleep(1.0)
    return proc


def measure(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    target = run.Target(name, run.cableway_features())
    port, bport = run.free_port(), run.free_port()
    log_path = workdir / f"setup-{name}.log"
    server = run.spawn(target.command(port, bport, "i"), run.SERVER_CPU, log_path, env=target.env())
    profiler = None
    try:
        if not run.wait_listening(server, [port, bport]):
            raise SystemExit(f"{name} did not start (see {log_path})")
        if args.profile:
            profiler = start_profiler(server.pid, Path(args.profile), f"setup-{name}", args)
        identifier = json.dumps(
            {
                "channel": "Turbo::StreamsChannel",
                "signed_stream_name": sign_stream_name("churn", run.SECRET),
            },
            separators=(",", ":"),
        )
        subscribe = client_frame(
            json.dumps({"command": "subscribe", "identifier": identifier}, separators=(",", ":"))
        )
        request = (
            f"GET /cable?pi={run.PING_INTERVAL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
        ).encode()
        for i in range(min(200, args.count)):  # warm-up
            one_life(port, request, subscribe, bool(i % 2))
        time.sleep(0.5)
        c0, t0 = server_cpu_ns(server.pid), time.monotonic()
        time.sleep(1.0)
        idle_rate = (server_cpu_ns(server.pid) - c0) / (time.monotonic() - t0)
        c0, t0 = server_cpu_ns(server.pid), time.monotonic()
        user0, sys0 = server_user_sys_s(server.pid)
        for i in range(args.count):
            one_life(port, request, subscribe, bool(i % 2))
        time.sleep(0.3)  # the last tear-downs
        cpu, wall = server_cpu_ns(server.pid) - c0, time.monotonic() - t0
        user1, sys1 = server_user_sys_s(server.pid)
        per_conn = (cpu - idle_rate * wall) / args.count / 1000
        return {
            "target": name,
            "count": args.count,
            "wall_s": round(wall, 3),
            "server_cpu_us_per_conn": round(per_conn, 2),
            # the same split in user (Python) and system (kernel) time, idle included
            "server_user_us_per_conn": round((user1 - user0) / args.count * 1e6, 1),
            "server_sys_us_per_conn": round((sys1 - sys0) / args.count * 1e6, 1),
            "idle_cpu_share": round(idle_rate / 1e9, 4),
        }
    finally:
        if profiler is not None:
            run.stop(profiler, signal.SIGINT, wait=20)
        run.stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="cableway,floor-trio")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", help="a checkout's src/, run as cableway-base")
    parser.add_argument("--profile", help="directory for py-spy profiles (raw format)")
    parser.add_argument("--profile-rate", type=int, default=500, help="py-spy samples/s")
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--json", help="append one line per target and round to this file")
    args = parser.parse_args()
    if args.baseline:
        base = Path(tempfile.mkdtemp(prefix="cableway-base-"))
        atexit.register(shutil.rmtree, base, True)
        (base / "cableway").symlink_to(Path(args.baseline).resolve())
        run.BASELINE = base
    atexit.register(run.stop_all)
    if run.can_pin():
        os.sched_setaffinity(0, {run.LOADGEN_CPU})
    workdir = Path(tempfile.mkdtemp(prefix="setup-cost-"))
    for r in range(args.rounds):
        for name in args.targets.split(","):
            result = measure(name, args, workdir) | {"round": r + 1}
            print(json.dumps(result), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
