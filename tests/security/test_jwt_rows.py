"""§D1 JWT rows (J*) not covered elsewhere; see docs/security-tests.md."""

from __future__ import annotations

import trio

from tests.integration.helpers import cable, config, http, recv_json, running


async def test_J8_non_utf8_bytes_in_the_jid_query_are_unauthorized() -> None:
    async with running(config(enforce_jwt=True)) as server:
        with trio.fail_after(5):
            async with cable(server, query="?jid=%ff%fe%80.%c3%28.%ed%a0%80") as ws:
                assert await recv_json(ws) == {
                    "type": "disconnect",
                    "reason": "unauthorized",
                    "reconnect": False,
                }


async def test_J8_100_kb_token_in_the_query_is_refused_by_the_head_limit() -> None:
    async with running(config(enforce_jwt=True)) as server:
        token = "a" * 50_000 + "." + "b" * 50_000 + ".c"
        response = await http(
            server.main_port,
            "GET",
            f"/cable?jid={token}",
            headers=[("upgrade", "websocket"), ("connection", "Upgrade")],
        )
        assert response.status == 431
