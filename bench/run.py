"""Cableway benchmark runner: every target measured in the same run, side by side.

    .venv/bin/python bench/run.py                       # all scenarios, full sizes
    .venv/bin/python bench/run.py --quick               # smoke run, a few minutes
    .venv/bin/python bench/run.py --scenarios b,d --sizes 1000,5000 --json out.jsonl

Targets (each started here on 127.0.0.1, one at a time, pinned to CPU 0; the load
generator is pinned to CPU 1):

* ``cableway``   -- this project (``python -m cableway``), public mode + signed Turbo streams;
* ``reference``  -- ``bench/reference_server.py``, the quick ``websockets`` server;
* ``floor``      -- ``bench/floor_server.py``, one ``send()`` per socket per message;
* ``floor-coalesce`` -- the floor writing a whole batch with one ``send()`` (scenario d);
* ``floor-jitter`` -- the floor spreading first pings as Cableway does (only when named);
* ``floor-trio`` -- ``bench/floor_trio.py``, the floor's work with one trio task per
  connection, Cableway's binding shape (only when named; scenarios a-e and i);
* ``floor-trio-poll`` -- the same with a read poller (``--poller``): a task per
  connection, parked once upgraded, its reads served by one poller task, as Cableway's
  (only when named; scenarios a-e and i).

Scenarios: (a) idle subscribed connections, (b) fan-out to N subscribers of one stream,
(c) many streams, open-loop publish-rate sweep, (d) batched fan-out sweep, (e) fan-out
over SSE, (f) two Cableway nodes over Redis against one node (its own layouts instead of
targets, see ``F_LAYOUTS``), (g) a connection storm with JWTs, (h) a network blip on the
extended protocol (Cableway only), (i) a realistic mix. See docs/benchmarks.md for what
each measures.

Every client keeps the server's pings (every 3 s), as ``@rails/actioncable`` and
``@anycable/web`` do; the floor pings too. ``X-nopi`` (e.g. ``b-nopi``) runs scenario X
with ``?pi=0`` (no pings) as a labelled variant; ``--no-pings`` does that for every
scenario named.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECRET = "bench-secret"
JWT_SECRET = "bench-jwt-secret"
PING_INTERVAL = 3  # the Action Cable default, which clients expect (stale after ~6 s)
SERVER_CPU, LOADGEN_CPU = 0, 1
CHILDREN: list[subprocess.Popen[bytes]] = []
#: a directory holding ``cableway`` (another checkout's src/), run as ``cableway-base``
BASELINE: Path | None = None
#: the floors in Cableway's binding shape (bench/floor_trio.py): a trio task per connection
TRIO_FLOORS = ("floor-trio", "floor-trio-poll")
#: Cableway as `--workers 2` (issue 20), only when named; the server's CPU is summed over
#: its process tree (the supervisor with the hub, and every worker). `cableway-w2` may
#: run on every CPU (the load generator stays on CPU 1 and shares it); `cableway-w2-cpu0`
#: keeps the supervisor and both workers on CPU 0, the CPU budget of plain `cableway`
#: (the coordination's cost alone). `--workers 1` is plain `cableway` (no hub).
WORKER_TARGETS = {"cableway-w2": (2, None), "cableway-w2-cpu0": (2, SERVER_CPU)}

# Scenario (f): Cableway nodes over Redis (--pubsub=redis) against one node, same N, same
# run. Each layout: the CPU each node is pinned to, and whether the nodes use Redis.
# redis-server (one per layout run, started here) and the load generator are on CPU 1.
# "2nodes" gives both nodes the one CPU a single node has (same CPU budget: the cost of
# the Redis hop and of a second process); "2nodes-2cpu" moves node B to CPU 1 (shared
# with the load generator and redis-server): what a second core buys, where CPU 1 is
# otherwise idle (on a 2-CPU machine the load generator shares it).
F_LAYOUTS: dict[str, tuple[list[int], bool]] = {
    "1node": ([SERVER_CPU], False),
    "1node+redis": ([SERVER_CPU], True),
    "2nodes": ([SERVER_CPU, SERVER_CPU], True),
    "2nodes-2cpu": ([SERVER_CPU, LOADGEN_CPU], True),
}
REDIS_CPU = LOADGEN_CPU


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
    if not can_pin():
        return None
    if cpu is None:  # every CPU the runner started with (it pins itself to CPU 1)

        def unpin() -> None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, CPUS)

        return unpin

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
            if self.name in WORKER_TARGETS:
                cmd.append(f"--workers={WORKER_TARGETS[self.name][0]}")
            plain = ("cableway", "cableway-base", *WORKER_TARGETS)
            if self.name in plain and self.features.get("broker_flag"):
                # (h) needs sessions and history: the memory broker
                cmd.append("--broker=memory" if scenario == "h" else "--broker=none")
            if scenario == "e" and self.features.get("sse_flag"):
                cmd.append("--sse")
            if scenario == "g":  # every connection must bring a valid token
                cmd += [f"--jwt_secret={JWT_SECRET}", "--enforce_jwt"]
            return cmd
        # the reference and the floor accept any ?jid= unread (no identification)
        script = "reference_server.py" if self.name == "reference" else "floor_server.py"
        if self.name in TRIO_FLOORS:
            script = "floor_trio.py"
        cmd = [sys.executable, str(BENCH / script), f"--port={port}", f"--broadcast-port={bport}"]
        cmd.append(f"--secret={SECRET}")
        if self.name == "floor-coalesce":
            cmd.append("--coalesce")
        if self.name == "floor-jitter":
            cmd.append("--jitter")
        if self.name == "floor-trio-poll":
            cmd.append("--poller")
        return cmd

    def cpu(self) -> int | None:
        """The CPU the server is pinned to (None: every CPU the runner started with)."""
        return WORKER_TARGETS[self.name][1] if self.name in WORKER_TARGETS else SERVER_CPU

    def tree(self) -> dict[str, Any] | None:
        """For the load generator: a server of several processes, and its CPUs."""
        if self.name not in WORKER_TARGETS:
            return None
        cpu = self.cpu()
        return {"cpus": sorted(CPUS) if cpu is None else [cpu]}

    def env(self) -> dict[str, str] | None:
        """``cableway-base`` imports the baseline's package (``--baseline``) first."""
        if self.name != "cableway-base" or BASELINE is None:
            return None
        return os.environ | {"PYTHONPATH": str(BASELINE)}


