"""``bench/compression.py`` in its smallest size: a real ``cableway --enable_ws_compression``
process on 127.0.0.1, raw-socket subscribers with and without the browsers' offer. Nothing is
timed: the run must deliver every broadcast to everyone, the compressing readers must inflate
exactly the messages the plain readers got, and their frames must be smaller."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_compressed_subscribers_get_the_same_messages_in_fewer_bytes(tmp_path: Path) -> None:
    out = tmp_path / "compression.jsonl"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "compression.py"),
        "--total=20",
        "--count=5",
        "--rate=50",
        "--max-seconds=30",
        f"--json={out}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    phases = [r for r in records if "phase" in r]
    assert [(r["template"], r["phase"]) for r in phases] == [
        ("message", "plain"),
        ("message", "deflate"),
        ("list", "plain"),
        ("list", "deflate"),
    ]
    assert all(r["deliveries"] == r["expected"] == 100 for r in phases)
    summaries = [r for r in records if "wire_ratio" in r]
    assert [s["same_messages"] for s in summaries] == [True, True]
    assert all(s["wire_ratio"] < 0.6 for s in summaries)
