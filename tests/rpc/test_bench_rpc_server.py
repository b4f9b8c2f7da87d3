"""bench/rpc_server.py's smoke run: the benchmark of commands through ``cableway
--rpc_host`` against the channels SDK completes (every client connected, subscribed and got
the reply to each of its commands; the script asserts each one). Nothing is timed here:
the figures are in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("uvicorn")


@pytest.mark.timeout(120)
def test_the_rpc_benchmark_completes(tmp_path: Path) -> None:
    out = tmp_path / "rpc.jsonl"
    cmd = [
        *(sys.executable, str(ROOT / "bench" / "rpc_server.py")),
        *("--clients=1,3", "--commands=20", "--max-seconds=40", f"--json={out}"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record["clients"] for record in records] == [1, 3]
    for record in records:
        assert record["bench"] == "rpc_server"
        assert record["commands_per_s"] > 0
        assert record["p50_ms"] <= record["p99_ms"] <= record["max_ms"]