# -- scenarios -----------------------------------------------------------------------


def fd_max() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200


def size_list(raw: str | None, default: list[str]) -> list[int]:
    out = []
    for item in raw.split(",") if raw else default:
        n = fd_max() if item == "max" else int(item)
        out.append(min(n, fd_max()))
    return sorted(set(out))


def split_scenario(token: str) -> tuple[str, bool]:
    """``"b"`` -> (``"b"``, pings on); ``"b-nopi"`` -> (``"b"``, pings off)."""
    base, _, variant = token.partition("-")
    if variant not in ("", "nopi") or base not in SCENARIO_TITLES:
        raise SystemExit(f"unknown scenario {token!r} (a-i, or X-nopi)")
    return base, variant != "nopi"


def program(scenario: str, args: argparse.Namespace, pings: bool = True) -> list[dict[str, Any]]:
    quick = args.quick
    pi = PING_INTERVAL if pings else 0
    if scenario == "a":
        sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "5000", "10000", "max"])
        if pings and quick:
            pi = 1
        steps: list[dict[str, Any]] = []
        for n in sizes:  # held after every size: idle cost (CPU per ping) at each
            steps.append({"op": "connect", "total": n, "streams": "one", "pi": pi, "timeout": 60})
            hold = args.hold or (3.5 if quick else 7.5)
            steps.append({"op": "hold", "seconds": hold, "interval": pi})
        return steps
    if scenario in "bf":
        sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "5000", "10000"])
        if scenario == "f":
            sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "2000"])
        steps = []
        for n in sizes:
            steps.append({"op": "connect", "total": n, "streams": "one", "pi": pi})
            steps.append(
                {"op": "publish", "rate": args.fanout_rate, "duration": 3 if quick else 10}
            )
        return steps
    if scenario == "c":
        n = 500 if quick else 1000
        rates = [1000, 2000, 4000] if quick else [500, 1000, 2000, 3000, 4000, 6000, 8000]
        rates += [] if quick else [11000, 16000, 24000, 32000]
        while not quick and rates[-1] < args.sweep_top:  # steps of 1/4 up to the top
            rates.append(min(args.sweep_top, rates[-1] * 5 // 4 // 1000 * 1000))
        return [
            {"op": "connect", "total": n, "streams": "own", "pi": pi},
            {"op": "sweep", "rates": rates, "duration": 2 if quick else 3, "streams": "own"},
        ]
    if scenario == "d":
        n = 1000
        rates = [5, 10, 20] if quick else [2, 4, 6, 8, 10, 14, 20, 28, 40]
        # --d-batch B: B publications per POST, the same deliveries/s at each step
        rates = [r * 10 // args.d_batch or 1 for r in rates]
        return [
            {"op": "connect", "total": n, "streams": "one", "pi": pi},
            {
                "op": "sweep",
                "rates": rates,
                "batch": args.d_batch,
                "duration": 2 if quick else 4,
                "streams": "one",
            },
        ]
    if scenario == "e":
        sizes = size_list(args.sizes, ["1000"] if quick else ["1000", "5000"])
        steps = []
        for n in sizes:
            steps.append({"op": "connect", "total": n, "streams": "one", "proto": "sse", "pi": pi})
            steps.append(
                {"op": "publish", "rate": args.fanout_rate, "duration": 3 if quick else 10}
            )
        return steps
    if scenario == "g":
        # a storm: all N open at once (no window), each with its own JWT, then subscribe
        n = min(args.storm or (1000 if quick else 10000), fd_max())
        return [{"op": "connect", "total": n, "streams": "one", "pi": pi, "window": n, "jwt": True}]
    if scenario == "h":
        n = min(args.storm or (1000 if quick else 10000), fd_max())
        return [
            {"op": "connect", "total": n, "streams": "one", "proto": "ext", "pi": pi},
            {"op": "blip", "before": 2, "missed": args.blip_missed, "timeout": 120},
        ]
    if scenario == "i":
        idle, active = args.mix_idle, args.mix_active
        if quick:
            idle, active = min(idle, 1000), min(active, 100)
        idle = min(idle, fd_max() - active - 4 * args.mix_churn)
        return [
            {"op": "connect", "total": idle, "streams": "idle", "pi": pi},
            {"op": "connect", "total": idle + active, "streams": "one", "pi": pi},
            {
                "op": "publish",
                "rate": args.mix_rate,
                "duration": min(args.mix_seconds, 5) if quick else args.mix_seconds,
                "churn": args.mix_churn,
            },
        ]
    raise SystemExit(f"unknown scenario {scenario}")


def targets_for(
    scenario: str, names: list[str], features: dict[str, Any], quick: bool
) -> list[str]:
    if scenario == "f":  # its own layouts; --targets may name some of them
        chosen = [n for n in names if n in F_LAYOUTS]
        return chosen or list(F_LAYOUTS)
    out = [n for n in names if n != "floor-coalesce" or scenario == "d"]
    if scenario in "ei":  # SSE: no reference; the mix: against the floors
        out = [n for n in out if n in ("cableway", "cableway-base", "floor", *TRIO_FLOORS)]
    if scenario in "fgh":  # the trio floors have no JWT check, no sessions
        out = [n for n in out if n not in TRIO_FLOORS]
    if scenario == "h":  # sessions and history: only Cableway has them
        out = [n for n in out if n == "cableway"]
    if scenario in "efhi":  # the worker targets: fan-out, many streams, batches, storms
        out = [n for n in out if n not in WORKER_TARGETS]
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
    label: str = "",
) -> list[dict[str, Any]]:
    label = label or scenario
    if scenario == "f":
        return run_nodes(target, steps, workdir, args)
    log_path = workdir / f"{label}-{target.name}.log"
    for _attempt in range(3):
        # a free port may be taken by another process before the server binds it (a
        # shared machine): start again on fresh ports when the server exited that way
        port, bport = free_port(), free_port()
        command = target.command(port, bport, scenario)
        server = spawn(command, target.cpu(), log_path, env=target.env())
        started = wait_listening(server, [port, bport])
        if started or server.poll() is None:
            break
        if "Address already in use" not in log_path.read_text(errors="replace"):
            break
        say(f"  {target.name}: a port was taken before it bound it, starting again")
    results: list[dict[str, Any]] = []
    profiler = None
    try:
        if not started:
            say(f"  {target.name}: did not start (see {log_path})")
            return [{"op": "start", "error": "server did not start", "log": str(log_path)}]
        if scenario == "e" and target.name.startswith("cableway") and not sse_available(port):
            say("  cableway answers 404 on /events: SSE not available, scenario (e) skipped")
            return [{"op": "skip", "reason": "GET /events answered 404 (no SSE in this build)"}]
        mark = workdir / f"{label}-{target.name}.window"
        mark.unlink(missing_ok=True)
        if args.profile and not args.profile_window and target.name in PROFILED:
            profiler = start_profiler(server.pid, Path(args.profile), f"{label}-{target.name}")
        elif args.profile and args.profile_window and target.name in WINDOW_PROFILED:
            watcher = threading.Thread(
                target=profile_window,
                args=(server.pid, Path(args.profile), f"{label}-{target.name}", mark),
                daemon=True,
            )
            watcher.start()
        spec = {
            "port": port,
            "broadcast_port": bport,
            "server_pid": server.pid,
            "secret": SECRET,
            "jwt_secret": JWT_SECRET,
            "pi": next((st["pi"] for st in steps if "pi" in st), PING_INTERVAL),
            "publishers": args.publishers,
            "signed": True,
            "payload": args.payload,
            "server_cpu": SERVER_CPU,
            "window_mark": str(mark),
            "steps": steps,
        }
        if target.tree() is not None:
            spec |= {"server_tree": target.tree(), "loadgen_cpu": LOADGEN_CPU}
        results += run_loadgen(spec, f"{label}-{target.name}", workdir, args)
        if server.poll() is not None:
            results.append({"op": "server", "error": f"server exited with {server.returncode}"})
    finally:
        if profiler is not None:
            stop(profiler, signal.SIGINT, wait=20)
        stop(server)
    return results


def run_loadgen(
    spec: dict[str, Any], tag: str, workdir: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Run the load generator (CPU 1) on ``spec``; its JSON lines, within --max-seconds."""
    results: list[dict[str, Any]] = []
    spec_path = workdir / f"{tag}.json"
    spec_path.write_text(json.dumps(spec))
    gen = spawn(
        [sys.executable, str(BENCH / "loadgen.py"), str(spec_path)],
        LOADGEN_CPU,
        workdir / f"{tag}-loadgen.log",
        stdout=subprocess.PIPE,
        stderr=None,
    )
    deadline = time.monotonic() + args.max_seconds
    assert gen.stdout is not None
    for line in gen.stdout:
        results.append(json.loads(line))
        if time.monotonic() > deadline:
            say(f"  {tag}: over {args.max_seconds}s, stopping")
            break
    stop(gen, wait=10)
    return results


def start_redis(workdir: Path, tag: str) -> tuple[subprocess.Popen[bytes], str] | None:
    """A throwaway redis-server: 127.0.0.1, a fresh port, no persistence, pinned to CPU 1."""
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    port = free_port()
    rdir = workdir / f"{tag}-redis"
    rdir.mkdir(exist_ok=True)
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(rdir)]
    proc = spawn(cmd, REDIS_CPU, workdir / f"{tag}-redis.log")
    if not wait_listening(proc, [port], timeout=10):
        stop(proc)
        raise RuntimeError(f"redis-server did not start (see {workdir / f'{tag}-redis.log'})")
    return proc, f"redis://127.0.0.1:{port}"


def run_nodes(
    target: Target, steps: list[dict[str, Any]], workdir: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Scenario (f), one layout: redis-server if needed, the nodes, the load generator.

    Subscribers alternate between the nodes (half each for two); every publication is
    POSTed to node A (the first), which publishes it to Redis; node B gets it from Redis.
    """
    layout = target.name
    cpus, use_redis = F_LAYOUTS[layout]
    tag = f"f-{layout}"
    nodes: list[tuple[subprocess.Popen[bytes], int, int]] = []
    profilers: list[subprocess.Popen[bytes] | None] = []
    redis = None
    try:
        extra: list[str] = []
        if use_redis:
            redis = start_redis(workdir, tag)
            if redis is None:
                say("  redis-server is not on PATH (apt-get install redis-server): (f) skipped")
                return [{"op": "skip", "reason": "redis-server is not on PATH"}]
            extra = ["--pubsub=redis", f"--redis_url={redis[1]}"]
        for i, cpu in enumerate(cpus):
            port, bport = free_port(), free_port()
            log_path = workdir / f"{tag}-node{i}.log"
            # every layout runs plain `cableway` (--broker=none), plus Redis when it has it
            cmd = Target("cableway", target.features).command(port, bport, "f") + extra
            proc = spawn(cmd, cpu, log_path)
            nodes.append((proc, port, bport))
        for i, (proc, port, bport) in enumerate(nodes):
            if not wait_listening(proc, [port, bport]):
                say(f"  {layout}: node {i} did not start (see {workdir / f'{tag}-node{i}.log'})")
                return [{"op": "start", "error": f"node {i} did not start"}]
        if args.profile:
            for i, (proc, _port, _bport) in enumerate(nodes):
                profilers.append(start_profiler(proc.pid, Path(args.profile), f"{tag}-node{i}"))
        spec = {
            "port": nodes[0][1],
            "broadcast_port": nodes[0][2],
            "server_pid": nodes[0][0].pid,
            "nodes": [
                {"port": port, "pid": proc.pid, "cpu": cpu}
                for (proc, port, _bport), cpu in zip(nodes, cpus, strict=True)
            ],
            "watch": [{"name": "redis", "pid": redis[0].pid, "cpu": REDIS_CPU}] if redis else [],
            "secret": SECRET,
            "signed": True,
            "payload": args.payload,
            "server_cpu": SERVER_CPU,
            "loadgen_cpu": LOADGEN_CPU,
            "steps": steps,
        }
        results = run_loadgen(spec, tag, workdir, args)
        for i, (proc, _port, _bport) in enumerate(nodes):
            if proc.poll() is not None:
                results.append({"op": "server", "error": f"node {i} exited with {proc.returncode}"})
        return results
    finally:
        for profiler in profilers:
            if profiler is not None:
                stop(profiler, signal.SIGINT, wait=20)
        for proc, _port, _bport in nodes:
            stop(proc)
        if redis is not None:
            stop(redis[0])


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


#: what --profile records (the whole run), and what --profile-window records (the window)
PROFILED = ("cableway", "cableway-base", "cableway-default", *TRIO_FLOORS)
WINDOW_PROFILED = (*PROFILED, "floor")


def profile_window(pid: int, outdir: Path, name: str, mark: Path) -> None:
    """py-spy over the measured window only: the load generator writes ``mark`` (the
    window's length in seconds) when it opens the window; the recording lasts that long."""
    deadline = time.monotonic() + 900
    while not mark.exists():
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)  # a bench-side watcher, not a test: polling a file is enough
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        say("  py-spy not installed in the venv: no profile")
        return
    outdir.mkdir(parents=True, exist_ok=True)
    seconds = max(1, int(float(mark.read_text() or "1")))
    base, k = name, 1
    while (outdir / f"{name}.txt").exists():  # later rounds keep their own file
        k += 1
        name = f"{base}-r{k}"
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "500", "--format", "raw"]
    cmd += ["--nonblocking", "--duration", str(seconds), "--output", str(outdir / f"{name}.txt")]
    proc = spawn(cmd, LOADGEN_CPU, outdir / f"{name}.py-spy.log")
    proc.wait()


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
        ("us_per_ping", "server CPU µs per ping (idle)", "lower"),
        ("pings", "pings received in the hold", "info"),
    ],
    "b": [
        ("us_per_delivery", "server CPU µs per delivery", "lower"),
        ("lat_p50_ms", "latency p50, ms", "lower"),
        ("lat_p99_ms", "latency p99, ms", "lower"),
        ("lat_max_ms", "latency max, ms", "lower"),
        ("lost", "lost deliveries", "lower"),
        ("reordered", "reordered", "lower"),
        ("loadgen_cpu_frac", "load generator CPU share", "info"),
        ("server_cpu_frac", "server CPU share (cores)", "info"),
        ("hub_us_per_post", "--workers: hub (supervisor) µs per POST", "info"),
        ("workers_us_per_post", "--workers: all workers µs per POST", "info"),
    ],
    "c": [
        ("max_sustained", "max sustained deliveries/s", "higher"),
        ("us_per_post", "server CPU µs per POST at max", "lower"),
        ("lat_p99_ms", "latency p99 at max, ms", "lower"),
        ("loadgen_cpu_frac", "load generator CPU share at max", "info"),
        ("server_cpu_frac", "server CPU share at max (cores)", "info"),
        ("hub_us_per_post", "--workers: hub µs per POST at max", "info"),
        ("workers_us_per_post", "--workers: workers µs per POST at max", "info"),
    ],
    "d": [
        ("max_sustained", "max sustained deliveries/s", "higher"),
        ("us_per_delivery", "server CPU µs per delivery at max", "lower"),
        ("lat_p99_ms", "latency p99 at max, ms", "lower"),
        ("loadgen_cpu_frac", "load generator CPU share at max", "info"),
        ("server_cpu_frac", "server CPU share at max (cores)", "info"),
        ("hub_us_per_post", "--workers: hub µs per POST at max", "info"),
        ("workers_us_per_post", "--workers: workers µs per POST at max", "info"),
    ],
}
METRICS["e"] = METRICS["b"]
METRICS["g"] = [
    ("conn_per_s", "handshake+subscribe/s (JWT, at once)", "higher"),
    ("server_us_per_conn", "server CPU µs per connection", "lower"),
    ("setup_p50_ms", "set-up time p50, ms", "lower"),
    ("setup_p99_ms", "set-up time p99, ms", "lower"),
    ("live", "connections reached", "higher"),
    ("failed", "connections failed", "lower"),
    ("loadgen_cpu_frac", "load generator CPU share", "info"),
]
METRICS["h"] = [
    ("restore_all_s", "until every session is restored, s", "lower"),
    ("complete_s", "until every missed message is in, s", "lower"),
    ("restore_p50_s", "restored welcome p50, s", "lower"),
    ("server_us_per_reconnect", "server CPU µs per reconnect+history", "lower"),
    ("restored", "sessions restored", "higher"),
    ("not_restored", "sessions not restored", "lower"),
    ("history_rejected", "history requests rejected", "lower"),
    ("lost", "lost (before, missed, after)", "lower"),
    ("duplicated", "duplicated", "lower"),
    ("failed", "reconnects failed", "lower"),
]
METRICS["i"] = [
    ("us_per_delivery", "server CPU µs per delivery (all of the mix)", "lower"),
    ("lat_p50_ms", "latency p50, ms", "lower"),
    ("lat_p99_ms", "latency p99, ms", "lower"),
    ("lat_max_ms", "latency max, ms", "lower"),
    ("lost", "lost deliveries", "lower"),
    ("reordered", "reordered", "lower"),
    ("server_cpu_frac", "server CPU share", "lower"),
    ("churn_ready", "churn: connections set up", "higher"),
    ("churn_failed", "churn: connections failed", "lower"),
    ("dropped_conns", "subscribers dropped by the server", "lower"),
    ("loadgen_cpu_frac", "load generator CPU share", "info"),
]
# (f): a_ = node A (accepts the POSTs; the only node of 1node*), b_ = node B (remote)
METRICS["f"] = [
    ("us_per_delivery", "CPU µs per delivery, all nodes", "lower"),
    ("a_us_per_delivery", "node A CPU µs per own delivery", "lower"),
    ("b_us_per_delivery", "node B CPU µs per own delivery", "lower"),
    ("redis_cpu_frac", "redis-server CPU share", "lower"),
    ("lat_p50_ms", "latency p50, all, ms", "lower"),
    ("lat_p99_ms", "latency p99, all, ms", "lower"),
    ("lat_max_ms", "latency max, all, ms", "lower"),
    ("a_lat_p50_ms", "latency p50 node A (local), ms", "lower"),
    ("a_lat_p99_ms", "latency p99 node A (local), ms", "lower"),
    ("a_lat_max_ms", "latency max node A (local), ms", "lower"),
    ("b_lat_p50_ms", "latency p50 node B (remote), ms", "lower"),
    ("b_lat_p99_ms", "latency p99 node B (remote), ms", "lower"),
    ("b_lat_max_ms", "latency max node B (remote), ms", "lower"),
    ("lost", "lost deliveries", "lower"),
    ("a_lost", "lost on node A", "lower"),
    ("b_lost", "lost on node B", "lower"),
    ("reordered", "reordered", "lower"),
    ("loadgen_cpu_frac", "load generator CPU share", "info"),
]
# (f) ratio columns: (header, layout, baseline layout)
F_RATIOS = [
    ("+r/1n", "1node+redis", "1node"),
    ("2n/1n", "2nodes", "1node"),
    ("2n/+r", "2nodes", "1node+redis"),
    ("2n2c/1n", "2nodes-2cpu", "1node"),
]


