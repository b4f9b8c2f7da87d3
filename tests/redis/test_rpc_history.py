"""History and session restore on a two-stream Python application channel with
``--broker=redis``: the history is read from Redis (answered later, so live messages are
held meanwhile) and the snapshot restored from it; the scenario is
:func:`tests.rpc.test_app_history_server.scenario`."""

from __future__ import annotations

import trio

from cableway.rpc.settings import RpcSettings
from tests.integration.helpers import config, running
from tests.rpc.chat import KEY
from tests.rpc.test_app_history_server import Target, hosted, make_app, scenario

from .conftest import RedisProcess


async def test_history_and_restore_on_an_app_channel_with_the_redis_broker(
    redis_server: RedisProcess,
) -> None:
    async with hosted(make_app().asgi()) as host:
        settings = RpcSettings(host=f"http://127.0.0.1:{host.port}/_anycable", key=KEY)
        cfg = config(rpc=settings, broker="redis", pubsub="redis", redis_url=redis_server.url)
        async with running(cfg) as server:
            target = Target(
                server.main_port, server.broadcast_port, server.config.http_broadcast_path
            )

            async def closed() -> None:
                with trio.fail_after(5):
                    for session in list(server.node.sessions):
                        await session.wait_closed()

            await scenario(target, closed)
