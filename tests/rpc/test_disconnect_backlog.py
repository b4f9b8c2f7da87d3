"""The Disconnect queue's bound (rpc.md §4.9): AnyCable-Go never drops a Disconnect call (a
closing session waits for room beyond 4 096); Cableway queues up to the most sessions the
node has had open, so a whole node disconnecting at once loses no call, while memory
stays bounded by what those sessions held."""

from __future__ import annotations

import trio
import trio.testing

from cableway.ops.metrics import Metrics
from cableway.rpc import DisconnectRequest
from cableway.transport.rpc_client import RPC_DEFINITIONS, DisconnectQueue


def metrics() -> Metrics:
    out = Metrics()
    for metric in RPC_DEFINITIONS:
        out.register(metric)
    return out


async def test_a_whole_node_disconnecting_at_once_gets_every_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    called: list[str] = []

    async def call(sid: str, request: DisconnectRequest) -> None:
        called.append(sid)

    sessions = set(range(10_000))  # the node's open sessions
    counts = metrics()
    queue = DisconnectQueue(call, rate=100, sessions=sessions, metrics=counts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.run)
        start = trio.current_time()
        for n in range(10_000):  # every session closes within a moment
            sessions.discard(n)
            assert queue.enqueue(f"s{n}", DisconnectRequest())
        assert queue.size >= 9_999
        await trio.sleep(10)
        assert 990 <= len(called) <= 1_001  # still 100 per second
        await trio.sleep(80)
        assert queue.size > 0  # 90 s in: not all 10 000 yet
        await trio.sleep(15)
        assert queue.size == 0
        assert trio.current_time() - start < 106
        await queue.finish()
    assert called == [f"s{n}" for n in range(10_000)]  # in order, none dropped
    assert counts.snapshot()["rpc_disconnect_dropped_total"] == 0


async def test_churn_outrunning_the_rate_is_bounded_and_counted() -> None:
    async def call(sid: str, request: DisconnectRequest) -> None:
        return None

    counts = metrics()
    # a node that never holds more than 100 sessions, with sessions closing far faster
    # than 100 calls per second for longer than the 4 096 backlog lasts
    queue = DisconnectQueue(call, rate=100, sessions=range(100), metrics=counts)
    accepted = sum(queue.enqueue(f"s{n}", DisconnectRequest()) for n in range(5_000))
    assert accepted == 4_096
    assert queue.size == 4_096
    assert counts.snapshot()["rpc_disconnect_dropped_total"] == 904


async def test_after_shutdown_no_call_is_queued() -> None:
    called: list[str] = []

    async def call(sid: str, request: DisconnectRequest) -> None:
        called.append(sid)

    queue = DisconnectQueue(call, rate=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.run)
        assert queue.enqueue("a", DisconnectRequest())
        assert queue.enqueue("b", DisconnectRequest())
        await queue.finish()  # the rest start at once, not one per second
    assert sorted(called) == ["a", "b"]
    assert not queue.enqueue("c", DisconnectRequest())