def summarize(scenario: str, target: str, results: list[dict[str, Any]], out: Summary) -> None:
    """``scenario`` is a label: a letter, or a letter and a variant (``b-nopi``)."""
    label, scenario = scenario, scenario.partition("-")[0]

    def put(key: str, size: str, value: Any) -> None:
        out.setdefault((label, f"{key}@{size}"), {})[target] = value

    for r in results:
        if r.get("op") == "skip":
            out.setdefault((label, "skipped"), {})[target] = r["reason"]
        if r.get("error"):
            out.setdefault((label, "error"), {})[target] = r["error"]
    noise = max((r.get("server_cpu_other_frac") or 0.0 for r in results), default=0.0)
    by_cpu: dict[str, float] = {}
    for r in results:
        for c, frac in (r.get("cpu_other_frac") or {}).items():
            by_cpu[c] = max(by_cpu.get(c, 0.0), frac or 0.0)
    if by_cpu and max(by_cpu.values()) > 0.1:
        worst = ", ".join(f"{frac:.0%} of CPU {c}" for c, frac in sorted(by_cpu.items()))
        out.setdefault((label, "warning"), {})[target] = (
            f"other processes took up to {worst} in a window (nodes' CPUs): noisy"
        )
    elif noise > 0.1:
        out.setdefault((label, "warning"), {})[target] = (
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
                put("us_per_ping", f"N={total}", r.get("us_per_ping"))
                put("pings", f"N={total}", r.get("pings"))
    elif scenario in "ghi":
        for r in results:
            if r.get("op") in ("connect", "blip", "publish") and scenario != "i":
                size = f"N={r.get('total', r.get('clients'))}"
                if r["op"] == "connect" and scenario == "h":
                    continue  # (h)'s set-up is not the measure
                for key, _label, _better in METRICS[scenario]:
                    if key in r:
                        put(key, size, r[key])
            elif r.get("op") == "publish":
                for key, _label, _better in METRICS[scenario]:
                    put(key, "", r.get(key))
    elif scenario == "f":
        n = 0
        for r in results:
            if r.get("op") == "connect":
                n = r["total"]
            elif r.get("op") == "publish":
                size = f"N={n}"
                put("us_per_delivery", size, r.get("us_per_delivery"))
                for key in ("redis_cpu_frac", "lat_p50_ms", "lat_p99_ms", "lat_max_ms"):
                    put(key, size, r.get(key))
                for key in ("lost", "reordered", "loadgen_cpu_frac"):
                    put(key, size, r.get(key))
                for node in r.get("nodes", []):
                    prefix = "ab"[node["node"]] if node["node"] < 2 else f"n{node['node']}"
                    for key in ("us_per_delivery", "lat_p50_ms", "lat_p99_ms", "lat_max_ms"):
                        put(f"{prefix}_{key}", size, node.get(key))
                    put(f"{prefix}_lost", size, node.get("lost"))
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
            out.setdefault((label, "warning"), {})[target] = "the load generator was the limit"
        if sweeps and sweeps[-1].get("passed"):
            out.setdefault((label, "note"), {})[target] = "passed every rate: max is a bound"


def summarize_rounds(
    scenario: str, target: str, rounds: list[list[dict[str, Any]]], out: Summary
) -> None:
    """Like :func:`summarize`, over several rounds of one target: the median of each figure.

    Warnings, notes and errors are taken from all the rounds together.
    """
    if len(rounds) == 1:
        summarize(scenario, target, rounds[0], out)
        return
    texts: Summary = {}
    summarize(scenario, target, [r for results in rounds for r in results], texts)
    per_round: list[Summary] = []
    for results in rounds:
        one: Summary = {}
        summarize(scenario, target, results, one)
        per_round.append(one)
    keys = list(dict.fromkeys(k for one in per_round for k in one))
    for key in keys:
        if key[1] in ("skipped", "warning", "note", "error"):
            if target in texts.get(key, {}):
                out.setdefault(key, {})[target] = texts[key][target]
            continue
        values = [one[key][target] for one in per_round if one.get(key, {}).get(target) is not None]
        numbers = [v for v in values if isinstance(v, int | float)]
        if numbers:
            out.setdefault(key, {})[target] = statistics.median(numbers)
        elif values:
            out.setdefault(key, {})[target] = values[-1]
    out.setdefault((scenario, "note"), {})["rounds"] = (
        f"median of {len(rounds)} rounds (the targets in turn, each round, the order rotated)"
    )


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
    "a": "(a) idle subscribed connections (pings every 3 s: CPU per ping)",
    "b": "(b) fan-out, one stream, HTTP broadcasts at a fixed rate",
    "c": "(c) many streams (one per client), open-loop rate sweep",
    "d": "(d) batched fan-out (arrays of --d-batch, 10 by default, on one stream, 1k "
    "subscribers), rate sweep",
    "e": "(e) fan-out over SSE",
    "f": "(f) fan-out over two Cableway nodes and Redis vs one node (node A takes the POSTs)",
    "g": "(g) connection storm: N clients at once, each with a JWT, subscribe to a signed stream",
    "h": "(h) network blip: N extended-protocol clients reset at once, reconnect with ?sid=, "
    "ask history",
    "i": "(i) realistic mix: idle subscribers, 1 active stream at a fixed rate, churn",
}


