"""Prometheus metrics over HTTP with AnyCable's names."""

from __future__ import annotations

import json
import re

import trio

from .helpers import broadcast, cable, config, http, recv_json, running, subscribe, welcome
from .test_slow_clients import RawClient


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


async def test_client_msg_total_counts_every_command_received() -> None:
    """As AnyCable-Go: every decoded command counts (an unknown one too, which also
    counts as failed); undecodable input and ``null`` count only as failed, or not at
    all. Whole frames take the session's fast parser, fragments take wsproto's."""
    async with running(config(public_streams=True)) as server:
        with trio.fail_after(5):
            client = await RawClient.subscribed(server, "counted")  # one command: subscribe
            assert server.metrics.value("client_msg_total") == 1
            other = json.dumps({"channel": "$pubsub", "stream_name": "other"})
            await client.send_text(json.dumps({"command": "subscribe", "identifier": other}))
            await client.receive_until(lambda m: m.get("identifier") == other)
            await client.send_text('{"command":"no_such_command"}')
            await client.send_text("garbage")
            await client.send_text("null")
            # one command in two fragments (wsproto's path), masked with a zero key
            text = json.dumps({"command": "unsubscribe", "identifier": other}).encode()
            half = len(text) // 2
            first, second = text[:half], text[half:]
            await client.sock.send_all(
                bytes([0x01, 0x80 | len(first)])
                + b"\0\0\0\0"
                + first
                + bytes([0x80, 0x80 | len(second)])
                + b"\0\0\0\0"
                + second
            )
            # a round trip after all of them: they have all been processed (the
            # unsubscription is not confirmed; subscribing again is)
            await client.send_text(json.dumps({"command": "subscribe", "identifier": other}))
            client.messages.clear()
            await client.receive_until(lambda m: m.get("type") == "confirm_subscription")
            assert server.metrics.value("client_msg_total") == 5
            assert server.metrics.value("failed_client_msg_total") == 2  # unknown, garbage
            await client.sock.aclose()
