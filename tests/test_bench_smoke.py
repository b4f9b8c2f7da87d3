"""The benchmark's smoke run: the new scenarios of ``bench/run.py`` complete, nothing lost.

``bench/run.py`` is the project's performance harness (docs/benchmarks.md). CI does not time
anything: this runs the smallest configuration of the connection storm (g), the network
blip (h) and the realistic mix (i), pings on, against Cableway and the floor (the mix also
against the two trio floors, bench/floor_trio.py with and without its read poller), and asserts
only that every step completed and that no message was lost or duplicated. Bounded: a few
hundred connections, a few seconds per step, and the whole run killed after 100 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Results of one smoke run, by ``scenario/target``."""
    out = tmp_path_factory.mktemp("bench") / "smoke.jsonl"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--quick",
        "--scenarios=g,h,i",
        "--targets=cableway,floor,floor-trio,floor-trio-poll",
        "--storm=200",
        "--blip-missed=3",
        "--mix-idle=200",
        "--mix-active=20",
        "--mix-rate=5",
        "--mix-churn=20",
        "--mix-seconds=2",
        "--max-seconds=40",
        f"--json={out}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, list[dict[str, Any]]] = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "result":
            results.setdefault(f"{record['scenario']}/{record['target']}", []).append(record)
    return results


def ops(results: list[dict[str, Any]], op: str) -> list[dict[str, Any]]:
    found = [r for r in results if r.get("op") == op]
    assert found, f"no {op!r} step in {results}"
    return found


@pytest.mark.timeout(120)
def test_storm_every_client_with_a_jwt_is_set_up(smoke: dict[str, list[dict[str, Any]]]) -> None:
    for target in ("cableway", "floor"):
        results = smoke[f"g/{target}"]
        assert not [r for r in results if r.get("error")], results
        (connect,) = ops(results, "connect")
        assert connect["jwt"] is True
        assert connect["ready"] == connect["total"] == 200, connect
        assert connect["failed"] == 0, connect


@pytest.mark.timeout(120)
def test_blip_restores_every_session_nothing_lost_or_duplicated(
    smoke: dict[str, list[dict[str, Any]]],
) -> None:
    results = smoke["h/cableway"]
    assert not [r for r in results if r.get("error")], results
    assert "h/floor" not in smoke  # no sessions there: Cableway only
    (blip,) = ops(results, "blip")
    assert blip["complete"], blip
    assert blip["restored"] == blip["clients"] == 200, blip
    assert blip["missed_received"] == blip["missed_expected"] == 200 * 3, blip
    assert blip["lost"] == 0, blip
    assert blip["duplicated"] == 0, blip
    assert blip["not_restored"] == 0, blip
    assert blip["history_rejected"] == 0, blip


@pytest.mark.timeout(120)
def test_mix_delivers_everything_while_clients_churn(
    smoke: dict[str, list[dict[str, Any]]],
) -> None:
    assert "g/floor-trio" not in smoke  # no JWT check there: the mix only
    assert "g/floor-trio-poll" not in smoke
    for target in ("cableway", "floor", "floor-trio", "floor-trio-poll"):
        results = smoke[f"i/{target}"]
        assert not [r for r in results if r.get("error")], results
        (publish,) = ops(results, "publish")
        assert publish["expected"] == 20 * 10, publish  # 20 subscribers, 5/s for 2 s
        assert publish["lost"] == 0, publish
        assert publish["reordered"] == 0, publish
        assert publish["http_errors"] == 0, publish
        assert publish["churn_opened"] >= 20, publish
        assert publish["churn_failed"] == 0, publish
