"""The TLS fan-out benchmark's smoke run: both modes complete and nothing is lost.

``bench/tls_fanout.py`` (docs/benchmarks.md, TLS) measures TLS against plain text; CI times
nothing, this only keeps the harness working: a few subscribers, a few broadcasts, one round,
killed after 120 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_tls_fanout_bench_runs_both_modes_without_loss(tmp_path: Path) -> None:
    out = tmp_path / "tls.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "tls_fanout.py"),
            "--subscribers=20",
            "--broadcasts=10",
            "--rate=50",
            "--rounds=1",
            "--max-seconds=30",
            f"--json={out}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rounds = [row for row in rows if not row.get("summary")]
    assert sorted(row["mode"] for row in rounds) == ["plain", "tls"]
    for row in rounds:
        assert (row["delivered"], row["lost"], row["errors"]) == (200, 0, [])
    (summary,) = [row for row in rows if row.get("summary")]
    assert (summary["plain_lost"], summary["tls_lost"]) == (0, 0)
