"""Large batches to readers that keep up: does every accepted publication arrive?

    .venv/bin/python bench/burst.py                               # 200 readers, 2 000 x 400 B
    .venv/bin/python bench/burst.py --batch 2000 --rate 2 --json burst.jsonl

N WebSocket subscribers of one stream (raw sockets on the load generator's epoll loop,
reading as fast as they can); POSTs each carrying ``--batch`` publications of
``--payload`` bytes of padding (about 0.9 MB per body with the defaults, under the 1 MiB
``--max_broadcast_body``; on the wire each message also carries the identifier, so each
subscriber gets ~1.6 MB per POST), at ``--rate`` POSTs per second for ``--duration``
seconds. Reports deliveries, losses and the connections the server dropped (``too_slow``),
with the load generator's CPU share: near 100 %, the readers are the limit, not the
server. Cableway runs as in ``run.py`` (CPU 0, ``--broker=none``); the load generator on
CPU 1. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # bench/ is not a package
    LOADGEN_CPU,
    SECRET,
    SERVER_CPU,
    Target,
    cableway_features,
    can_pin,
    free_port,
    machine,
    run_loadgen,
    say,
    spawn,
    stop,
    stop_all,
    wait_listening,
)

KEYS = (
    "posts",
    "responses",
    "http_errors",
    "expected",
    "received",
    "lost",
    "dropped_conns",
    "reordered",
    "lat_p50_ms",
    "lat_p99_ms",
    "server_cpu_frac",
    "loadgen_cpu_frac",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=200, help="subscribers")
    parser.add_argument("--batch", type=int, default=2000, help="publications per POST")
    parser.add_argument("--payload", type=int, default=400, help="padding bytes per message")
    parser.add_argument("--rate", type=float, default=1.0, help="POSTs per second")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of publishing")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--json", help="append JSON lines (meta and results) here")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if can_pin():
        os.sched_setaffinity(0, {LOADGEN_CPU})
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    meta = machine() | {"argv": sys.argv[1:]}
    say(f"machine: {meta['cpu']} x{meta['cpus']}, load {meta['loadavg']}, commit {meta['commit']}")
    port, bport = free_port(), free_port()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cableway-burst-") as tmp:
        workdir = Path(tmp)
        target = Target("cableway", cableway_features())
        server = spawn(target.command(port, bport, "burst"), SERVER_CPU, workdir / "server.log")
        try:
            if not wait_listening(server, [port, bport]):
                raise SystemExit("cableway did not start")
            spec = {
                "port": port,
                "broadcast_port": bport,
                "server_pid": server.pid,
                "secret": SECRET,
                "signed": True,
                "payload": args.payload,
                "server_cpu": SERVER_CPU,
                "steps": [
                    {"op": "connect", "total": args.total, "streams": "one", "pi": 0},
                    {
                        "op": "publish",
                        "rate": args.rate,
                        "duration": args.duration,
                        "batch": args.batch,
                        "streams": "one",
                    },
                ],
            }
            results = run_loadgen(spec, "burst", workdir, args)
        finally:
            stop(server)
    published = [r for r in results if r.get("op") == "publish"]
    for r in published:
        print(json.dumps({k: r.get(k) for k in KEYS}))
    if args.json:
        with open(args.json, "a") as f:
            for record in [meta, *({"kind": "result", **r} for r in results)]:
                f.write(json.dumps(record) + "\n")
    ok = bool(published) and all(
        r.get("lost") == 0 and not r.get("dropped_conns") for r in published
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
