"""Connection churn: is the server's memory flat when clients come and go?

    .venv/bin/python bench/churn.py                          # N=2000, 60 rounds
    .venv/bin/python bench/churn.py --total 500 --rounds 10  # a quick look
    .venv/bin/python bench/churn.py --json churn.jsonl

Each round opens N WebSocket connections that subscribe (one stream for all, or
``--streams own``: one stream each), receive one broadcast, and leave: half close
cleanly (a close frame, the server's reply, EOF), half drop the TCP connection (RST,
no close frame). Once the server's ``clients_num`` is back to 0 the round records the
server's RSS. The target: RSS after the last round within 10 % of RSS after round 5.

With ``--cost`` it also runs a few rounds with a stream per connection, to tell the
cost of a connection from the cost of a stream (RSS with N connections subscribed,
less RSS before the first round, per connection).

Cableway runs as in ``run.py`` (pinned to CPU 0, ``--broker=none``, public mode and
signed Turbo streams) plus ``--metrics_http=/metrics``; the load generator is
``loadgen.py`` (its ``churn`` step) on CPU 1. Everything is bounded in count and time.
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
import time
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

METRICS_PATH = "/metrics"


def run_churn(
    streams: str, total: int, rounds: int, workdir: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    port, bport = free_port(), free_port()
    target = Target("cableway", cableway_features())
    cmd = [*target.command(port, bport, "churn"), f"--metrics_http={METRICS_PATH}"]
    log_path = workdir / f"churn-{streams}.log"
    server = spawn(cmd, SERVER_CPU, log_path)
    try:
        if not wait_listening(server, [port, bport]):
            raise SystemExit(f"cableway did not start (see {log_path})")
        spec = {
            "port": port,
            "broadcast_port": bport,
            "server_pid": server.pid,
            "secret": SECRET,
            "signed": True,
            "payload": args.payload,
            "server_cpu": SERVER_CPU,
            "metrics_path": METRICS_PATH,
            "steps": [{"op": "churn", "total": total, "rounds": rounds, "streams": streams}],
        }
        return run_loadgen(spec, f"churn-{streams}", workdir, args)
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=2000, help="connections per round")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--streams", choices=["one", "own"], default="one")
    parser.add_argument("--cost", action="store_true", help="also measure the cost per stream")
    parser.add_argument("--payload", type=int, default=200, help="padding bytes per message")
    parser.add_argument("--max-seconds", type=float, default=900, help="per run, at most")
    parser.add_argument("--json", help="append JSON lines (meta and every round) here")
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
    started = time.monotonic()
    records: list[dict[str, Any]] = [meta]
    with tempfile.TemporaryDirectory(prefix="cableway-churn-") as tmp:
        workdir = Path(tmp)
        main_rounds = run_churn(args.streams, args.total, args.rounds, workdir, args)
        records += [{"kind": "result", **r} for r in main_rounds]
        cost_rounds: list[dict[str, Any]] = []
        if args.cost:
            other = "own" if args.streams == "one" else "one"
            cost_rounds = run_churn(other, args.total, min(args.rounds, 5), workdir, args)
            records += [{"kind": "result", **r} for r in cost_rounds]
    rounds = [r for r in main_rounds if r.get("op") == "churn"]
    print(f"{'round':>5} {'ready':>6} {'recv':>6} {'rss with N (MiB)':>17} {'rss after (MiB)':>16}")
    for r in rounds:
        print(
            f"{r['round']:>5} {r['ready']:>6} {r['received']:>6} "
            f"{r['server_rss_connected_kib'] / 1024:>17.1f} {r['server_rss_kib'] / 1024:>16.1f}"
        )
    summary: dict[str, Any] = {"kind": "summary", "total": args.total, "rounds": len(rounds)}
    if len(rounds) >= 5:
        r5, last = rounds[4]["server_rss_kib"], rounds[-1]["server_rss_kib"]
        summary |= {
            "rss0_kib": rounds[0]["server_rss0_kib"],
            "rss_round5_kib": r5,
            "rss_last_kib": last,
            "growth_after_round5": round(last / r5 - 1, 4),
            "flat": last <= r5 * 1.10,
            "lost": sum(r["ready"] - r["received"] for r in rounds),
            "failed": sum(r["failed"] for r in rounds),
        }
    per_conn = {}
    for name, runs in ((args.streams, rounds), ("cost", cost_rounds)):
        runs = [r for r in runs if r.get("op") == "churn"]
        if runs:
            first = runs[0]
            mode = first["streams"]
            per_conn[mode] = round(
                (first["server_rss_connected_kib"] - first["server_rss0_kib"]) / first["ready"], 2
            )
            summary[f"kib_per_conn_{mode}_streams"] = per_conn[mode]
            del name
    if "one" in per_conn and "own" in per_conn:
        summary["kib_per_stream"] = round(per_conn["own"] - per_conn["one"], 2)
    print(json.dumps(summary))
    print(f"(total {time.monotonic() - started:.0f}s)")
    records.append(summary)
    if args.json:
        with open(args.json, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
    return 0 if summary.get("flat") else 1


if __name__ == "__main__":
    sys.exit(main())
