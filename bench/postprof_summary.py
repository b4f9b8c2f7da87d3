"""Attribute py-spy raw (collapsed) stacks of scenario (c) to the steps of a POST.

``python3 bench/postprof_summary.py STACKS.txt US_PER_POST`` prints each step's share of
the non-idle samples and that share times US_PER_POST (server CPU µs per POST measured in
the same run). Idle is ``epoll_wait`` (trio waiting for I/O). The first rule that matches,
walking the stack from the leaf to the root, names the step; ``bench/postprof.py`` records
the stacks. A sampling estimate: shares of the samples, not exact µs.
"""

from __future__ import annotations

import collections
import re
import sys

# (step, pattern on one frame); checked for every frame from the leaf outwards
RULES: list[tuple[str, str]] = [
    ("idle (epoll_wait)", r"^epoll_wait "),
    ("fan-out write syscalls", r"^(write|send) \(libc|^os_write |^sock_send |^TrioFloor\.send "),
    ("read syscall", r"^(read|recv) \(libc|^os_read |^sock_recv "),
    ("trio I/O registration (epoll_ctl)", r"^epoll_ctl |_update_registrations"),
    ("counters (ops/metrics.py)", r"ops/metrics\.py"),
    (
        "encoding (EncodedBroadcast, frames)",
        r"EncodedBroadcast|_identifier_json|data_message|"
        r"message_json|text_frame|_Wire\.build|WebSocketSession\.encode|encode_run|"
        r"floor_server\.py:\d+\);text_frame|^dumps ",
    ),
    (
        "h11 path (requests handed over)",
        r"h11/|^broadcast \(src/transport/broadcast_endpoint|"
        r"drain_body|^Conn\.next_event|_serve_requests \(src/transport/http\.py:\d+\)$",
    ),
    ("head parse (httphead)", r"protocol/httphead\.py"),
    (
        "intake: judge, validation, account",
        r"node/intake\.py|protocol/broadcast\.py|"
        r"strict_json|json/decoder|^loads ",
    ),
    (
        "read path: wait_head, fill, deadline/idle scopes",
        r"^Conn\.(wait_head|fill|top_up|"
        r"hand_over) |CancelScope\.deadline|idle_scopes",
    ),
    (
        "publish -> deliver -> fan-out (Python)",
        r"node/publish\.py|node/fanout\.py|"
        r"transport/fanout\.py|protocol/hub\.py|node/registry\.py|^Node\.publish |"
        r"^Server\.publish|^Floor\.publish ",
    ),
    ("POST loop (fast_requests / floor http_requests)", r"^fast_requests |^Floor\.http_requests "),
    ("trio scheduling", r"trio/|outcome/"),
]


def step_of(frames: list[str]) -> str:
    names = [re.sub(r":\d+\)", ")", f) for f in frames]
    for i, name in enumerate(names):  # the 201s: Cableway's flush, the floor's own send
        if name.startswith("Conn.flush ") or (
            name.startswith("TrioFloor.send ") and names[i - 1].startswith("Floor.http_requests ")
        ):
            return "HTTP response write (201)"
    for frame in reversed(frames):
        for step, pattern in RULES:
            if re.search(pattern, frame):
                return step
    return "other"


def main() -> None:
    path, us_per_post = sys.argv[1], float(sys.argv[2])
    counts: collections.Counter[str] = collections.Counter()
    with open(path) as stacks:
        for line in stacks:
            stack, _, n = line.rstrip().rpartition(" ")
            counts[step_of(stack.split(";"))] += int(n)
    busy = sum(n for s, n in counts.items() if not s.startswith("idle"))
    print(f"{path}: {sum(counts.values())} samples, {busy} busy; {us_per_post} µs/POST")
    for step, n in counts.most_common():
        if step.startswith("idle"):
            print(f"  {'':>6}  {'':>6}  {n:6d}  {step}")
            continue
        print(f"  {100 * n / busy:5.1f}%  {us_per_post * n / busy:5.2f}µs  {n:6d}  {step}")


if __name__ == "__main__":
    main()
