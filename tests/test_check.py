"""``cableway check``: all checks pass against Cableway; the right ones fail elsewhere."""

from __future__ import annotations

import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from cableway.check import FAIL, PASS, SKIP, Checker, Options, Result, main

from .integration.helpers import BROADCAST_KEY, JWT_KEY, TURBO_KEY, config, running


def options_for(port: int, broadcast_port: int | None = None, **changes: object) -> Options:
    base: dict[str, object] = {
        "url": f"ws://127.0.0.1:{port}/cable",
        "turbo_secret": TURBO_KEY,
        "jwt_key": JWT_KEY,
        "broadcast_url": (
            f"http://127.0.0.1:{broadcast_port}/_broadcast" if broadcast_port else None
        ),
        "broadcast_key": BROADCAST_KEY,
        "fuzz": True,
        "ping_interval": 0.5,
        "timeout": 2.0,
    }
    base.update(changes)
    return Options(**base)  # type: ignore[arg-type]


def by_name(results: list[Result]) -> dict[str, Result]:
    return {result.name: result for result in results}


async def test_cableway_passes_every_check() -> None:
    """Including --fuzz (which found a bug: an identifier "\\ud800" echoed as a lone
    surrogate made the session fail with 1011)."""
    async with running(config(ping_interval=0.5)) as server:
        with trio.fail_after(60):
            results = await Checker(options_for(server.main_port, server.broadcast_port)).run()
    assert len(results) == 12
    assert [r for r in results if r.status != PASS] == []


async def test_checks_without_their_options_are_skipped() -> None:
    async with running(config(ping_interval=0.5)) as server:
        options = options_for(
            server.main_port, turbo_secret=None, jwt_key=None, broadcast_url=None, fuzz=False
        )
        with trio.fail_after(30):
            results = by_name(await Checker(options).run())
    # with no JWT key the server still welcomes anonymous clients (enforce_jwt is off)
    assert {name for name, r in results.items() if r.status == PASS} == {
        "welcome",
        "subprotocol",
        "ping cadence",
        "garbage tolerance",
    }
    assert all(
        r.status == SKIP
        for name, r in results.items()
        if name
        not in {
            "welcome",
            "subprotocol",
            "ping cadence",
            "garbage tolerance",
        }
    )
    assert results["signed subscribe"].detail == "needs --turbo-secret"


# -- broken servers ------------------------------------------------------------------


@asynccontextmanager
async def tiny_server(
    handler: Callable[[WebSocketRequest], Awaitable[None]],
) -> AsyncIterator[int]:
    """A trio-websocket server on 127.0.0.1:0 running ``handler`` per request."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        try:
            yield server.port
        finally:
            nursery.cancel_scope.cancel()


async def silent(request: WebSocketRequest) -> None:
    """Accepts the Action Cable subprotocol, then never says a word."""
    ws = await request.accept(subprotocol="actioncable-v1-json")
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.get_message()


async def careless(request: WebSocketRequest) -> None:
    """Welcomes everyone (tokens unchecked), no subprotocol, no pings, confirms all."""
    ws = await request.accept()
    with contextlib.suppress(ConnectionClosed):
        await ws.send_message(json.dumps({"type": "welcome"}))
        while True:
            try:
                command = json.loads(await ws.get_message())
            except ValueError:
                continue
            if isinstance(command, dict) and command.get("command") == "subscribe":
                reply = {"type": "confirm_subscription", "identifier": command.get("identifier")}
                await ws.send_message(json.dumps(reply))


async def test_a_server_that_never_welcomes_fails_everything_but_the_handshake() -> None:
    async with tiny_server(silent) as port:
        options = options_for(port, timeout=0.5, fuzz=False)
        with trio.fail_after(30):
            results = by_name(await Checker(options).run())
    assert results["subprotocol"].status == PASS
    assert results["welcome"].status == FAIL
    assert results["welcome"].detail == "no welcome"
    for name in ("ping cadence", "garbage tolerance", "signed subscribe", "duplicate subscribe"):
        assert results[name].status == FAIL
        assert "no welcome" in results[name].detail
    assert results["JWT valid"].status == FAIL
    assert results["JWT expired"].detail == "no answer at all to the token"
    assert results["broadcast round trip"].status == SKIP


async def test_a_careless_server_fails_the_checks_it_breaks() -> None:
    async with tiny_server(careless) as port:
        options = options_for(port, timeout=0.5, ping_interval=0.2, fuzz=False)
        with trio.fail_after(30):
            results = by_name(await Checker(options).run())
    assert results["welcome"].status == PASS
    assert results["welcome"].detail == "welcome without sid (Rails style)"
    assert results["subprotocol"].status == FAIL
    assert results["ping cadence"].status == FAIL
    assert results["ping cadence"].detail.startswith("0 ping(s)")
    assert results["garbage tolerance"].status == PASS  # it confirms anything
    assert results["signed subscribe"].status == FAIL
    assert "another key was confirmed" in results["signed subscribe"].detail
    assert results["duplicate subscribe"].status == FAIL
    assert results["JWT expired"].status == FAIL
    assert results["JWT expired"].detail == "the token was accepted (welcome)"
    assert results["JWT forged"].status == FAIL


# -- the command line ----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_main_prints_a_table_and_fails_when_a_check_fails() -> None:
    out = io.StringIO()
    port = closed_port()
    status = main([f"ws://127.0.0.1:{port}/cable", "--timeout", "0.5"], out=out)
    lines = out.getvalue().splitlines()
    assert status == 1
    assert lines[0].startswith("FAIL  welcome")
    assert "cannot connect" in lines[0]
    assert lines[-1] == "0 passed, 4 failed, 8 skipped"


def test_main_json_lines() -> None:
    out = io.StringIO()
    port = closed_port()
    status = main([f"ws://127.0.0.1:{port}/cable", "--timeout", "0.5", "--json"], out=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert status == 1
    assert records[0]["check"] == "welcome"
    assert records[0]["status"] == "fail"
    assert records[-1] == {"passed": 0, "failed": 4, "skipped": 8}


def test_main_usage_errors() -> None:
    assert main(["http://example.invalid/cable"], out=io.StringIO()) == 2
    assert main(["--help"], out=io.StringIO()) == 0
