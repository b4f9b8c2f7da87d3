"""``--workers N --pubsub=redis``: the workers are nodes on Redis; the hub sums metrics."""

from __future__ import annotations

from ..integration.helpers import broadcast, config, http
from ..integration.workers import hub_and_workers
from .conftest import RedisProcess
from .test_scaleout import pub, ready, received_until, subscribed, until


async def test_workers_on_redis_deliver_through_redis_and_sum_metrics(
    redis_server: RedisProcess,
) -> None:
    cfg = config(
        public_streams=True,
        pubsub="redis",
        broker="redis",
        redis_url=redis_server.url,
        metrics_http="/metrics",
    )
    async with hub_and_workers(cfg) as (hub, (a, b)):
        assert not a.hub_relay
        await until(lambda: ready(a) and ready(b), a, b)
        async with subscribed(a) as on_a, subscribed(b) as on_b:
            sent = [f"m{i}" for i in range(4)]
            for i, data in enumerate(sent):
                assert (await broadcast((a, b)[i % 2], pub(data))).status == 201
            assert (await broadcast(a, pub("end"))).status == 201
            assert await received_until(on_a, "end") == sent
            assert await received_until(on_b, "end") == sent
            # nothing went through the hub: Redis relayed it
            assert hub.relayed == 0
            lines = (await http(a.main_port, "GET", "/metrics")).body.decode().splitlines()
            assert "anycable_go_clients_num 2" in lines
