"""Pings on trio's virtual clock: the interval a client asks for (``?pi=``) is the interval it gets.

The integration suite cannot assert intervals on real sockets without comparing wall-clock
timestamps (which a loaded machine stretches); here the server's shared timer task runs on
the autojump clock, so every ping's arrival time is exact. Pings are due on multiples of
``PING_GRID`` (so that sessions share ticks): that too is asserted here.
"""

from __future__ import annotations

import dataclasses
import json
from itertools import pairwise

import trio
import trio.testing
from wsproto.events import TextMessage

from cableway.transport.server import Server
from cableway.transport.session import PING_GRID
from cableway.transport.timers import TIMER_QUANTUM

from .helpers import CONFIG, Client, connect, handle, turbo_identifier


def _on_grid(t: float) -> bool:
    return abs(t / PING_GRID - round(t / PING_GRID)) < 1e-6


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
        nursery.start_soon(server.timers.run)
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
    # the first ping is jittered into [0.5, 1.5) intervals so that reconnect storms
    # spread, then moved up to the ping grid
    assert 1.0 <= first < 3.0 + PING_GRID + TIMER_QUANTUM
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


async def test_pings_are_due_on_the_grid(autojump_clock: trio.testing.MockClock) -> None:
    # sessions opened at any time ping on multiples of PING_GRID, so that the sessions
    # of one slice of time share one tick of the timer task (one frame, one batch)
    for target in ("/cable?pi=3", "/cable?pi=2.5&ptp=ns"):
        _, arrivals = await _ping_arrivals(target, 3)
        assert all(_on_grid(t) for t, _ in arrivals), arrivals


async def test_each_client_keeps_its_own_interval_and_precision_in_shared_batches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # every session gets the same jitter: their pings fall due together, in one batch of
    # the timer task, which must still give each its own interval and stamp precision
    server = Server(CONFIG)
    server.random.random = lambda: 0.25  # type: ignore[method-assign]
    targets = ["/cable?pi=2", "/cable?pi=2&ptp=ms", "/cable?pi=2&ptp=ns", "/cable?pi=4"]
    arrivals: dict[str, list[tuple[float, object]]] = {t: [] for t in targets}

    async def client(target: str, ready: trio.Event) -> None:
        cl, _ = await connect(nursery, server)
        await cl.handshake(target)
        assert (await cl.recv() or {}).get("type") == "welcome"
        ready.set()
        for _ in range(3):
            ping = await _next_ping(cl)
            arrivals[target].append((trio.current_time(), ping["message"]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.timers.run)
        async with trio.open_nursery() as clients:
            for target in targets:
                ready = trio.Event()
                clients.start_soon(client, target, ready)
                await ready.wait()  # opened at the same virtual instant (no time passes)
        nursery.cancel_scope.cancel()
    times = {t: [at for at, _ in arrivals[t]] for t in targets}
    # the three 2 s sessions pinged at the same instants, the 4 s one on its own schedule
    assert times[targets[0]] == times[targets[1]] == times[targets[2]]
    assert all(abs(b - a - 2.0) < 1e-9 for a, b in pairwise(times[targets[0]]))
    assert all(abs(b - a - 4.0) < 1e-9 for a, b in pairwise(times[targets[3]]))
    for target, low, high in [
        (targets[0], 1e9, 1e11),
        (targets[1], 1e12, 1e14),
        (targets[2], 1e18, 1e20),
        (targets[3], 1e9, 1e11),
    ]:
        assert all(isinstance(v, int) and low < v < high for _, v in arrivals[target]), target


async def test_sse_streams_get_pings_every_pi_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(dataclasses.replace(CONFIG, sse=True))
    identifier = turbo_identifier("chat")
    signed = json.loads(identifier)["signed_stream_name"]
    client_end, server_end = trio.testing.memory_stream_pair()
    pings: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.timers.run)
        nursery.start_soon(handle, server, server_end)
        await client_end.send_all(
            b"GET /events?turbo_signed_stream_name=%s&pi=2 HTTP/1.1\r\nHost: t\r\n\r\n"
            % signed.encode()
        )
        buffer = b""
        while len(pings) < 4:
            data = await client_end.receive_some(65536)
            assert data
            buffer += data
            while b"event: ping\n" in buffer:
                head, _, buffer = buffer.partition(b"event: ping\n")
                pings.append((trio.current_time(), head))
        nursery.cancel_scope.cancel()
    assert pings[0][1].startswith(b"HTTP/1.1 200 ")
    assert b"text/event-stream" in pings[0][1]
    times = [t for t, _ in pings]
    assert all(_on_grid(t) for t in times), times
    assert all(abs(b - a - 2.0) < 1e-9 for a, b in pairwise(times)), times
