"""The fan-out's per-subscriber loop alone: ``fan_out`` of one broadcast to N real
WebSocket sessions on socket pairs, against a bare ``send()`` loop over the same sockets
(the floor's fan-out loop).

Sessions are made as the server makes them (a core, the ping grid, the jitter), never
started; the driver calls ``fan_out`` itself, broadcast after broadcast, and times only
that call (inside a trio run, so that pings due soon ride the broadcast as in a server).
Between broadcasts (not timed) it can read a buffer larger than the CPU's caches
(``--evict``, as the kernel's work and the clients do in a real server) and drains the
peers.

    .venv/bin/python bench/fan_out_loop.py --sessions 1000 --broadcasts 40 --evict

Prints the µs per delivery of each loop (the median of ``--repeat`` runs) and the
difference to the bare loop. Numbers are for comparing builds on one machine only.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable

import trio
import trio.testing
from ping_tick import drain, make_sessions  # type: ignore[import-not-found]

from cableway.transport import fanout

#: a broadcast's client message (a Turbo Stream of some 300 bytes, as bench/run.py's)
TEXT = (
    '{"identifier":"{\\"channel\\":\\"Turbo::StreamsChannel\\",'
    '\\"signed_stream_name\\":\\"IkJlbmNoOjpTdHJlYW0i--0123456789abcdef\\"}",'
    '"message":"' + "x" * 220 + '"}'
)


def use_fan_out_from(path: str) -> None:
    """Load ``path`` as a sibling of cableway.transport.fanout and use its ``fan_out``."""
    spec = importlib.util.spec_from_file_location("cableway.transport._fanout_other", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fanout.fan_out = module.fan_out  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=40, help="timed broadcasts per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evict", action="store_true", help="read 64 MiB between broadcasts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--step",
        type=float,
        default=1.0,
        help="seconds of trio's (mock) clock between broadcasts: 1.0 (as scenario (b)) has "
        "every ping ride a broadcast, a third of the deliveries; 0: no pings",
    )
    parser.add_argument("--fanout-from", metavar="FILE", help="another build's fanout.py (A/B)")
    args = parser.parse_args()
    if args.fanout_from:
        use_fan_out_from(args.fanout_from)
    fan_out = fanout.fan_out
    _server, sessions, peers = make_sessions(args.sessions, args.seed)
    frame = sessions[0].encode(TEXT)
    assert frame is not None
    big = bytearray(64 << 20)
    members = set(sessions)

    def between() -> None:
        if args.evict:
            bytes(big[::64])  # one read of every cache line of 64 MiB
        drain(peers)

    def run_cableway() -> float:
        spent = 0.0
        for _ in range(args.broadcasts):
            clock.jump(args.step)
            t0 = time.perf_counter()
            done, _sent = fan_out(members, "ident", [TEXT], [None], None)
            spent += time.perf_counter() - t0
            assert done == len(sessions)
            between()
        return spent / (args.broadcasts * len(sessions)) * 1e6

    def run_bare() -> float:
        spent = 0.0
        order = [s._sock for s in members]  # the same order as the set's
        for _ in range(args.broadcasts):
            t0 = time.perf_counter()
            for sock in order:
                sock.send(frame)  # type: ignore[union-attr]
            spent += time.perf_counter() - t0
            between()
        return spent / (args.broadcasts * len(sessions)) * 1e6

    loops: dict[str, Callable[[], float]] = {"cableway": run_cableway, "bare": run_bare}
    results: dict[str, list[float]] = {name: [] for name in loops}

    clock = trio.testing.MockClock()  # the sessions' clock (they were made at 0)

    async def timed() -> None:
        for _ in range(args.repeat):
            for name, loop in loops.items():
                results[name].append(loop())

    trio.run(timed, clock=clock)
    bare = statistics.median(results["bare"])
    for name, runs in results.items():
        med = statistics.median(runs)
        shown = ", ".join(f"{r:.3f}" for r in runs)
        above = f"; above bare {med - bare:+.3f}" if name != "bare" else ""
        print(f"{name:9s} µs per delivery: median {med:.3f} (runs {shown}){above}")
    for peer in peers:
        peer.close()


if __name__ == "__main__":
    main()
