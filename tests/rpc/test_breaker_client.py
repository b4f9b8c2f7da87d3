"""Cableway's HTTP RPC client behind its circuit breaker (rpc.md §3.7), on trio's virtual
clock, against an application port that refuses connections and later answers: the
breaker opens, calls then fail at once (no retries, no time spent) with AnyCable-Go's
"http rpc is temporarily unavailable", a log line and a metric; it closes again once the
application answers."""

from __future__ import annotations

import json
import logging
import socket

import h11
import pytest
import trio
import trio.testing

from cableway.ops.metrics import Metrics
from cableway.rpc import CommandMessage, ConnectionRequest
from cableway.rpc.breaker import BreakerState
from cableway.rpc.settings import RpcSettings
from cableway.transport.rpc_client import RPC_DEFINITIONS, HttpRpc

OK = json.dumps({"status": 1}).encode()


async def answer(stream: trio.SocketStream) -> None:
    """A keep-alive HTTP/1.1 application answering every request with status 1."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                response = h11.Response(status_code=200, headers=[("content-length", str(len(OK)))])
                out = conn.send(response) + conn.send(h11.Data(data=OK))
                await stream.send_all(out + conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


def message() -> CommandMessage:
    return CommandMessage(command="message", identifier="i", data="{}")


async def test_the_breaker_opens_on_a_refusing_backend_fails_fast_and_closes_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # bound but not listening: connections are refused until listen() below
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    metrics = Metrics()
    for metric in RPC_DEFINITIONS:
        metrics.register(metric)
    rpc = HttpRpc(RpcSettings(host=f"http://127.0.0.1:{port}/_anycable"), metrics)
    caplog.set_level(logging.INFO, logger="cableway.rpc")

    # each call makes 5 attempts (0, 0.1, 0.3, 0.7, 1.5 s) before its 3 s run out; the
    # 10th failed attempt, the second call's last, opens the breaker
    assert await rpc.command("s1", message()) is None
    assert rpc.breaker.state(trio.current_time()) is BreakerState.CLOSED
    assert await rpc.command("s2", message()) is None
    assert rpc.breaker.state(trio.current_time()) is BreakerState.OPEN
    assert "RPC circuit breaker is open" in caplog.text
    counts = metrics.snapshot()
    assert counts["rpc_circuit_open_total"] == 0
    assert counts["rpc_retries_total"] == 8

    # open: a call fails at once, without an attempt or a retry
    before = trio.current_time()
    assert await rpc.connect("s3", ConnectionRequest()) is None
    assert trio.current_time() == before
    counts = metrics.snapshot()
    assert counts["rpc_circuit_open_total"] == 1
    assert counts["rpc_retries_total"] == 8
    assert counts["rpc_error_total"] == 3
    assert "http rpc is temporarily unavailable" in caplog.text

    # 5 s later it is half-open: one trial attempt, still refused, opens it again, and
    # the call's retry 0.1 s later is refused at once
    await trio.sleep(5)
    start = trio.current_time()
    assert await rpc.command("s4", message()) is None
    assert trio.current_time() - start < 0.2
    assert rpc.breaker.opened == 2
    counts = metrics.snapshot()
    assert counts["rpc_retries_total"] == 9
    assert counts["rpc_circuit_open_total"] == 2

    # the application is back: after 5 s, five trial calls succeed and close it
    sock.listen(16)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer, [listener])
        await trio.sleep(5)
        for n in range(5):
            reply = await rpc.command(f"ok{n}", message())
            assert reply is not None
        assert rpc.breaker.state(trio.current_time()) is BreakerState.CLOSED
        assert "RPC circuit breaker is closed" in caplog.text
        await rpc.aclose()
        nursery.cancel_scope.cancel()
