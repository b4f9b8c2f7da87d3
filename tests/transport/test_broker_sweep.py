"""The server's sweep of the memory broker: a mass expiry is done in slices, and the event
loop serves other tasks between them."""

from __future__ import annotations

import math
import time

import trio
import trio.testing

from cableway.config import Config
from cableway.protocol.broker import PresenceEvent
from cableway.transport.server import SWEEP_SLICE, Server


async def test_a_mass_expiry_yields_to_other_tasks_between_slices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(Config(host="127.0.0.1", port=0, public=True, history_ttl=10))
    broker = server.broker
    assert broker is not None
    total = 3 * SWEEP_SLICE  # a stream costs the sweep two units: its message and itself
    published = time.time() - 60  # broker times are wall-clock seconds: long expired
    for i in range(total):
        broker.add(f"s{i}", "x", now=published)
    broker.add("fresh", "x", now=time.time() + 3600)

    # every slice wakes the probe; the probe notes how many streams are left when it runs
    send, receive = trio.open_memory_channel[int](math.inf)
    original = broker.expire

    def expire(now: float, *, budget: int | None = None) -> list[PresenceEvent]:
        events = original(now, budget=budget)
        send.send_nowait(broker.stream_count)
        return events

    broker.expire = expire  # type: ignore[method-assign]
    seen_by_probe: list[int] = []
    with trio.fail_after(30):  # virtual seconds
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server._sweep, server.backend)
            async for _ in receive:
                seen_by_probe.append(broker.stream_count)
                if broker.stream_count == 1:
                    nursery.cancel_scope.cancel()
    assert broker.latest_offset("fresh") == 1
    # the probe ran while the sweep was half-way: it never held the loop for all of it
    assert any(1 < count < total for count in seen_by_probe), seen_by_probe
