"""Run every atheris harness in fuzz/ for a fixed number of runs (the CI smoke test).

Usage (from anywhere; the Python must have cableway installed)::

    python fuzz/run_all.py                      # CI budget: about a minute and a half
    python fuzz/run_all.py --runs 100000        # a real campaign, every harness
    python fuzz/run_all.py --only session jwt   # some harnesses
    python fuzz/run_all.py --seed 0             # a random seed instead of CI's fixed one

Each harness ``fuzz/fuzz_<name>.py`` starts from its committed seeds in
``fuzz/corpus/<name>/`` and writes what it discovers to a temporary directory (the
committed corpus only holds hand-made seeds and crash reproducers). A crash or a hang
(``-timeout``) is saved under ``fuzz/crashes/`` (git-ignored): copy it into the corpus
with a descriptive name once understood. atheris is installed with pip when missing.
The smoke run uses a fixed libFuzzer seed (``--seed``, 1 by default), so that a CI
run is reproducible and a failure is a regression of the code, not a new lucky draw;
campaigns use ``--seed 0`` (random) to find new inputs.
Prints one line per harness and ``N passed, N failed``; exits 1 when any harness failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
#: runs per harness in CI: sized so each takes ~5-15 s on a 2-core machine
SMOKE_RUNS = {
    "commands": 20_000,
    "session": 10_000,
    "app_session": 40_000,  # ~5 000 inputs/s
    "http_front": 1_500,
    "ws_frames": 4_000,
    "jwt": 50_000,
    "jwt_fast": 50_000,
    "upgrade_fast": 1_500,  # four connections served per input
    "signed_streams": 50_000,
    "tls_front": 2_000,  # a real socket pair and a TLS key exchange per input: ~3 ms
    "poller_read": 2_500,  # two sessions on socket pairs per input: ~450 inputs/s
}
DEFAULT_RUNS = 5_000
MAX_LEN = {
    "tls_front": 2048,
    "http_front": 2048,
    "upgrade_fast": 2048,
    "ws_frames": 4096,
    "ws_client_frames": 4096,
    "session": 2048,
    "app_session": 2048,
    "poller_read": 2048,
}


def ensure_atheris() -> bool:
    if importlib.util.find_spec("atheris") is not None:
        return True
    print("run_all: installing atheris with pip", file=sys.stderr, flush=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "atheris",
        ],
        check=False,
    )
    return result.returncode == 0


def run_harness(name: str, runs: int, max_time: int, seed: int) -> tuple[bool, str]:
    harness = FUZZ / f"fuzz_{name}.py"
    crashes = FUZZ / "crashes"
    crashes.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as scratch:
        command = [
            sys.executable,
            str(harness),
            f"-runs={runs}",
            f"-max_len={MAX_LEN.get(name, 4096)}",
            f"-max_total_time={max_time}",
            "-timeout=20",
            "-print_final_stats=1",
            f"-seed={seed}",
            f"-artifact_prefix={crashes}/{name}-",
            scratch,
            str(FUZZ / "corpus" / name),
        ]
        start = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    done = [line for line in output.splitlines() if line.startswith("Done ")]
    summary = done[-1] if done else "no 'Done' line"
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        return False, f"{name}: FAILED (exit {result.returncode}, {elapsed:.0f} s)\n{tail}"
    return True, f"{name}: ok, {summary.removeprefix('Done ')} ({elapsed:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every fuzz harness for a fixed budget.")
    parser.add_argument("--runs", type=int, help="runs per harness (default: the CI table)")
    parser.add_argument(
        "--max-time", type=int, default=30, help="seconds per harness at most (default 30)"
    )
    parser.add_argument("--only", nargs="*", help="harness names (default: all)")
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="libFuzzer seed (default 1: CI's smoke run is reproducible; 0 = random)",
    )
    parser.add_argument("--no-install", action="store_true", help="never pip-install atheris")
    args = parser.parse_args(argv)

    names = sorted(path.stem.removeprefix("fuzz_") for path in FUZZ.glob("fuzz_*.py"))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown harness(es): {', '.join(sorted(unknown))}")
        names = [name for name in names if name in args.only]
    if not (ensure_atheris() if not args.no_install else importlib.util.find_spec("atheris")):
        print("run_all: atheris is not available (pip install atheris)", file=sys.stderr)
        return 1
    passed = failed = 0
    for name in names:
        runs = args.runs or SMOKE_RUNS.get(name, DEFAULT_RUNS)
        ok, line = run_harness(name, runs, args.max_time, args.seed)
        print(line, flush=True)
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
