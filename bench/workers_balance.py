"""How `cableway --workers 2` spreads a connection storm over its workers (issue 20).

    PYTHONPATH=<dir holding cableway> python bench/workers_balance.py \
        --sizes 2000,10000 --rounds 3 --json out.jsonl

For each accept mode (``shared``: every worker accepts on the supervisor's listening
socket, the default; ``reuseport``: ``CABLEWAY_REUSEPORT=1``, each worker listens on its
own ``SO_REUSEPORT`` socket) and each size N, it starts ``python -m cableway --workers 2
--broker=none`` on 127.0.0.1 (every CPU), opens N WebSocket clients at once with
bench/loadgen.py (CPU 1: upgrade, ``welcome``, a signed Turbo stream subscription, as
scenario (g) without JWTs), and counts each worker's connections from the number of
entries in ``/proc/<worker pid>/fd`` above its count before the storm (every 0.2 s during
the storm, and once every client is subscribed). ``--kill-after S`` kills worker 1
(SIGKILL) S seconds into each storm instead: the clients that then fail are the
connections it held plus, with ``SO_REUSEPORT``, those still queued on its own socket.
``--stop-worker S`` stops worker 1 (SIGSTOP) as each storm begins and resumes it S
seconds later: a busy worker at the extreme (set-up times say who waited for it).

Everything is bounded: the storm's connect step 120 s, the whole run ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402 - the runner's process helpers (spawn, stop, ports, pinning)


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rpartition(")")[2].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return sorted(out)


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def storm(mode: str, n: int, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    port, bport = run.free_port(), run.free_port()
    cmd = run.Target("cableway-w2", run.cableway_features()).command(port, bport, "b")
    env = dict(os.environ)
    env.pop("CABLEWAY_REUSEPORT", None)
    if mode == "reuseport":
        env["CABLEWAY_REUSEPORT"] = "1"
    log = workdir / f"{mode}-{n}.log"
    server = run.spawn(cmd, None, log, env=env)
    try:
        if not run.wait_listening(server, [port, bport]):
            return {"mode": mode, "n": n, "error": f"server did not start (see {log})"}
        deadline = time.monotonic() + 20
        workers = children(server.pid)
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = children(server.pid)
        time.sleep(1.0)  # every worker joined the hub and listens (wait_listening saw one)
        base = {pid: fds(pid) for pid in workers}
        cpu0 = {pid: cpu_s(pid) for pid in [server.pid, *workers]}
        spec = {
            "port": port,
            "broadcast_port": bport,
            "server_pid": server.pid,
            "server_tree": {"cpus": sorted(run.CPUS)},
            "loadgen_cpu": run.LOADGEN_CPU,
            "secret": run.SECRET,
            "signed": True,
            "payload": 100,
            "pi": 3,
            "steps": [
                {"op": "connect", "total": n, "streams": "one", "pi": 3, "window": n},
                {"op": "hold", "seconds": 1.0, "interval": 3},
            ],
        }
        spec_path = workdir / f"{mode}-{n}.json"
        spec_path.write_text(json.dumps(spec))
        samples: list[tuple[float, list[int]]] = []
        done = threading.Event()
        killed: dict[str, Any] = {}

        stopped: dict[str, Any] = {}
        if args.stop_worker:  # worker 1 busy (stopped) as the storm begins
            os.kill(workers[1], signal.SIGSTOP)
            stopped.update(pid=workers[1], seconds=args.stop_worker)

        def sample() -> None:
            t0 = time.monotonic()
            while not done.is_set() and time.monotonic() - t0 < 130:
                t = time.monotonic() - t0
                if stopped and "resumed" not in stopped and t >= args.stop_worker:
                    os.kill(workers[1], signal.SIGCONT)
                    stopped["resumed"] = round(t, 2)
                    stopped["held_then"] = [fds(pid) - base[pid] for pid in workers]
                counts = [fds(pid) - base[pid] for pid in workers]
                samples.append((round(t, 2), counts))
                if args.kill_after and not killed and t >= args.kill_after:
                    killed.update(pid=workers[1], held=counts[1], at=round(t, 2))
                    os.kill(workers[1], signal.SIGKILL)
                done.wait(0.2)

        gen = run.spawn(
            [sys.executable, str(BENCH / "loadgen.py"), str(spec_path)],
            run.LOADGEN_CPU,
            workdir / f"{mode}-{n}-loadgen.log",
            stdout=subprocess.PIPE,
        )
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        connect: dict[str, Any] = {}
        counts: list[int] = []
        assert gen.stdout is not None
        for line in gen.stdout:
            result = json.loads(line)
            if result.get("op") == "connect":
                connect = result
                counts = [fds(pid) - base[pid] for pid in workers]
                break
        done.set()
        watcher.join(5)
        cpu = {pid: round(cpu_s(pid) - cpu0[pid], 2) for pid in cpu0}
        run.stop(gen, wait=15)
        live = sum(c for c in counts if c > 0)
        out: dict[str, Any] = {
            "mode": mode,
            "n": n,
            "per_worker": counts,
            "share_max": round(max(counts) / live, 3) if live > 0 else None,
            "ready": connect.get("ready"),
            "failed": connect.get("failed"),
            "fail_reasons": connect.get("fail_reasons"),
            "conn_per_s": connect.get("conn_per_s"),
            "setup_p50_ms": connect.get("setup_p50_ms"),
            "setup_p99_ms": connect.get("setup_p99_ms"),
            "seconds": connect.get("seconds"),
            "cpu_s": {"hub": cpu[server.pid], "workers": [cpu[pid] for pid in workers]},
            "samples": samples,
        }
        if killed:
            out["killed"] = killed
        if stopped:
            out["stopped"] = stopped
        return out
    finally:
        for pid in children(server.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        run.stop(server, wait=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--modes", default="shared,reuseport")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kill-after", type=float, default=0.0, help="kill worker 1 then (s)")
    parser.add_argument(
        "--stop-worker",
        type=float,
        default=0.0,
        help="SIGSTOP worker 1 as the storm begins and SIGCONT it S seconds later (a busy "
        "worker, at the extreme)",
    )
    parser.add_argument("--max-seconds", type=float, default=1200)
    parser.add_argument("--json", help="append one JSON line per storm here")
    args = parser.parse_args()
    sizes = [min(int(x), run.fd_max()) for x in args.sizes.split(",")]
    modes = args.modes.split(",")
    import atexit
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sizes = [min(n, run.fd_max()) for n in sizes]
    if run.can_pin():
        os.sched_setaffinity(0, {run.LOADGEN_CPU})
    atexit.register(run.stop_all)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    meta = run.machine() | {"argv": sys.argv[1:], "kind": "meta"}
    with tempfile.TemporaryDirectory(prefix="cableway-balance-") as tmp:
        for k in range(args.rounds):
            for n in sizes:
                for mode in modes if k % 2 == 0 else modes[::-1]:
                    if time.monotonic() - started > args.max_seconds:
                        break
                    r = storm(mode, n, Path(tmp), args) | {"round": k}
                    results.append(r)
                    run.say(
                        f"{mode} N={n}: per worker {r.get('per_worker')}, failed "
                        f"{r.get('failed')}, {r.get('conn_per_s')}/s, killed {r.get('killed')}, "
                        f"set-up p50/p99 {r.get('setup_p50_ms')}/{r.get('setup_p99_ms')} ms, "
                        f"stopped {r.get('stopped')}"
                    )
    if args.json:
        with open(args.json, "a") as f:
            for record in [meta, *results]:
                f.write(json.dumps(record) + "\n")
    print(f"{'mode':<10} {'N':>6} {'rounds':>6} {'max share':>18} {'per worker (each round)'}")
    for n in sizes:
        for mode in modes:
            rs = [r for r in results if r["mode"] == mode and r["n"] == n and "per_worker" in r]
            shares = [r["share_max"] for r in rs if r.get("share_max") is not None]
            med = statistics.median(shares) if shares else None
            spread = f"{med} ({min(shares)}-{max(shares)})" if shares else "-"
            each = "; ".join(f"{r['per_worker']} f{r['failed']}" for r in rs)
            print(f"{mode:<10} {n:>6} {len(rs):>6} {spread:>18} {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
