"""Pings on trio's virtual clock: the interval a client asks for (``?pi=``) is the interval it gets.

The integration suite cannot assert intervals on real sockets without comparing wall-clock
timestamps (which a loaded machine stretches); here the server's shared timer task runs on
the autojump clock, so every ping's arrival time is exact.
"""

from __future__ import annotations

import json
from itertools import pairwise

import trio
import trio.testing
from wsproto.events import TextMessage

from cableway.transport.server import TIMER_QUANTUM, Server

from .helpers import CONFIG, Client, connect


async def _next_ping(client: Client) -> dict[str, object]:
    while True:
        event = await client.next_event()
        if isinstance(event, TextMessage):
            message: dict[str, object] = json.loads(event.data)
            if message.get("type") == "ping":
                return message


async def _ping_arrivals(target: str, count: int) -> tuple[float, list[tuple[float, object]]]:
    """Open a session at ``target``; (welcome time, [(arrival time, ping value)] * count)."""
    server = Server(CONFIG)
    arrivals: list[tuple[float, object]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._run_timers)
        client, _ = await connect(nursery, server)
        await client.handshake(target)
        welcome = await client.recv()
        assert welcome is not None
        assert welcome["type"] == "welcome"
        opened = trio.current_time()
        for _ in range(count):
            ping = await _next_ping(client)
            arrivals.append((trio.current_time(), ping["message"]))
        nursery.cancel_scope.cancel()
    return opened, arrivals


async def test_pings_arrive_every_pi_seconds(autojump_clock: trio.testing.MockClock) -> None:
    opened, arrivals = await _ping_arrivals("/cable?pi=2&ptp=ms", 5)
    first = arrivals[0][0] - opened
    # the first ping is jittered into [0.5, 1.5) intervals so that reconnect storms spread
    assert 1.0 <= first < 3.0 + TIMER_QUANTUM
    gaps = [b[0] - a[0] for a, b in pairwise(arrivals)]
    assert all(2.0 - 1e-9 <= gap <= 2.0 + TIMER_QUANTUM for gap in gaps), gaps
    values = [value for _, value in arrivals]
    assert all(isinstance(v, int) and v > 1_000_000_000_000 for v in values)  # ms precision
    assert values == sorted(values)


async def test_default_interval_is_three_seconds(autojump_clock: trio.testing.MockClock) -> None:
    _, arrivals = await _ping_arrivals("/cable", 3)
    gaps = [b[0] - a[0] for a, b in pairwise(arrivals)]
    assert all(3.0 - 1e-9 <= gap <= 3.0 + TIMER_QUANTUM for gap in gaps), gaps
    values = [value for _, value in arrivals]
    assert all(isinstance(v, int) and 1_000_000_000 < v < 100_000_000_000 for v in values)
