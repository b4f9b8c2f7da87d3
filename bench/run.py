"""Cableway benchmark runner: every target measured in the same run, side by side.

    .venv/bin/python bench/run.py                       # all scenarios, full sizes
    .venv/bin/python bench/run.py --quick               # smoke run, under ~2 minutes
    .venv/bin/python bench/run.py --scenarios b,d --sizes 1000,5000 --json out.jsonl

Targets (each started here on 127.0.0.1, one at a time, pinned to CPU 0; the load
generator is pinned to CPU 1):

* ``cableway``   -- this project (``python -m cableway``), public mode + signed Turbo streams;
* ``reference``  -- ``bench/reference_server.py``, the quick ``websockets`` server;
* ``floor``      -- ``bench/floor_server.py``, one ``send()`` per socket per message;
* ``floor-coalesce`` -- the floor writing a whole batch with one ``send()`` (scenario d).

Scenarios: (a) idle subscribed connections, (b) fan-out to N subscribers of one stream,
(c) many streams, open-loop publish-rate sweep, (d) batched fan-out sweep, (e) fan-out
over SSE. See docs/benchmarks.md for what each measures.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECRET = "bench-secret"
SERVER_CPU, LOADGEN_CPU = 0, 1
CHILDREN: list[subprocess.Popen[bytes]] = []


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------


def _cpus_at_start() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set()


# read once, before the runner pins itself to the load generator's CPU
CPUS = _cpus_at_start()


def can_pin() -> bool:
    return {SERVER_CPU, LOADGEN_CPU} <= CPUS


def pinned(cpu: int | None) -> Any:
    if cpu is None or not can_pin():
        return None

    def pin() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})

    return pin


def spawn(cmd: list[str], cpu: int | None, log_path: Path, **kw: Any) -> subprocess.Popen[bytes]:
    log_file = open(log_path, "ab")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        cmd,
        stdout=kw.pop("stdout", log_file),
        stderr=kw.pop("stderr", log_file),
        stdin=subprocess.DEVNULL,
        preexec_fn=pinned(cpu),  # the runner is single-threaded
        cwd=ROOT,
        **kw,
    )
    CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def stop_all() -> None:
    for proc in list(CHILDREN):
        stop(proc, wait=2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], ports: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.1)
    return not pending


# -- targets -------------------------------------------------------------------------


def cableway_help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "cableway", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    return out.stdout


def cableway_features() -> dict[str, Any]:
    """What this Cableway build offers: broker option and its default, SSE switch."""
    text = cableway_help()
    main_part = text.split("Recognised AnyCable options that Cableway refuses")[0]
    features: dict[str, Any] = {"broker_flag": "--broker" in text, "broker_default": None}
    m = re.search(r"^\s+--broker=\S*.*?default: (\S+)", main_part, re.M | re.S)
    if m:
        features["broker_default"] = m.group(1).rstrip(",;")
    features["sse_flag"] = bool(re.search(r"^\s+--sse\b", main_part, re.M))
    return features


class Target:
    """A server to start: a name and how to build its command line."""

    def __init__(self, name: str, features: dict[str, Any]) -> None:
        self.name = name
        self.features = features

    def command(self, port: int, bport: int, scenario: str) -> list[str]:
        if self.name.startswith("cableway"):
            cmd = [
                sys.executable,
                "-m",
                "cableway",
                "--host=127.0.0.1",
                f"--port={port}",
                "--public",
                "--turbo_streams",
                f"--turbo_streams_secret={SECRET}",
                f"--http_broadcast_port={bport}",
                "--shutdown_timeout=2",
                "--log_level=warn",
            ]
            if self.name == "cableway" and self.features.get("broker_flag"):
                cmd.append("--broker=none")
            if scenario == "e" and self.features.get("sse_flag"):
                cmd.append("--sse")
            return cmd
        script = "reference_server.py" if self.name == "reference" else "floor_server.py"
        cmd = [sys.executable, str(BENCH / script), f"--port={port}", f"--broadcast-port={bport}"]
        cmd.append(f"--secret={SECRET}")
        if self.name == "floor-coalesce":
            cmd.append("--coalesce")
        return cmd


# -- scenarios -----------------------------------------------------------------------


def fd_max() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200


def size_list(raw: str | None, default: list[str]) -> list[int]:
    out = []
    for item in raw.split(",") if raw else default:
        n = fd_max() if item == "max" else int(item)
        out.append(min(n, fd_max()))
    return sorted(set(out))


def program(scenario: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    quick = args.quick
    if scenario == "a":
        sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "5000", "10000", "max"])
        pi = 1 if quick else 3
        steps: list[dict[str, Any]] = [
            {"op": "connect", "total": n, "streams": "one", "pi": pi, "timeout": 60} for n in sizes
        ]
        steps.append({"op": "hold", "seconds": 3.5 if quick else 7.5, "interval": pi})
        return steps
    if scenario == "b":
        sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "5000", "10000"])
        steps = []
        for n in sizes:
            steps.append({"op": "connect", "total": n, "streams": "one", "pi": 0})
            steps.append(
                {"op": "publish", "rate": args.fanout_rate, "duration": 3 if quick else 10}
            )
        return steps
    if scenario == "c":
        n = 500 if quick else 1000
        rates = [1000, 2000, 4000] if quick else [500, 1000, 2000, 3000, 4000, 6000, 8000]
        rates += [] if quick else [11000, 16000]
        return [
            {"op": "connect", "total": n, "streams": "own", "pi": 0},
            {"op": "sweep", "rates": rates, "duration": 2 if quick else 3, "streams": "own"},
        ]
    if scenario == "d":
        n = 1000
        rates = [5, 10, 20] if quick else [2, 4, 6, 8, 10, 14, 20, 28, 40]
        return [
            {"op": "connect", "total": n, "streams": "one", "pi": 0},
            {
                "op": "sweep",
                "rates": rates,
                "batch": 10,
                "duration": 2 if quick else 4,
                "streams": "one",
            },
        ]
    if scenario == "e":
        sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "5000"])
        steps = []
        for n in sizes:
            steps.append({"op": "connect", "total": n, "streams": "one", "proto": "sse"})
            steps.append(
                {"op": "publish", "rate": args.fanout_rate, "duration": 3 if quick else 10}
            )
        return steps
    raise SystemExit(f"unknown scenario {scenario}")


def targets_for(
    scenario: str, names: list[str], features: dict[str, Any], quick: bool
) -> list[str]:
    out = [n for n in names if n != "floor-coalesce" or scenario == "d"]
    if scenario == "e":
        out = [n for n in out if n in ("cableway", "floor")]
    default = features.get("broker_default")
    extra = not quick and scenario in "bcd" and "cableway-default" not in out
    if extra and "cableway" in out and default not in (None, "none"):
        out.insert(out.index("cableway") + 1, "cableway-default")
    return out


# -- one target, one scenario ----------------------------------------------------------


def run_one(
    scenario: str,
    target: Target,
    steps: list[dict[str, Any]],
    workdir: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    port, bport = free_port(), free_port()
    log_path = workdir / f"{scenario}-{target.name}.log"
    server = spawn(target.command(port, bport, scenario), SERVER_CPU, log_path)
    results: list[dict[str, Any]] = []
    profiler = None
    try:
        if not wait_listening(server, [port, bport]):
            say(f"  {target.name}: did not start (see {log_path})")
            return [{"op": "start", "error": "server did not start", "log": str(log_path)}]
        if scenario == "e" and target.name.startswith("cableway") and not sse_available(port):
            say("  cableway answers 404 on /events: SSE not available, scenario (e) skipped")
            return [{"op": "skip", "reason": "GET /events answered 404 (no SSE in this build)"}]
        if args.profile and target.name.startswith("cableway"):
            profiler = start_profiler(server.pid, Path(args.profile), f"{scenario}-{target.name}")
        spec = {
            "port": port,
            "broadcast_port": bport,
            "server_pid": server.pid,
            "secret": SECRET,
            "signed": True,
            "payload": args.payload,
            "server_cpu": SERVER_CPU,
            "steps": steps,
        }
        spec_path = workdir / f"{scenario}-{target.name}.json"
        spec_path.write_text(json.dumps(spec))
        gen = spawn(
            [sys.executable, str(BENCH / "loadgen.py"), str(spec_path)],
            LOADGEN_CPU,
            workdir / f"{scenario}-{target.name}-loadgen.log",
            stdout=subprocess.PIPE,
            stderr=None,
        )
        deadline = time.monotonic() + args.max_seconds
        assert gen.stdout is not None
        for line in gen.stdout:
            results.append(json.loads(line))
            if time.monotonic() > deadline:
                say(f"  {target.name}: over {args.max_seconds}s, stopping")
                break
        stop(gen, wait=10)
        if server.poll() is not None:
            results.append({"op": "server", "error": f"server exited with {server.returncode}"})
    finally:
        if profiler is not None:
            stop(profiler, signal.SIGINT, wait=20)
        stop(server)
    return results


def sse_available(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /events?stream=probe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(3)
        try:
            head = s.recv(4096)
        except OSError:
            return False
    return head[9:12] not in (b"404", b"")


def start_profiler(pid: int, outdir: Path, name: str) -> subprocess.Popen[bytes] | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        say("  py-spy not installed in the venv: no profile")
        return None
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    cmd += ["--nonblocking", "--output", str(outdir / f"{name}.txt")]
    proc = spawn(cmd, LOADGEN_CPU, outdir / f"{name}.py-spy.log")
    time.sleep(1.0)
    return proc


# -- summaries -------------------------------------------------------------------------

# (scenario, key) -> {target: value}; key describes the metric and its size
Summary = dict[tuple[str, str], dict[str, Any]]

METRICS: dict[str, list[tuple[str, str, str]]] = {
    # scenario -> (metric key, label, better)
    "a": [
        ("live", "connections reached (60 s per step)", "higher"),
        ("rss_per_conn_kib", "server RSS per idle conn, KiB", "lower"),
        ("conn_per_s", "handshake+subscribe per s", "higher"),
        ("gap_p99_s", "ping gap p99, s (every 3 s)", "lower"),
        ("gap_max_s", "ping gap max, s", "lower"),
        ("server_cpu_frac_idle", "server CPU share while idle", "lower"),
    ],
    "b": [
        ("us_per_delivery", "server CPU µs per delivery", "lower"),
        ("lat_p50_ms", "latency p50, ms", "lower"),
        ("lat_p99_ms", "latency p99, ms", "lower"),
        ("lat_max_ms", "latency max, ms", "lower"),
        ("lost", "lost deliveries", "lower"),
        ("reordered", "reordered", "lower"),
        ("loadgen_cpu_frac", "load generator CPU share", "info"),
    ],
    "c": [
        ("max_sustained", "max sustained deliveries/s", "higher"),
        ("us_per_post", "server CPU µs per POST at max", "lower"),
        ("lat_p99_ms", "latency p99 at max, ms", "lower"),
        ("loadgen_cpu_frac", "load generator CPU share at max", "info"),
    ],
    "d": [
        ("max_sustained", "max sustained deliveries/s", "higher"),
        ("us_per_delivery", "server CPU µs per delivery at max", "lower"),
        ("lat_p99_ms", "latency p99 at max, ms", "lower"),
        ("loadgen_cpu_frac", "load generator CPU share at max", "info"),
    ],
}
METRICS["e"] = METRICS["b"]


def summarize(scenario: str, target: str, results: list[dict[str, Any]], out: Summary) -> None:
    def put(key: str, size: str, value: Any) -> None:
        out.setdefault((scenario, f"{key}@{size}"), {})[target] = value

    for r in results:
        if r.get("op") == "skip":
            out.setdefault((scenario, "skipped"), {})[target] = r["reason"]
        if r.get("error"):
            out.setdefault((scenario, "error"), {})[target] = r["error"]
    noise = max((r.get("server_cpu_other_frac") or 0.0 for r in results), default=0.0)
    if noise > 0.1:
        out.setdefault((scenario, "warning"), {})[target] = (
            f"other processes ran on the server's CPU ({noise:.0%} of a window): noisy"
        )
    if scenario == "a":
        total = 0
        for r in results:
            if r.get("op") == "connect":
                total = r["total"]
                put("live", f"N={total}", r["live"])
                put("rss_per_conn_kib", f"N={total}", r["rss_per_conn_kib"])
                put("conn_per_s", f"N={total}", r["conn_per_s"])
            elif r.get("op") == "hold":
                put("gap_p99_s", f"N={total}", r["gap_p99_s"])
                put("gap_max_s", f"N={total}", r["gap_max_s"])
                put("server_cpu_frac_idle", f"N={total}", r["server_cpu_frac_idle"])
    elif scenario in "be":
        n = 0
        for r in results:
            if r.get("op") == "connect":
                n = r["total"]
            elif r.get("op") == "publish":
                for key, _label, _better in METRICS[scenario]:
                    put(key, f"N={n}", r.get(key))
    else:
        sweeps = [r for r in results if r.get("op") == "sweep"]
        good = [r for r in sweeps if r.get("passed")]
        best = max(good, key=lambda r: r["offered_deliveries_per_s"]) if good else None
        limited = any(r.get("loadgen_limited") for r in sweeps)
        put("max_sustained", "", best["offered_deliveries_per_s"] if best else 0)
        for key, _label, _better in METRICS[scenario][1:]:
            put(key, "", best.get(key) if best else None)
        if limited:
            out.setdefault((scenario, "warning"), {})[target] = "the load generator was the limit"
        if sweeps and sweeps[-1].get("passed"):
            out.setdefault((scenario, "note"), {})[target] = "passed every rate: max is a bound"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.2f}"


SCENARIO_TITLES = {
    "a": "(a) idle subscribed connections",
    "b": "(b) fan-out, one stream, HTTP broadcasts at a fixed rate",
    "c": "(c) many streams (one per client), open-loop rate sweep",
    "d": "(d) batched fan-out (arrays of 10 on one stream, 1k subscribers), rate sweep",
    "e": "(e) fan-out over SSE",
}


def table(summary: Summary) -> str:
    order = ["cableway", "cableway-default", "reference", "floor", "floor-coalesce"]
    lines = []
    for scenario in "abcde":
        keys = [k for (s, k) in summary if s == scenario]
        if not keys:
            continue
        seen = {t for (s, _k), row in summary.items() if s == scenario for t in row}
        cols = [t for t in order if t in seen] + sorted(seen - set(order))
        header = ["metric".ljust(48)] + [c[:16].rjust(16) for c in cols]
        header += ["cw/ref".rjust(7), "cw/floor".rjust(8)]
        lines.append("")
        lines.append(SCENARIO_TITLES[scenario])
        lines.append(" ".join(header))
        labels = {k: (label, better) for k, label, better in METRICS[scenario]}
        for key in keys:
            row = summary[(scenario, key)]
            if key in ("skipped", "warning", "note", "error"):
                for t, text in row.items():
                    lines.append(f"  {key}: {t}: {text}")
                continue
            metric, _, size = key.partition("@")
            label, better = labels.get(metric, (metric, ""))
            name = f"{label} {size}".strip()
            if better in ("lower", "higher"):
                name += " (↓)" if better == "lower" else " (↑)"
            cells = [fmt(row.get(c)).rjust(16) for c in cols]
            cw = row.get("cableway")
            cells.append(ratio(cw, row.get("reference")).rjust(7))
            cells.append(ratio(cw, row.get("floor")).rjust(8))
            lines.append(" ".join([name[:48].ljust(48), *cells]))
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return {
        "kind": "meta",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": model,
        "cpus": os.cpu_count(),
        "pinned": can_pin(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "loadavg": os.getloadavg(),
    }


def report(path: str) -> int:
    """Re-print the table of the last run recorded in a ``--json`` file."""
    runs: list[list[dict[str, Any]]] = []
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "meta":
                runs.append([record])
            elif runs:
                runs[-1].append(record)
    if not runs:
        raise SystemExit(f"{path}: no run recorded")
    meta, *records = runs[-1]
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if record.get("kind") == "result":
            grouped.setdefault((record["scenario"], record["target"]), []).append(record)
    summary: Summary = {}
    for (scenario, target), results in grouped.items():
        summarize(scenario, target, results, summary)
    print(
        f"run of {meta['date']}: {meta['cpu']} x{meta['cpus']}, commit {meta['commit']}, "
        f"load {[round(x, 2) for x in meta['loadavg']]}, argv {meta.get('argv')}"
    )
    print(table(summary))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Cableway benchmarks, with the reference and the floor in the same run."
    )
    parser.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated: a,b,c,d,e")
    parser.add_argument("--sizes", help="connection counts for a, b, e (e.g. 1000,5000,max)")
    parser.add_argument(
        "--targets", default="cableway,reference,floor,floor-coalesce", help="comma-separated"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short steps")
    parser.add_argument("--json", help="append JSON lines (results, summary, meta) here")
    parser.add_argument("--payload", type=int, default=200, help="padding bytes per message")
    parser.add_argument("--fanout-rate", type=float, default=1.0, help="broadcasts/s in b, e")
    parser.add_argument("--profile", help="directory for py-spy profiles of cableway runs")
    parser.add_argument("--max-seconds", type=float, default=600, help="per target and scenario")
    parser.add_argument("--report", help="print the table of a JSON-lines file; run nothing")
    args = parser.parse_args()
    if args.report:
        return report(args.report)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if can_pin():
        os.sched_setaffinity(0, {LOADGEN_CPU})
    else:
        say("warning: fewer than 2 CPUs available: server and load generator share a CPU")
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    features = cableway_features()
    names = [t for t in args.targets.split(",") if t]
    try:
        import websockets  # noqa: F401
    except ImportError:
        say("warning: `websockets` missing (pip install -r bench/requirements.txt): no reference")
        names = [n for n in names if n != "reference"]
    meta = machine() | {"features": features, "argv": sys.argv[1:]}
    say(f"machine: {meta['cpu']} x{meta['cpus']}, load {meta['loadavg']}, commit {meta['commit']}")
    if max(meta["loadavg"]) > 0.5:
        say("warning: the machine is not idle; figures will be noisy")

    summary: Summary = {}
    records: list[dict[str, Any]] = [meta]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cableway-bench-") as tmp:
        workdir = Path(tmp)
        for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            steps = program(scenario, args)
            for name in targets_for(scenario, names, features, args.quick):
                say(f"[{scenario}] {name} ...")
                t0 = time.monotonic()
                results = run_one(scenario, Target(name, features), steps, workdir, args)
                say(f"[{scenario}] {name} done in {time.monotonic() - t0:.1f}s")
                for r in results:
                    records.append({"kind": "result", "scenario": scenario, "target": name, **r})
                    if r.get("loadgen_limited"):
                        say(f"  WARNING: load generator at {r['loadgen_cpu_frac']:.0%} CPU")
                summarize(scenario, name, results, summary)
                if any(r.get("op") == "skip" for r in results):
                    break
    for (scenario, key), row in summary.items():
        records.append({"kind": "summary", "scenario": scenario, "metric": key, **row})
    text = table(summary)
    print(text)
    print(f"\n(total {time.monotonic() - started:.0f}s; ratios are Cableway / other, same run)")
    if args.json:
        with open(args.json, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
