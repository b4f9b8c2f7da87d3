"""Prometheus metrics over HTTP with AnyCable's names."""

from __future__ import annotations

import json
import re

from .helpers import broadcast, cable, config, http, recv_json, running, subscribe, welcome


def _value(text: str, name: str) -> float:
    match = re.search(rf"^anycable_go_{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


async def test_metrics_count_clients_streams_and_deliveries() -> None:
    cfg = config(public_streams=True, metrics_http="/metrics", metrics_tags=(("env", "test"),))
    identifier = json.dumps({"channel": "$pubsub", "stream_name": "s"})
    async with running(cfg) as server, cable(server) as a, cable(server) as b:
        for ws in (a, b):
            await welcome(ws)
            await subscribe(ws, identifier)
        await a.send_message("garbage")
        await broadcast(server, {"stream": "s", "data": '"x"'})
        await recv_json(a)
        await recv_json(b)
        response = await http(server.main_port, "GET", "/metrics")
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.body.decode()
        assert "# TYPE anycable_go_clients_num gauge" in text
        assert 'anycable_go_clients_num{env="test"} 2' in text
        assert _value(text, "broadcast_streams_num") == 1
        assert _value(text, "broadcast_msg_total") == 1
        assert _value(text, "publications_total") == 1
        assert _value(text, "server_msg_total") == 2
        assert _value(text, "failed_client_msg_total") >= 1
        assert _value(text, "data_sent_total") > 0


async def test_metrics_on_their_own_port_are_not_on_the_main_one() -> None:
    cfg = config(metrics_http="/metrics", metrics_port=0, metrics_host="127.0.0.1")
    async with running(cfg) as server:
        assert (await http(server.main_port, "GET", "/metrics")).status == 200
    # a distinct port: choose a free one through the OS
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with running(config(metrics_http="/metrics", metrics_port=port)) as server:
        assert server.metrics_port == port
        assert (await http(port, "GET", "/metrics")).status == 200
        assert (await http(server.main_port, "GET", "/metrics")).status == 404