def table_f(summary: Summary) -> list[str]:
    """(f): one column per layout, then in-run ratios (two nodes / one node)."""
    keys = [k for (s, k) in summary if s == "f"]
    if not keys:
        return []
    seen = {t for (s, _k), row in summary.items() if s == "f" for t in row}
    cols = [t for t in F_LAYOUTS if t in seen]
    ratios = [(h, a, b) for h, a, b in F_RATIOS if a in cols and b in cols]
    header = ["metric".ljust(40)] + [c.rjust(12) for c in cols] + [h.rjust(8) for h, _, _ in ratios]
    lines = ["", SCENARIO_TITLES["f"], " ".join(header)]
    labels = {k: (label, better) for k, label, better in METRICS["f"]}
    order = {k: i for i, (k, _l, _b) in enumerate(METRICS["f"])}

    def sort_key(key: str) -> tuple[int, int, str]:
        metric, _, size = key.partition("@")
        digits = "".join(ch for ch in size if ch.isdigit())
        return (int(digits or 0), order.get(metric, 99), metric)

    for key in keys:
        if key in ("skipped", "warning", "note", "error"):
            for t, text in summary[("f", key)].items():
                lines.append(f"  {key}: {t}: {text}")
    for key in sorted((k for k in keys if "@" in k), key=sort_key):
        row = summary[("f", key)]
        metric, _, size = key.partition("@")
        label, better = labels.get(metric, (metric, ""))
        name = f"{label} {size}".strip()
        if better in ("lower", "higher"):
            name += " (↓)" if better == "lower" else " (↑)"
        cells = [fmt(row.get(c)).rjust(12) for c in cols]
        # a node's figure is compared with the whole of the baseline (all its clients are
        # on its one node): remote latency against one node's latency, and so on
        base_key = f"{metric[2:]}@{size}" if metric[:2] in ("a_", "b_") else key
        for _h, a, b in ratios:
            base = row.get(b)
            if base is None:
                base = summary.get(("f", base_key), {}).get(b)
            cells.append(ratio(row.get(a), base).rjust(8))
        lines.append(" ".join([name[:40].ljust(40), *cells]))
    return lines


