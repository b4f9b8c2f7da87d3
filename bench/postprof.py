"""Profile one target of scenario (c) at a fixed POST rate (issue 17, target 5).

``.venv/bin/python bench/postprof.py --target cableway --rate 10000 --seconds 20 --out DIR``
(``--target cableway-base --base-src DIR``: Cableway from the ``cableway`` package in DIR)

Starts the target as ``bench/run.py`` does (server on CPU 0, load generator on CPU 1),
connects 1 000 clients each subscribed to its own stream, then publishes one publication per
POST at ``--rate`` for ``--seconds``; once the connects are done it records the server with
``py-spy record --native --format raw`` (collapsed stacks) for ``--profile-seconds``.
Prints the load generator's JSON lines (server CPU share, deliveries) to stdout and appends
them to ``DIR/results.jsonl``; writes ``DIR/<target>-<rate>.txt`` (the raw stacks).
``--syscalls``: count the server's system calls per POST instead (``perf stat``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # bench/run.py: the same targets, ports and pinning

SYSCALLS = ("read", "write", "epoll_wait", "epoll_ctl", "sendto", "sendmsg")


def read_counts(path: Path) -> dict[str, int]:
    """The counts of ``perf stat -x ,`` output: {system call: count}."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_"):
            counts[fields[2].removeprefix("syscalls:sys_enter_")] = int(fields[0])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="cableway")
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument("--sample-rate", type=int, default=500)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy without --native and without pausing the server for each sample "
        "(a sample that pauses the server lands on its syscalls more often than their share)",
    )
    parser.add_argument(
        "--perf",
        action="store_true",
        help="record the server with `perf record -g` (kernel and native stacks) instead "
        "of py-spy: DIR/<target>-<rate>.perf.data, read with `perf report -i`",
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="instead of a profile, count the server's system calls (read, write, epoll_wait, "
        "epoll_ctl, sendto, sendmsg) with `perf stat` for --profile-seconds; appends "
        '{"op": "syscalls", ..., "per_post": {...}} to results.jsonl (per POST at --rate): '
        "reads per POST tell how many POSTs one read of the broadcast connections carries",
    )
    parser.add_argument("--out", default="/tmp/postprof")
    parser.add_argument(
        "--base-src",
        help="target cableway-base: a directory holding another `cableway` package "
        "(e.g. a folder with a `cableway` symlink to an older checkout's src/)",
    )
    args = parser.parse_args()
    if args.base_src:
        run.BASELINE = Path(args.base_src).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = run.Target(args.target, run.cableway_features())
    port, bport = run.free_port(), run.free_port()
    server = run.spawn(
        target.command(port, bport, "c"), run.SERVER_CPU, out / "server.log", env=target.env()
    )
    if not run.wait_listening(server, [port, bport]):
        raise SystemExit("server did not start")
    steps = [
        {"op": "connect", "total": 1000, "streams": "own", "pi": run.PING_INTERVAL},
        {"op": "publish", "rate": args.rate, "duration": args.seconds, "streams": "own"},
    ]
    spec = {
        "port": port,
        "broadcast_port": bport,
        "server_pid": server.pid,
        "secret": run.SECRET,
        "jwt_secret": run.JWT_SECRET,
        "pi": run.PING_INTERVAL,
        "signed": True,
        "payload": 200,
        "server_cpu": run.SERVER_CPU,
        "steps": steps,
    }
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec))
    gen = run.spawn(
        [sys.executable, str(run.BENCH / "loadgen.py"), str(spec_path)],
        run.LOADGEN_CPU,
        out / "loadgen.log",
        stdout=subprocess.PIPE,
    )
    assert gen.stdout is not None
    spy = None
    deadline = time.monotonic() + args.seconds + 120
    with (out / "results.jsonl").open("a") as results:
        for line in gen.stdout:
            print(line.decode().rstrip(), flush=True)
            results.write(line.decode())
            record = json.loads(line)
            if record.get("op") == "connect" and not args.no_profile:
                time.sleep(3)  # the publish step's warm-up (bounded, not a synchronisation)
                if args.syscalls:
                    cmd = ["perf", "stat", "-x", ",", "-o", str(out / "syscalls.csv")]
                    cmd += ["-e", ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)]
                    cmd += ["-p", str(server.pid), "--", "sleep", str(args.profile_seconds)]
                elif args.perf:
                    cmd = ["perf", "record", "-g", "-p", str(server.pid)]
                    cmd += ["-o", str(out / f"{args.target}-{args.rate}.perf.data")]
                    cmd += ["--", "sleep", str(args.profile_seconds)]
                else:
                    cmd = [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(server.pid),
                    ]
                    cmd += ["--nonblocking"] if args.nonblocking else ["--native"]
                    cmd += ["--rate", str(args.sample_rate), "--format", "raw"]
                    cmd += ["--duration", str(args.profile_seconds)]
                    cmd += ["--output", str(out / f"{args.target}-{args.rate}.txt")]
                spy = run.spawn(cmd, run.LOADGEN_CPU, out / "py-spy.log")
            if time.monotonic() > deadline:
                break
    if spy is not None:
        spy.wait(timeout=60)
    if args.syscalls and spy is not None:
        counts = read_counts(out / "syscalls.csv")
        posts = args.rate * args.profile_seconds
        record = {
            "op": "syscalls",
            "target": args.target,
            "seconds": args.profile_seconds,
            "counts": counts,
            "per_post": {name: round(n / posts, 3) for name, n in counts.items()},
        }
        print(json.dumps(record), flush=True)
        with (out / "results.jsonl").open("a") as results:
            results.write(json.dumps(record) + "\n")
    run.stop(gen)
    run.stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
