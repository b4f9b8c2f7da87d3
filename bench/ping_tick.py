"""The timer task's per-ping loop alone: ``Timers.fire_due`` on N real sessions on socket
pairs, against the floor's per-tick loop and a bare ``send()`` loop over the same sockets.

Sessions are WebSocket sessions as the server makes them (a core, the ping grid, the
jitter), never started: the driver calls the timer task's batch itself, tick after tick
of :data:`~cableway.transport.session.PING_GRID`, and times only that call. Between
ticks (not timed) it can read a buffer larger than the CPU's caches (``--evict``, as the
kernel's work and the clients do in a real server) and drains the peers every interval.

    .venv/bin/python bench/ping_tick.py --sessions 9000 --intervals 4 --evict

Prints the µs per ping of each loop (the median of ``--repeat`` runs) and the
difference to the bare loop. Numbers are for comparing builds on one machine only.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import random
import socket
import statistics
import time
from collections.abc import Callable

import trio

from cableway.config import Config
from cableway.protocol.handshake import websocket_open
from cableway.transport.server import Server
from cableway.transport.session import PING_GRID
from cableway.transport.timers import Timers
from cableway.transport.ws import WebSocketSession

UNIX = 1_700_000_000.0
INTERVAL = 3.0
#: the ping frame every session gets here (stamps of ten digits, as for UNIX + a few s)
FRAME = b"\x81\x24" + b'{"type":"ping","message":1700000001}'


class Client:
    """The floor's per-connection record (bench/floor_server.py)."""

    __slots__ = ("dead", "kind", "pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.dead, self.kind, self.pending = sock, False, "ws", b""


def make_sessions(n: int, seed: int) -> tuple[Server, list[WebSocketSession], list[socket.socket]]:
    rng = random.Random(seed)
    server = Server(Config(host="127.0.0.1", port=0))
    sessions, peers = [], []
    for i in range(n):
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        opening = websocket_open(
            headers={},
            query="",
            subprotocols=["actioncable-v1-json"],
            fresh_sid=f"s{i}",
            jwt_param="jid",
            ping_interval=INTERVAL,
            ping_precision="s",
        )
        core = server.session_rules.websocket_core(opening, now=0.0, ping_jitter=rng.random())
        core.accept("{}")
        core.events()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        session = WebSocketSession(server, stream, core)
        server.schedule(session)
        sessions.append(session)
        peers.append(peer)
    return server, sessions, peers


def drain(peers: list[socket.socket]) -> None:
    for peer in peers:
        try:
            while peer.recv(65536):
                pass
        except BlockingIOError:
            pass


def run_cableway(server: Server, ticks: int, between: Callable[[int], None]) -> tuple[float, int]:
    timers = server.timers
    spent = 0.0
    before = server.metrics.value("data_sent_total")
    for k in range(ticks):
        now = timers._deadlines[0]
        t0 = time.perf_counter()
        timers.fire_due(now, UNIX + now)
        spent += time.perf_counter() - t0
        between(k)
    frames = (server.metrics.value("data_sent_total") - before) // len(FRAME)
    return spent, int(frames)


def floor_schedule(
    sessions: list[WebSocketSession], socks: list[socket.socket]
) -> list[tuple[float, collections.deque[tuple[float, Client]]]]:
    """The same due times as the sessions', in the floor's FIFO of (due, client)."""
    pairs = sorted(
        ((s.scheduled_at, Client(sock)) for s, sock in zip(sessions, socks, strict=True)),
        key=lambda p: p[0],
    )
    return [(0.0, collections.deque(pairs))]


def run_floor(
    queue: collections.deque[tuple[float, Client]], ticks: int, between: Callable[[int], None]
) -> tuple[float, int]:
    frame = FRAME
    spent, sent = 0.0, 0
    for k in range(ticks):
        now = queue[0][0]
        t0 = time.perf_counter()
        # bench/floor_server.py's Floor.tick and Floor.send, inlined as there
        while queue and queue[0][0] <= now:
            due, client = queue.popleft()
            if client.dead:
                continue
            if client.pending:
                client.pending += frame
                continue
            try:
                n = client.sock.send(frame)
            except BlockingIOError:
                n = 0
            if n < len(frame):
                client.pending += frame[n:]
            sent += 1
            queue.append((due + INTERVAL, client))
        spent += time.perf_counter() - t0
        between(k)
    return spent, sent


def run_bare(
    groups: list[list[socket.socket]], ticks: int, between: Callable[[int], None]
) -> tuple[float, int]:
    frame = FRAME
    spent, sent = 0.0, 0
    for k in range(ticks):
        group = groups[k % len(groups)]
        t0 = time.perf_counter()
        for sock in group:
            sock.send(frame)
        spent += time.perf_counter() - t0
        sent += len(group)
        between(k)
    return spent, sent


def use_fire_due_from(path: str) -> None:
    """Load ``path`` as a sibling of cableway.transport.timers and use its ``fire_due``."""
    spec = importlib.util.spec_from_file_location("cableway.transport._timers_other", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Timers.fire_due = module.Timers.fire_due  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=9000)
    parser.add_argument("--intervals", type=int, default=4, help="timed ping intervals per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evict", action="store_true", help="read 64 MiB between ticks")
    parser.add_argument("--only", choices=["cableway", "floor", "bare"], default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--timers-from",
        metavar="FILE",
        help="another build's src/transport/timers.py: time its fire_due instead (A/B)",
    )
    args = parser.parse_args()
    if args.timers_from:
        use_fire_due_from(args.timers_from)

    server, sessions, peers = make_sessions(args.sessions, args.seed)
    socks = [s._sock for s in sessions]
    assert all(sock is not None for s, sock in zip(sessions, socks, strict=True))
    ticks_per_interval = round(INTERVAL / PING_GRID)
    ticks = ticks_per_interval * args.intervals
    big = bytearray(64 << 20)

    def between(k: int) -> None:
        if args.evict:
            bytes(big[::64])  # one read of every cache line of 64 MiB
        if k % ticks_per_interval == ticks_per_interval - 1:
            drain(peers)

    # warm-up: one interval, so every session's first (aligned) ping is behind it
    run_cableway(server, ticks_per_interval, between)
    (_, queue), *_ = floor_schedule(sessions, socks)  # type: ignore[arg-type]
    by_tick: dict[float, list[socket.socket]] = collections.defaultdict(list)
    for s, sock in zip(sessions, socks, strict=True):
        by_tick[s.scheduled_at].append(sock)  # type: ignore[arg-type]
    groups = [by_tick[t] for t in sorted(by_tick)]

    results: dict[str, list[float]] = {"cableway": [], "floor": [], "bare": []}
    for _ in range(args.repeat):
        for name in results:
            if args.only and name != args.only:
                continue
            if name == "cableway":
                spent, n = run_cableway(server, ticks, between)
            elif name == "floor":
                spent, n = run_floor(queue, ticks, between)
            else:
                spent, n = run_bare(groups, ticks, between)
            results[name].append(spent / n * 1e6)
    bare = statistics.median(results["bare"]) if results["bare"] else 0.0
    for name, runs in results.items():
        if not runs:
            continue
        med = statistics.median(runs)
        shown = ", ".join(f"{r:.3f}" for r in runs)
        above = f"; above bare {med - bare:+.3f}" if bare else ""
        print(f"{name:9s} µs per ping: median {med:.3f} (runs {shown}){above}")
    for peer in peers:
        peer.close()


if __name__ == "__main__":
    main()