def table(summary: Summary) -> str:
    order = [
        "cableway",
        "cableway-base",
        "cableway-default",
        *WORKER_TARGETS,
        "reference",
        "floor",
        "floor-coalesce",
        "floor-jitter",
        "floor-trio",
        "floor-trio-poll",
    ]
    lines = []
    labels_seen = sorted({s for (s, _k) in summary} | {"f"})
    for scenario in labels_seen:
        base, _, variant = scenario.partition("-")
        if scenario == "f":
            lines += table_f(summary)
            continue
        keys = [k for (s, k) in summary if s == scenario]
        if not keys:
            continue
        texts = ("skipped", "warning", "note", "error")  # rows of text, not targets
        seen = {
            t for (s, k), row in summary.items() if s == scenario and k not in texts for t in row
        }
        cols = [t for t in order if t in seen] + sorted(seen - set(order))
        header = ["metric".ljust(48)] + [c[:16].rjust(16) for c in cols]
        header += ["cw/ref".rjust(7), "cw/floor".rjust(8)]
        if "cableway-base" in cols:
            header.append("cw/base".rjust(7))
        if "floor-trio" in cols:
            header += ["cw/ftrio".rjust(8), "ftrio/floor".rjust(11)]
        workers = [w for w in WORKER_TARGETS if w in cols]
        header += [f"{w.removeprefix('cableway-')}/cw".rjust(9) for w in workers]
        lines.append("")
        title = SCENARIO_TITLES[base]
        if variant == "nopi":
            title += " -- PINGS OFF (?pi=0)"
        lines.append(title)
        lines.append(" ".join(header))
        labels = {k: (label, better) for k, label, better in METRICS[base]}
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
            if "cableway-base" in cols:
                cells.append(ratio(cw, row.get("cableway-base")).rjust(7))
            if "floor-trio" in cols:
                cells.append(ratio(cw, row.get("floor-trio")).rjust(8))
                cells.append(ratio(row.get("floor-trio"), row.get("floor")).rjust(11))
            cells += [ratio(row.get(w), cw).rjust(9) for w in workers]
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
    grouped: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    for record in records:
        if record.get("kind") == "result":
            by_round = grouped.setdefault((record["scenario"], record["target"]), {})
            by_round.setdefault(record.get("round", 0), []).append(record)
    summary: Summary = {}
    for (scenario, target), by_round in grouped.items():
        summarize_rounds(scenario, target, [by_round[k] for k in sorted(by_round)], summary)
    print(
        f"run of {meta['date']}: {meta['cpu']} x{meta['cpus']}, commit {meta['commit']}, "
        f"load {[round(x, 2) for x in meta['loadavg']]}, argv {meta.get('argv')}"
    )
    print(table(summary))
    return 0


