"""Where `cableway --workers 2` spends its CPU per POST on many streams (issue 20).

    PYTHONPATH=<dir holding cableway> python bench/workers_profile.py --rate 1000 \
        --seconds 10 --out DIR

Starts ``cableway --workers 2 --broker=none`` (every CPU), subscribes 1 000 clients to a
stream each, and POSTs one publication per POST to a random one of them at ``--rate``
over 16 keep-alive connections (scenario (c)'s load, one rate) while ``py-spy record
--format raw`` samples the supervisor (the hub) and both workers. Prints each process's
CPU per POST and the 25 functions with the most samples (self time, then with callees),
with the share of samples in the trio run loop's I/O wait (``epoll``) and in system calls.
Needs py-spy (``pip install py-spy``; ``--py-spy PATH``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402
import workers_balance  # noqa: E402


def summary(path: Path, top: int) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        names = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
            if " (" in f
            else f
            for f in frames
        ]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    return {
        "samples": samples,
        "self": [(k, round(v / samples, 3)) for k, v in own.most_common(top)] if samples else [],
        "total": [(k, round(v / samples, 3)) for k, v in total.most_common(top)] if samples else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", default=None, help="directory for the raw py-spy files")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="cableway-wprof-"))
    out.mkdir(parents=True, exist_ok=True)
    if run.can_pin():
        os.sched_setaffinity(0, {run.LOADGEN_CPU})
    import atexit

    atexit.register(run.stop_all)
    port, bport = run.free_port(), run.free_port()
    cmd = run.Target("cableway-w2", run.cableway_features()).command(port, bport, "c")
    server = run.spawn(cmd, None, out / "server.log")
    if not run.wait_listening(server, [port, bport]):
        raise SystemExit(f"server did not start (see {out / 'server.log'})")
    time.sleep(1.0)
    workers = workers_balance.children(server.pid)
    spec = {
        "port": port,
        "broadcast_port": bport,
        "server_pid": server.pid,
        "server_tree": {"cpus": sorted(run.CPUS)},
        "loadgen_cpu": run.LOADGEN_CPU,
        "secret": run.SECRET,
        "signed": True,
        "payload": 200,
        "pi": 3,
        "publishers": 16,
        "window_mark": str(out / "window"),
        "steps": [
            {"op": "connect", "total": 1000, "streams": "own", "pi": 3},
            {"op": "publish", "rate": args.rate, "duration": args.seconds, "streams": "own"},
        ],
    }
    (out / "spec.json").write_text(json.dumps(spec))
    gen = run.spawn(
        [sys.executable, str(BENCH / "loadgen.py"), str(out / "spec.json")],
        run.LOADGEN_CPU,
        out / "loadgen.log",
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (out / "window").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    spies = {}
    for name, pid in [("hub", server.pid), *[(f"worker{i}", p) for i, p in enumerate(workers)]]:
        spy_cmd = [args.py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
        spy_cmd += ["--nonblocking", "--duration", str(int(args.seconds))]
        spy_cmd += ["--output", str(out / f"{name}.txt")]
        spies[name] = run.spawn(spy_cmd, run.LOADGEN_CPU, out / f"{name}.py-spy.log")
    result: dict[str, Any] = {}
    assert gen.stdout is not None
    for line in gen.stdout:
        r = json.loads(line)
        if r.get("op") == "publish":
            result = r
            break
    for spy in spies.values():
        spy.wait(60)
    run.stop(gen)
    run.stop(server, signal.SIGTERM, wait=15)
    keys = ("rate", "delivered_frac", "lat_p50_ms", "lat_p99_ms", "server_cpu_frac")
    print({k: result.get(k) for k in keys})
    print(
        "hub µs/POST",
        result.get("hub_us_per_post"),
        "workers",
        result.get("workers_cpu_s"),
        "µs/POST all workers",
        result.get("workers_us_per_post"),
    )
    report: dict[str, Any] = {"result": result}
    for name in spies:
        path = out / f"{name}.txt"
        if path.exists():
            report[name] = summary(path, args.top)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    for name, s in report.items():
        if name == "result":
            continue
        print(f"\n== {name}: {s['samples']} samples; self time:")
        for k, v in s["self"]:
            print(f"  {v:6.1%}  {k}")
        print(f"== {name}: with callees:")
        for k, v in s["total"]:
            print(f"  {v:6.1%}  {k}")
    print(f"\nraw stacks and report.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
