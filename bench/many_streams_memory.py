"""One million streams in the memory broker: memory per stream, idle CPU, /health stalls.

Starts a Cableway server on 127.0.0.1 (fresh ports, the default memory broker), publishes
``--streams`` distinct streams once each through ``POST /_broadcast`` (arrays of
publications, each body under 1 MB, on one kept-alive connection), then measures:

* **RSS per stream**: the server's ``VmRSS`` after publishing (and a settle) minus before,
  divided by the number of streams;
* **idle CPU**: the server's CPU time (``/proc/PID/stat``) over ``--idle`` seconds in which
  nobody talks to it;
* **/health stalls**: a separate probe process sends ``GET /health`` every 20 ms on a
  kept-alive connection for ``--probe`` seconds and reports the slowest answers;
* **mass expiry** (unless ``--no-expiry``): the probe keeps running until every stream's
  message is past ``--history_ttl`` and the sweep has dropped it, and reports the slowest
  answers, the CPU the expiry took and the RSS after.

The server runs on CPU 0 and the load on CPU 1 (``sched_setaffinity``), when there are two.
Every step is bounded in time (``--max-seconds`` in all). ``--src DIR`` runs the server from
another checkout's package (``DIR/cableway``), to measure a build before a change::

    .venv/bin/python bench/many_streams_memory.py                       # 1 000 000 streams
    .venv/bin/python bench/many_streams_memory.py --streams 200000 --history_ttl 30
    .venv/bin/python bench/many_streams_memory.py --history_max_bytes 100000000

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_BODY = 1_000_000  # under the default --max_broadcast_body (1 MiB)
MAX_BATCH = 10_000  # publications per POST the server accepts
PROBE_INTERVAL = 0.02


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def say(text: str) -> None:
    print(text, flush=True)


# -- the /health probe (a process of its own, so that the publisher never delays it) ------


def schedstat(pid: int) -> tuple[int, int]:
    """(ns the process's main thread ran, ns it waited for a CPU) since it started."""
    with open(f"/proc/{pid}/schedstat") as f:
        ran, waited, _ = f.read().split()
    return int(ran), int(waited)


def probe(port: int, server_pid: int, seconds: float, out_path: str) -> None:
    """GET /health every PROBE_INTERVAL for ``seconds`` or until SIGTERM; write the
    latencies (ms) as JSON, with the time the server ran and waited for a CPU during
    each request (a busy machine delays answers the server did not cause)."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    latencies: list[float] = []
    ran_ms: list[float] = []
    waited_ms: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    next_at = time.monotonic()
    while time.monotonic() < deadline and not stop:
        ran0, waited0 = schedstat(server_pid)
        start = time.perf_counter()
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if ok:
            latencies.append((time.perf_counter() - start) * 1000)
            ran1, waited1 = schedstat(server_pid)
            ran_ms.append((ran1 - ran0) / 1e6)
            waited_ms.append((waited1 - waited0) / 1e6)
        else:
            errors += 1
        next_at += PROBE_INTERVAL
        time.sleep(max(0.0, next_at - time.monotonic()))
    with open(out_path, "w") as f:
        json.dump(
            {"latencies_ms": latencies, "ran_ms": ran_ms, "waited_ms": waited_ms, "errors": errors},
            f,
        )


@contextlib.contextmanager
def probing(
    port: int, server_pid: int, seconds: float, tmp: str, cpu: int | None
) -> Iterator[dict[str, object]]:
    """Run the probe process while the block runs (``seconds`` at most); its summary is put
    in the yielded dict when the block ends."""
    out_path = os.path.join(tmp, f"probe-{time.monotonic_ns()}.json")
    cmd = [sys.executable, __file__, "--probe-only", str(port), str(server_pid), str(seconds)]
    cmd.append(out_path)
    proc = subprocess.Popen(cmd)
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, {cpu})
    summary: dict[str, object] = {}
    try:
        yield summary
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(out_path) as f:
        data = json.load(f)
    lat = sorted(data["latencies_ms"])
    ran, waited = data["ran_ms"], data["waited_ms"]
    summary.update(
        requests=len(lat),
        errors=data["errors"],
        max_ms=round(lat[-1], 2) if lat else None,
        p99_ms=round(lat[int(len(lat) * 0.99) - 1], 2) if len(lat) >= 100 else None,
        median_ms=round(statistics.median(lat), 2) if lat else None,
        over_20ms=sum(1 for v in lat if v > 20),
        # the server's own share: the most CPU it used while one request was in flight
        # (its stall bound), and the longest it waited for a CPU meanwhile
        server_ran_max_ms=round(max(ran), 2) if ran else None,
        server_waited_max_ms=round(max(waited), 2) if waited else None,
    )


# -- the run --------------------------------------------------------------------------------


def wait_healthy(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.1)
    raise SystemExit(f"the server did not answer /health on port {port} in {seconds} s")


def bodies(streams: int) -> Iterator[tuple[int, bytes]]:
    """(publications, body) batches under MAX_BODY and MAX_BATCH: every stream once."""
    batch: list[bytes] = []
    size = 2
    for i in range(streams):
        item = b'{"stream":"bench-stream-%07d","data":"\\"message %07d\\""}' % (i, i)
        if size + len(item) + 1 > MAX_BODY or len(batch) == MAX_BATCH:
            yield len(batch), b"[" + b",".join(batch) + b"]"
            batch, size = [], 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield len(batch), b"[" + b",".join(batch) + b"]"


def publish(bport: int, streams: int, deadline: float) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", bport, timeout=60)
    start = time.monotonic()
    sent = 0
    for count, body in bodies(streams):
        if time.monotonic() > deadline:
            raise SystemExit(f"publishing took too long: {sent} of {streams} streams")
        conn.request("POST", "/_broadcast", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if not 200 <= response.status < 300:
            raise SystemExit(f"POST /_broadcast answered {response.status}")
        sent += count
    conn.close()
    return time.monotonic() - start


def idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def run(args: argparse.Namespace) -> dict[str, object]:
    import tempfile

    two_cpus = len(os.sched_getaffinity(0)) >= 2
    server_cpu, load_cpu = (0, 1) if two_cpus else (None, None)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    port, bport = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "cableway",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--http_broadcast_port={bport}",
        "--public",
        f"--history_ttl={args.history_ttl}",
        "--log_level=warn",
    ]
    if args.history_max_bytes:
        cmd.append(f"--history_max_bytes={args.history_max_bytes}")
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.path.abspath(args.src)
    overall = time.monotonic() + args.max_seconds
    result: dict[str, object] = {
        "streams": args.streams,
        "history_ttl": args.history_ttl,
        "history_max_bytes": args.history_max_bytes,
        "src": args.src or "this checkout",
        "python": sys.version.split()[0],
        "loadavg_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="cableway-streams-") as tmp:
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            if server_cpu is not None:
                os.sched_setaffinity(server.pid, {server_cpu})
            wait_healthy(port, 20)
            time.sleep(1)
            rss0 = rss_bytes(server.pid)
            say(f"server pid {server.pid}, RSS at start {rss0 / 2**20:.1f} MiB")

            # publish, with the probe watching
            published_at = time.time()
            cpu_before = cpu_seconds(server.pid)
            with probing(port, server.pid, args.max_seconds, tmp, load_cpu) as during_publish:
                took = publish(bport, args.streams, overall)
            cpu_publish = cpu_seconds(server.pid) - cpu_before
            say(
                f"published {args.streams} streams in {took:.1f} s "
                f"({args.streams / took:,.0f}/s, server CPU {cpu_publish:.1f} s); "
                f"/health during publishing: {during_publish}"
            )
            result.update(
                publish_seconds=round(took, 2),
                publish_server_cpu_s=round(cpu_publish, 2),
                health_during_publish=during_publish,
            )

            time.sleep(args.settle)
            rss1 = rss_bytes(server.pid)
            per_stream = (rss1 - rss0) / args.streams
            say(
                f"RSS {rss1 / 2**20:.1f} MiB: +{(rss1 - rss0) / 2**20:.1f} MiB, "
                f"{per_stream:.0f} bytes per stream"
            )
            result.update(rss_start=rss0, rss_published=rss1, rss_per_stream=round(per_stream))

            # idle: nobody talks to the server
            cpu = idle_cpu(server.pid, args.idle)
            say(f"idle CPU over {args.idle:.0f} s: {cpu:.2f} %")
            result["idle_cpu_percent"] = round(cpu, 2)

            # /health while idle
            with probing(port, server.pid, args.probe, tmp, load_cpu) as idle_health:
                time.sleep(args.probe)
            say(f"/health while idle ({args.probe:.0f} s): {idle_health}")
            result["health_idle"] = idle_health

            if not args.no_expiry:
                # every message expires history_ttl after it was published; the sweep then
                # drops it within a second: probe until a few seconds after the last one
                due = published_at + took + args.history_ttl + 3 - time.time()
                if time.monotonic() + due + 30 > overall:
                    say(f"mass expiry skipped: due in {due:.0f} s, past --max-seconds")
                else:
                    wait = max(0.0, published_at + args.history_ttl - 5 - time.time())
                    time.sleep(wait)
                    span = max(5.0, published_at + took + args.history_ttl + 3 - time.time())
                    cpu_before = cpu_seconds(server.pid)
                    with probing(port, server.pid, span, tmp, load_cpu) as expiry_health:
                        time.sleep(span)
                    cpu_expiry = cpu_seconds(server.pid) - cpu_before
                    rss2 = rss_bytes(server.pid)
                    cpu_after = idle_cpu(server.pid, min(args.idle, 10))
                    say(
                        f"/health during the mass expiry ({span:.0f} s): {expiry_health}; "
                        f"server CPU {cpu_expiry:.1f} s; RSS after {rss2 / 2**20:.1f} MiB; "
                        f"idle CPU after {cpu_after:.2f} %"
                    )
                    result.update(
                        health_expiry=expiry_health,
                        expiry_server_cpu_s=round(cpu_expiry, 2),
                        rss_after_expiry=rss2,
                        idle_cpu_after_expiry_percent=round(cpu_after, 2),
                    )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    result["loadavg_end"] = os.getloadavg()
    return result


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--probe-only":
        probe(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1_000_000)
    parser.add_argument("--history_ttl", type=float, default=120.0)
    parser.add_argument("--history_max_bytes", type=int, default=0)
    parser.add_argument("--idle", type=float, default=20.0, help="idle CPU window, seconds")
    parser.add_argument("--probe", type=float, default=20.0, help="/health window, seconds")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--no-expiry", action="store_true", help="skip the mass expiry")
    parser.add_argument("--src", help="run the server from DIR/cableway (another build)")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
