"""Gate an Autobahn|Testsuite fuzzingclient report: print ``N passed, N failed``.

A case passes when its ``behavior`` is OK, INFORMATIONAL or UNIMPLEMENTED (or NON-STRICT
for a case listed in :data:`ACCEPTED_NON_STRICT`) and its ``behaviorClose`` is OK or
INFORMATIONAL. Anything else (FAILED, WRONG CODE, UNCLEAN, FAILED BY CLIENT, or an
unlisted NON-STRICT) fails, and so does a report with no case at all.

Usage: ``python fuzz/autobahn/summarise.py reports/servers/index.json [AGENT] [--markdown]``
(``--markdown`` also prints the per-group table used in docs/conformance.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PASSING = frozenset({"OK", "INFORMATIONAL", "UNIMPLEMENTED"})
PASSING_CLOSE = frozenset({"OK", "INFORMATIONAL"})

#: NON-STRICT results we accept, with the reason (keep docs/conformance.md in sync).
ACCEPTED_NON_STRICT: dict[str, str] = {}

#: Known bugs, like pytest's strict xfail: behaviorClose value -> the bug. A case whose
#: behavior passes and whose behaviorClose is listed counts as a known failure (not as
#: passed, not as failed); when no case shows it any more, the gate fails so that the
#: entry is removed. Keep in sync with tests/conformance/test_known_bugs.py.
KNOWN_BUGS: dict[str, str] = {}

GROUPS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
    "10": "Miscellaneous",
    "12": "WebSocket compression (payloads)",
    "13": "WebSocket compression (parameters)",
}


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def known_bug(result: Mapping[str, Any]) -> str | None:
    """The known bug this case shows, if it shows one and nothing else."""
    behavior, close = result.get("behavior"), result.get("behaviorClose")
    if close in KNOWN_BUGS and behavior in PASSING:
        return str(close)
    return None


def verdict(case_id: str, result: Mapping[str, Any]) -> str | None:
    """``None`` when the case passes, else why it fails."""
    behavior = result.get("behavior")
    close = result.get("behaviorClose")
    if behavior == "NON-STRICT" and case_id not in ACCEPTED_NON_STRICT:
        return "NON-STRICT (not in the accepted list)"
    if behavior != "NON-STRICT" and behavior not in PASSING:
        return f"behavior {behavior}"
    if close not in PASSING_CLOSE:
        return f"behaviorClose {close}"
    return None


def markdown(cases: Mapping[str, Mapping[str, Any]]) -> str:
    rows: dict[str, Counter[str]] = {}
    for case_id, result in cases.items():
        row = rows.setdefault(case_id.split(".")[0], Counter())
        row[str(result.get("behavior"))] += 1
        row["close " + str(result.get("behaviorClose"))] += 1
    out = [
        "| group | cases | OK | NON-STRICT | INFORMATIONAL | UNIMPLEMENTED | other "
        "| close OK/INFO | close other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in sorted(rows, key=int):
        counts = rows[group]
        total = sum(n for b, n in counts.items() if not b.startswith("close "))
        other = sum(
            n
            for b, n in counts.items()
            if not b.startswith("close ") and b not in PASSING | {"NON-STRICT"}
        )
        close_ok = counts["close OK"] + counts["close INFORMATIONAL"]
        out.append(
            f"| {group}.x {GROUPS.get(group, '')} | {total} | {counts['OK']} "
            f"| {counts['NON-STRICT']} | {counts['INFORMATIONAL']} "
            f"| {counts['UNIMPLEMENTED']} | {other} | {close_ok} | {total - close_ok} |"
        )
    return "\n".join(out)


def summarise(index: Mapping[str, Any], agent: str | None, *, show_table: bool) -> int:
    if agent is None:
        if len(index) != 1:
            print(f"summarise: name the agent, one of {sorted(index)}", file=sys.stderr)
            return 2
        agent = next(iter(index))
    cases: Mapping[str, Mapping[str, Any]] = index.get(agent, {})
    failed: list[tuple[str, str]] = []
    known: dict[str, list[str]] = {bug: [] for bug in KNOWN_BUGS}
    behaviors: Counter[str] = Counter()
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        behaviors[str(result.get("behavior"))] += 1
        bug = known_bug(result)
        if bug is not None:
            known[bug].append(case_id)
            continue
        why = verdict(case_id, result)
        if why is not None:
            failed.append((case_id, why))
    for case_id, why in failed:
        print(f"FAIL {case_id}: {why} (see {cases[case_id].get('reportfile')})")
    slowest = sorted(cases.items(), key=lambda item: -int(item[1].get("duration", 0)))[:5]
    if slowest:
        print(
            "slowest: " + ", ".join(f"{cid} {int(r.get('duration', 0))} ms" for cid, r in slowest)
        )
    print("behaviors: " + ", ".join(f"{b} {n}" for b, n in sorted(behaviors.items())))
    for case_id in sorted(ACCEPTED_NON_STRICT, key=case_key):
        if cases.get(case_id, {}).get("behavior") == "NON-STRICT":
            print(f"accepted NON-STRICT {case_id}: {ACCEPTED_NON_STRICT[case_id]}")
    for bug, ids in known.items():
        if ids:
            print(f"known bug in {len(ids)} cases ({', '.join(ids[:8])}...): {KNOWN_BUGS[bug]}")
        elif cases:
            failed.append(("-", f"known bug {bug!r} no longer seen: remove it from KNOWN_BUGS"))
            print(f"FAIL known bug {bug!r} is not seen any more: remove it from KNOWN_BUGS")
    if show_table:
        print(markdown(cases))
    passed = (
        len(cases)
        - sum(len(ids) for ids in known.values())
        - len([case for case in failed if case[0] != "-"])
    )
    print(f"{passed} passed, {len(failed)} failed")
    if not cases:
        print(f"summarise: no case for agent {agent!r}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("index", type=Path, help="reports/servers/index.json")
    parser.add_argument("agent", nargs="?", help="agent name (default: the only one)")
    parser.add_argument("--markdown", action="store_true", help="print the per-group table")
    args = parser.parse_args(argv)
    index = json.loads(args.index.read_text())
    return summarise(index, args.agent, show_table=args.markdown)


if __name__ == "__main__":
    sys.exit(main())
