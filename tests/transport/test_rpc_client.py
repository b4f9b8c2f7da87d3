"""The trio HTTP RPC client against a small h11 application on 127.0.0.1 (rpc.md §3):
keep-alive reuse, the concurrency bound, status handling, a connection the app closed."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import h11
import trio
import trio.lowlevel
import trio.testing

from cableway.ops.metrics import Metrics
from cableway.rpc import CommandMessage, Status, derive_rpc_key
from cableway.rpc.settings import RpcSettings
from cableway.transport.rpc_client import RPC_DEFINITIONS, HttpRpc

OK = json.dumps({"status": 1, "transmissions": ["t"]}).encode()


class App:
    """An HTTP/1.1 app that records what it gets; ``gate`` holds answers while set."""

    def __init__(self, status: int = 200, body: bytes = OK, close_after: bool = False) -> None:
        self.status = status
        self.body = body
        self.close_after = close_after
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: trio.Event | None = None
        self.two_in_flight = trio.Event()
        self.port = 0

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    target = event.target.decode()
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                    body = b""
                    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(65536))
                        elif isinstance(event, h11.Data):
                            body += event.data
                    self.requests.append((target, headers, body))
                    self.in_flight += 1
                    self.most_in_flight = max(self.most_in_flight, self.in_flight)
                    if self.in_flight == 2:
                        self.two_in_flight.set()
                    if self.gate is not None:
                        await self.gate.wait()
                    self.in_flight -= 1
                    out = conn.send(
                        h11.Response(
                            status_code=self.status,
                            headers=[("content-length", str(len(self.body)))],
                        )
                    )
                    out += conn.send(h11.Data(data=self.body)) + conn.send(h11.EndOfMessage())
                    await stream.send_all(out)
                    if self.close_after:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        finally:
            await stream.aclose()


async def start(nursery: trio.Nursery, app: App) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, app.serve, 0, host="127.0.0.1"))
    app.port = listeners[0].socket.getsockname()[1]


def client(app: App, **settings: Any) -> tuple[HttpRpc, Metrics]:
    metrics = Metrics()
    for metric in RPC_DEFINITIONS:
        metrics.register(metric)
    rpc = HttpRpc(RpcSettings(host=f"http://127.0.0.1:{app.port}/_anycable", **settings), metrics)
    return rpc, metrics


def message(n: int = 0) -> CommandMessage:
    return CommandMessage(command="message", identifier="i", data=str(n))


async def test_calls_reuse_one_keep_alive_connection_and_send_the_spec_headers() -> None:
    app = App()
    async with trio.open_nursery() as nursery:
        await start(nursery, app)
        rpc, metrics = client(app, key=derive_rpc_key("secret"))
        for n in range(3):
            answer = await rpc.command("s1d", message(n))
            assert answer is not None
            assert answer.status is Status.SUCCESS
        await rpc.aclose()
        nursery.cancel_scope.cancel()
    assert app.connections == 1
    target, headers, body = app.requests[0]
    assert target == "/_anycable/command"
    assert headers["authorization"] == f"Bearer {derive_rpc_key('secret')}"
    assert headers["x-anycable-meta-sid"] == "s1d"
    assert headers["x-anycable-meta-protov"] == "v1"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"command": "message", "identifier": "i", "data": "0", "env": {}}
    assert metrics.snapshot()["rpc_call_total"] == 3


async def test_the_concurrency_bound_queues_calls() -> None:
    app = App()
    app.gate = trio.Event()
    answers: list[object] = []
    async with trio.open_nursery() as nursery:
        await start(nursery, app)
        rpc, metrics = client(app, concurrency=2)

        async def one(n: int) -> None:
            answers.append(await rpc.command("s", message(n)))

        async with trio.open_nursery() as calls:
            for n in range(5):
                calls.start_soon(one, n)
            with trio.fail_after(5):
                await app.two_in_flight.wait()
            await trio.testing.wait_all_tasks_blocked(0.05)  # a third would be there by now
            assert app.in_flight == 2
            assert metrics.snapshot()["rpc_pending_num"] == 3
            app.gate.set()
        await rpc.aclose()
        nursery.cancel_scope.cancel()
    assert app.most_in_flight == 2
    assert len(answers) == 5
    assert all(answer is not None for answer in answers)
    assert metrics.snapshot()["rpc_pending_num"] == 0


async def test_non_200_and_undecodable_answers_are_failed_calls() -> None:
    for app in (App(status=401), App(status=500), App(body=b"not json")):
        async with trio.open_nursery() as nursery:
            await start(nursery, app)
            rpc, metrics = client(app)
            assert await rpc.command("s", message()) is None
            assert metrics.snapshot()["rpc_error_total"] == 1
            assert metrics.snapshot()["rpc_retries_total"] == 0  # an answer is not retried
            await rpc.aclose()
            nursery.cancel_scope.cancel()


async def test_a_connection_the_app_closed_is_replaced_without_a_failure() -> None:
    app = App(close_after=True)
    async with trio.open_nursery() as nursery:
        await start(nursery, app)
        rpc, metrics = client(app)
        for n in range(3):
            assert await rpc.command("s", message(n)) is not None
        await rpc.aclose()
        nursery.cancel_scope.cancel()
    assert app.connections == 3
    assert metrics.snapshot()["rpc_error_total"] == 0
