"""Commands per second through the channels SDK (``cableway.channels``), no server needed.

    .venv/bin/python bench/rpc_app.py                 # 20 000 in-process calls, 5 000 over HTTP
    .venv/bin/python bench/rpc_app.py --calls 50000 --http-calls 10000

Measures one ``message`` command (an action that reads and writes channel state and
transmits), the body AnyCable-Go would send:

* ``in-process``: :meth:`Application.handle` driven as the WSGI app drives it (decode,
  dispatch, encode; no HTTP);
* ``asgi http``: the ASGI app under uvicorn (h11) on 127.0.0.1, one keep-alive client
  sending calls one after another as one AnyCable-Go session does, with sync callbacks in
  a worker thread (the default) and on the loop (``threaded=False``): calls/s and the
  latency percentiles a client's command waits for.

Bounded: a fixed number of calls, and at most ``--max-seconds`` per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import statistics
import sys
import threading
import time
from typing import Any

import uvicorn

from cableway.channels import Application, Channel, Connection
from cableway.channels.wsgi import _invoke, _run
from cableway.rpc import CommandMessage, Env, derive_rpc_key

IDENTIFIER = '{"channel":"Chat","room":"42"}'
KEY = derive_rpc_key("bench")


class Chat(Channel):
    def subscribed(self) -> None:
        self.stream_from(f"room:{self.params['room']}")

    def remember(self, data: dict[str, Any]) -> None:
        count = int(self.istate.get("count", "0")) + 1
        self.istate["count"] = str(count)
        self.transmit({"count": count, "echo": data.get("message")})


def body() -> bytes:
    return CommandMessage(
        command="message",
        identifier=IDENTIFIER,
        connection_identifiers='{"user":"alice"}',
        data=json.dumps({"action": "remember", "message": "hi"}),
        env=Env(
            url="http://localhost:8080/cable?user=alice",
            headers={"REMOTE_ADDR": "127.0.0.1", "cookie": "_session_id=abc"},
            cstate={"visits": "1"},
            istate={"count": "7"},
        ),
    ).to_bytes()


def in_process(app: Application, calls: int, max_seconds: float) -> dict[str, float]:
    data = body()
    headers = [("authorization", f"Bearer {KEY}")]
    start = time.perf_counter()
    done = 0
    for done in range(1, calls + 1):  # noqa: B007
        response = _run(app.handle("POST", "/_anycable/command", headers, data, _invoke))
        assert response.status == 200, response.body
        if time.perf_counter() - start > max_seconds:
            break
    elapsed = time.perf_counter() - start
    return {"calls": done, "calls_per_s": done / elapsed, "us_per_call": elapsed / done * 1e6}


def over_http(app: Any, calls: int, max_seconds: float) -> dict[str, float]:
    # proto=IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when
    # the listener's proto says TCP, and socket.create_server() leaves it 0 (every
    # response would then wait ~40 ms for the client's delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", http="h11", log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()
    # as Go's net/http does (Go sets TCP_NODELAY on every TCP connection by default)
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
        "X-Anycable-Meta-Sid": "bench",
        "X-Anycable-Meta-Protov": "v1",
    }
    data = body()
    latencies: list[float] = []
    try:
        start = time.perf_counter()
        for _ in range(calls):
            sent = time.perf_counter()
            conn.request("POST", "/_anycable/command", body=data, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            latencies.append(time.perf_counter() - sent)
            if time.perf_counter() - start > max_seconds:
                break
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
        server.should_exit = True
        thread.join(15)
        sock.close()
    latencies.sort()
    return {
        "calls": len(latencies),
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--http-calls", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    app = Application(Connection, [Chat], secret="bench")
    results = {
        "in-process": in_process(app, args.calls, args.max_seconds),
        "asgi http, threaded": over_http(app.asgi(), args.http_calls, args.max_seconds),
        "asgi http, on the loop": over_http(
            app.asgi(threaded=False), args.http_calls, args.max_seconds
        ),
    }
    for name, figures in results.items():
        print(f"{name:24} " + "  ".join(f"{k}={v:,.1f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