def have_websockets() -> bool:
    """Whether the reference server can run; installs bench/requirements.txt if needed
    (so one command runs the whole benchmark from a clean checkout)."""
    if importlib.util.find_spec("websockets") is not None:
        return True
    say("installing bench/requirements.txt (websockets, for the reference server) ...")
    requirements = Path(__file__).resolve().parent / "requirements.txt"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        check=False,
    )
    importlib.invalidate_caches()
    if result.returncode != 0:
        say("warning: pip install -r bench/requirements.txt failed")
    return importlib.util.find_spec("websockets") is not None


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Cableway benchmarks, with the reference and the floor in the same run."
    )
    parser.add_argument(
        "--scenarios",
        default="a,b,c,d,e,g,h,i",
        help="comma-separated: a,b,c,d,e,g,h,i; X-nopi runs X without pings (labelled); "
        "f (two Cableway nodes over Redis vs one node) only when named: it starts its own "
        "redis-server",
    )
    parser.add_argument("--sizes", help="connection counts for a, b, e, f (e.g. 1000,5000,max)")
    parser.add_argument(
        "--targets",
        default="cableway,reference,floor,floor-coalesce",
        help="comma-separated; for f: layouts among " + ",".join(F_LAYOUTS) + " (default all)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short steps")
    parser.add_argument(
        "--base-src",
        help="target cableway-base: Cableway run with PYTHONPATH=DIR (a directory holding "
        "another version's `cableway` package, e.g. `git archive` of src/ at a commit), "
        "to compare before/after in one run",
    )
    parser.add_argument("--json", help="append JSON lines (results, summary, meta) here")
    parser.add_argument("--payload", type=int, default=200, help="padding bytes per message")
    parser.add_argument("--fanout-rate", type=float, default=1.0, help="broadcasts/s in b, e, f")
    parser.add_argument(
        "--profile", help="directory for py-spy profiles of cableway (and floor-trio) runs"
    )
    parser.add_argument(
        "--profile-window",
        action="store_true",
        help="with --profile: record only the measured window of (c)/(i)-style publish steps "
        "(py-spy starts when the load generator opens it), and profile the floors too",
    )
    parser.add_argument("--max-seconds", type=float, default=600, help="per target and scenario")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the targets (f: the layouts) this many times in turn; the table shows "
        "medians (repeat a scenario when the noise warnings say the machine was busy)",
    )
    parser.add_argument(
        "--no-pings",
        action="store_true",
        help="run every scenario named as its -nopi variant (?pi=0: no pings; labelled)",
    )
    parser.add_argument(
        "--storm", type=int, help="clients in (g) and (h) (default 10000; 1000 with --quick)"
    )
    parser.add_argument(
        "--blip-missed", type=int, default=5, help="(h): publications while clients are away"
    )
    parser.add_argument("--mix-idle", type=int, default=10000, help="(i): idle subscribers")
    parser.add_argument("--mix-active", type=int, default=1000, help="(i): active subscribers")
    parser.add_argument("--mix-rate", type=float, default=10.0, help="(i): broadcasts per second")
    parser.add_argument(
        "--mix-churn", type=float, default=100.0, help="(i): connects (and disconnects) per s"
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="(a): seconds each size is held idle and its pings counted (default 7.5; 3.5 "
        "with --quick); longer holds average over more of the machine's noise",
    )
    parser.add_argument("--mix-seconds", type=float, default=30.0, help="(i): duration")
    parser.add_argument(
        "--sweep-top",
        type=int,
        default=64000,
        help="(c): the top of the rate sweep, POSTs/s (steps of 1/4 past 32 000; the sweep "
        "stops at the first rate a target does not sustain)",
    )
    parser.add_argument(
        "--baseline",
        help="another checkout's src/ (e.g. `git archive <commit> src | tar -x -C DIR`), run "
        "as target cableway-base right after cableway, for a before/after in one run",
    )
    parser.add_argument(
        "--d-batch",
        type=int,
        default=10,
        help="(d): publications per POST (default 10; 1: one per POST, the POST rates "
        "scaled so that every step offers the same deliveries/s)",
    )
    parser.add_argument(
        "--publishers",
        type=int,
        default=2,
        help="keep-alive connections the load generator POSTs over (default 2); a server "
        "that answers each POST only once another process confirmed it (--workers, "
        "--pubsub=redis) serves each connection's POSTs one round trip at a time",
    )
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

    global BASELINE
    if args.baseline:
        src = Path(args.baseline).resolve()
        if not (src / "__init__.py").exists():
            raise SystemExit(f"--baseline {src}: not a package directory (a checkout's src/)")
        BASELINE = Path(tempfile.mkdtemp(prefix="cableway-base-"))
        atexit.register(shutil.rmtree, BASELINE, True)
        (BASELINE / "cableway").symlink_to(src)
    elif args.base_src:  # a directory that already holds the other `cableway` package
        BASELINE = Path(args.base_src).resolve()
    features = cableway_features()
    names = [t for t in args.targets.split(",") if t]
    if "reference" in names and not have_websockets():
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
        tokens = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        if args.no_pings:
            tokens = [t if t.endswith("-nopi") else t + "-nopi" for t in tokens]
        for label in tokens:
            scenario, pings = split_scenario(label)
            steps = program(scenario, args, pings)
            rounds = max(1, args.rounds)
            targets = targets_for(scenario, names, features, args.quick)
            if (
                BASELINE is not None
                and "cableway" in targets
                and "cableway-base" not in targets
                and scenario != "f"
            ):
                targets.insert(targets.index("cableway") + 1, "cableway-base")
            done: dict[str, list[list[dict[str, Any]]]] = {}
            skipped = False
            for k in range(rounds):
                # each round starts one target later: no target always runs first (after
                # the previous round's last target's teardown) or always after the same one
                shift = k % len(targets) if targets else 0
                for name in targets[shift:] + targets[:shift]:
                    tag = f"[{label}] {name}" + (f" (round {k + 1}/{rounds})" if rounds > 1 else "")
                    say(f"{tag} ...")
                    t0 = time.monotonic()
                    target = Target(name, features)
                    results = run_one(scenario, target, steps, workdir, args, label)
                    say(f"{tag} done in {time.monotonic() - t0:.1f}s")
                    for r in results:
                        record = {"kind": "result", "scenario": label, "target": name}
                        records.append(record | ({"round": k} if rounds > 1 else {}) | r)
                        if r.get("loadgen_limited"):
                            say(f"  WARNING: load generator at {r['loadgen_cpu_frac']:.0%} CPU")
                    done.setdefault(name, []).append(results)
                    if any(r.get("op") == "skip" for r in results):
                        skipped = True
                        break
                if skipped:
                    break
            for name, by_round in done.items():
                summarize_rounds(label, name, by_round, summary)
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
