"""``cableway check``: the verdicts against Cableway and the real Rails Action Cable, per
profile; no false pass and no hang against broken, silent or unreachable servers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from xml.etree import ElementTree

import h11
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from cableway import cli
from cableway.auth.signed_streams import InvalidSignature, verify_signed_stream_name
from cableway.check import (
    ACTIONCABLE,
    ANYCABLE,
    CHECKS,
    FAIL,
    NOT_RUN,
    PASS,
    SKIP,
    Checker,
    Options,
    Result,
    exit_status,
    main,
    parse_args,
)

from .integration.helpers import BROADCAST_KEY, JWT_KEY, TURBO_KEY, config, running
from .rails_app.server import BROADCAST_KEY as RAILS_BROADCAST_KEY
from .rails_app.server import JWT_SECRET as RAILS_JWT_SECRET
from .rails_app.server import TURBO_SECRET as RAILS_TURBO_SECRET
from .rails_app.server import RailsServer, rails_server

STREAMS_KEY = "streams-secret"
ALL = [check.name for check in CHECKS]
ANYCABLE_ONLY = [check.name for check in CHECKS if check.profile == ANYCABLE]
APPLICATION_CHANNEL = ["channel subscribe", "message/perform"]


def by_name(results: list[Result]) -> dict[str, Result]:
    return {result.name: result for result in results}


def verdicts(results: list[Result]) -> dict[str, str]:
    return {result.name: result.status for result in results}


def expect(**exceptions: str) -> Callable[[list[str]], dict[str, str]]:
    """PASS for every check but the ones named (``_`` for spaces)."""

    def table(names: list[str]) -> dict[str, str]:
        return {name: exceptions.get(name, PASS) for name in names}

    return table


# -- the expected verdicts, per server and profile ----------------------------------------

#: Cableway has no application channels (no RPC): --channel is not given to it
CABLEWAY_ACTIONCABLE = {
    **{name: PASS for name in ALL},
    **{name: SKIP for name in ANYCABLE_ONLY + APPLICATION_CHANNEL},
}
SHUTDOWN = ["server_restart on shutdown"]  # needs --shutdown_command: tested on its own below
CABLEWAY_ANYCABLE = {
    **{name: PASS for name in ALL},
    **{name: SKIP for name in APPLICATION_CHANNEL + SHUTDOWN},
}
#: Rails is the reference of the Action Cable profile: everything passes
RAILS_ACTIONCABLE = {
    **{name: PASS for name in ALL},
    **{name: SKIP for name in ANYCABLE_ONLY},
}
#: ... and it lacks AnyCable's extensions (the JWT checks pass: the app identifies by JWT)
RAILS_ANYCABLE = {
    **{name: PASS for name in ALL},
    "unknown channel rejected": FAIL,  # Rails never answers an unknown channel
    "ext: sid and pong": FAIL,  # no actioncable-v1-ext-json
    "ext: session restore": NOT_RUN,
    "ext: history": NOT_RUN,
    "signed $pubsub": FAIL,  # no $pubsub channel
    "whisper": NOT_RUN,
    "presence": NOT_RUN,
    "SSE": FAIL,  # no Server-Sent Events
    "server_restart on shutdown": SKIP,
}


def cableway_options(port: int, broadcast_port: int, profile: str, **changes: object) -> Options:
    base: dict[str, object] = {
        "url": f"ws://127.0.0.1:{port}/cable",
        "profile": profile,
        "turbo_secret": TURBO_KEY,
        "streams_secret": STREAMS_KEY,
        "streams_whisper": True,
        "jwt_key": JWT_KEY,
        "broadcast_url": f"http://127.0.0.1:{broadcast_port}/_broadcast",
        "broadcast_key": BROADCAST_KEY,
        "fuzz": True,
        "ping_interval": 0.5,
        "timeout": 2.0,
    }
    base.update(changes)
    return Options(**base)  # type: ignore[arg-type]


def rails_options(rails: RailsServer, profile: str, **changes: object) -> Options:
    base: dict[str, object] = {
        "url": rails.cable_url,
        "profile": profile,
        "turbo_secret": RAILS_TURBO_SECRET,
        "streams_secret": RAILS_TURBO_SECRET,
        "streams_whisper": True,
        "jwt_key": RAILS_JWT_SECRET,
        "broadcast_url": rails.broadcast_url,
        "broadcast_key": RAILS_BROADCAST_KEY,
        "channel": "EchoChannel",
        "params": {"room": "1"},
        "action": "echo",
        "fuzz": True,
        "ping_interval": 3.0,  # Rails' fixed beat
        "timeout": 5.0,  # headroom for a loaded CI machine (only silences wait this long)
    }
    base.update(changes)
    return Options(**base)  # type: ignore[arg-type]


CABLEWAY_CONFIG = config(ping_interval=0.5, broker="memory", streams_whisper=True)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [(ACTIONCABLE, CABLEWAY_ACTIONCABLE), (ANYCABLE, CABLEWAY_ANYCABLE)],
)
async def test_cableway_verdicts(profile: str, expected: dict[str, str]) -> None:
    """Including --fuzz (which found a bug: an identifier "\\ud800" echoed as a lone
    surrogate made the session fail with 1011)."""
    async with running(CABLEWAY_CONFIG) as server:
        options = cableway_options(server.main_port, server.broadcast_port, profile)
        with trio.fail_after(120):
            results = await Checker(options).run()
    failures = [r for r in results if r.status != expected[r.name]]
    assert failures == []
    assert exit_status(results) == 0


@pytest.fixture(scope="module")
def rails() -> Iterator[RailsServer]:
    with rails_server() as server:
        yield server


@pytest.mark.parametrize(
    ("profile", "expected", "status"),
    [(ACTIONCABLE, RAILS_ACTIONCABLE, 0), (ANYCABLE, RAILS_ANYCABLE, 1)],
)
async def test_rails_verdicts(
    rails: RailsServer, profile: str, expected: dict[str, str], status: int
) -> None:
    with trio.fail_after(120):
        results = await Checker(rails_options(rails, profile)).run()
    failures = [r for r in results if r.status != expected[r.name]]
    assert failures == []
    assert exit_status(results) == status
    found = by_name(results)
    # the reasons are said
    assert found["welcome"].detail == "welcome (without sid, as Rails)"
    assert found["plain HTTP to the cable path"].detail == "answered 404"
    if profile == ANYCABLE:
        assert "Rails" in found["unknown channel rejected"].detail
        assert found["ext: sid and pong"].detail.startswith("offered ['actioncable-v1-ext-json']")
        assert found["SSE"].detail.startswith("GET /events answered 404")
        assert found["ext: history"].detail == "needs a passing check: 'ext: sid and pong' FAIL"
        assert "$pubsub is AnyCable's channel" in found["signed $pubsub"].detail
        # the evidence of a failure: what was sent and received, JSON as data
        record = found["signed $pubsub"].as_dict()
        assert record["sent"][-1]["command"] == "subscribe"  # type: ignore[index]
        assert {"type": "welcome"} in record["received"]  # type: ignore[operator]
        assert found["SSE"].sent
        assert found["SSE"].received


async def test_rails_without_channel_options_still_checks_liveness_without_replies(
    rails: RailsServer,
) -> None:
    """Rails never answers an unknown channel: the default profile uses pings as the
    liveness probe there, so garbage tolerance and fuzzing pass against the reference."""
    options = rails_options(
        rails,
        ACTIONCABLE,
        turbo_secret=None,
        streams_secret=None,
        channel=None,
        params={},
        action=None,
        broadcast_url=None,
    )
    with trio.fail_after(120):
        results = by_name(await Checker(options).run())
    for name in ("garbage tolerance", "fuzz: malformed commands", "fuzz: malformed frames"):
        assert results[name].status == PASS, results[name]
        assert "pinged" in results[name].detail


async def test_rails_refuses_a_foreign_origin_and_the_checker_says_unusable(
    rails: RailsServer,
) -> None:
    """Rails' forgery protection answers 404 to a foreign Origin: exit 3, nothing passes
    (JWT expired/forged used to PASS here: "refused at the handshake")."""
    options = rails_options(rails, ANYCABLE, origin="http://evil.example")
    with trio.fail_after(60):
        results = await Checker(options).run()
    found = by_name(results)
    assert found["handshake"].status == FAIL
    assert "HTTP 404" in found["handshake"].detail
    assert exit_status(results) == 3
    assert {r.status for r in results} <= {FAIL, NOT_RUN, SKIP}
    assert [r.name for r in results if r.status == FAIL] == ["handshake"]


async def test_checks_without_their_options_are_skipped_with_the_option_named() -> None:
    async with running(config(ping_interval=0.5)) as server:
        options = Options(url=f"ws://127.0.0.1:{server.main_port}/cable", ping_interval=0.5)
        with trio.fail_after(60):
            results = by_name(await Checker(options).run())
    assert {name for name, r in results.items() if r.status == PASS} == {
        "handshake",
        "subprotocol",
        "welcome",
        "no subprotocol offered",
        "plain HTTP to the cable path",
        "ping cadence",
        "garbage tolerance",
    }
    assert {r.status for r in results.values()} == {PASS, SKIP}
    assert results["signed subscribe"].detail == "needs --turbo_streams_secret (or --secret)"
    assert results["message/perform"].detail == "needs --channel and --action"
    assert results["fuzz: malformed frames"].detail == "needs --fuzz"
    assert results["JWT valid"].detail == "needs --profile anycable"


# -- shutdown (the check stops the server: real processes) ----------------------------


@contextmanager
def cableway_process(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``cableway ARGS`` on a free 127.0.0.1 port, ready once its start-up log ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [str(Path(sys.executable).parent / "cableway"), *args, "--host=127.0.0.1"]
    process = subprocess.Popen(
        [*argv, f"--port={port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    ready = threading.Event()
    log: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                log.append(line)
                if b"Using channels router" in line:
                    ready.set()
        ready.set()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout=30), b"".join(log)
        yield process, port
    finally:
        process.kill()
        process.wait(timeout=30)
        thread.join(timeout=10)


async def test_cableway_says_server_restart_when_it_is_stopped() -> None:
    secret = "shutdown-test-secret-of-at-least-32-bytes"
    with cableway_process("--secret", secret, "--turbo_streams", "--ping_interval=1") as (
        process,
        port,
    ):
        reported: list[str] = []
        options = Options(
            url=f"ws://127.0.0.1:{port}/cable",
            profile=ANYCABLE,
            secret=secret,
            ping_interval=1.0,
            timeout=3.0,
            shutdown_command=f"kill -TERM {process.pid}",
        )
        checker = Checker(options, report=lambda result: reported.append(result.name))
        with trio.fail_after(120):
            results = by_name(await checker.run())
        assert process.wait(timeout=30) == 0
    assert results["server_restart on shutdown"].status == PASS
    assert reported[-1] == "server_restart on shutdown"  # after every other check
    assert results["ping cadence"].status == PASS


async def test_rails_closes_without_server_restart_when_stopped() -> None:
    """Rails 6.1 sends server_restart only when its code reloads, not when it stops."""
    with rails_server() as rails:
        options = rails_options(
            rails, ANYCABLE, fuzz=False, shutdown_command=f"kill -TERM {rails.process.pid}"
        )
        with trio.fail_after(120):
            results = by_name(await Checker(options).run())
    result = results["server_restart on shutdown"]
    assert result.status == FAIL
    assert result.detail.endswith("without a disconnect message")


def test_the_shutdown_check_is_skipped_without_its_command() -> None:
    options = Options(url="ws://h/cable", profile=ANYCABLE)
    check = next(check for check in CHECKS if check.name == "server_restart on shutdown")
    assert Checker(options).skip_reason(check) == "needs --shutdown_command (it stops the server)"


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


@asynccontextmanager
async def tcp_server(handler: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


async def mute_tcp(stream: trio.SocketStream) -> None:
    """Accepts the TCP connection, reads, never answers."""
    with contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some(65536):
            pass


def v1_if_offered(request: WebSocketRequest) -> str | None:
    offered = "actioncable-v1-json" in request.proposed_subprotocols
    return "actioncable-v1-json" if offered else None


async def silent(request: WebSocketRequest) -> None:
    """Accepts (the Action Cable subprotocol when offered), then never says a word."""
    ws = await request.accept(subprotocol=v1_if_offered(request))
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.get_message()


async def welcomes_then_mute(request: WebSocketRequest) -> None:
    """Welcomes, then never answers anything and never pings."""
    ws = await request.accept(subprotocol=v1_if_offered(request))
    with contextlib.suppress(ConnectionClosed):
        await ws.send_message(json.dumps({"type": "welcome"}))
        while True:
            await ws.get_message()


async def careless(request: WebSocketRequest) -> None:
    """Welcomes everyone (tokens unchecked), chooses no subprotocol, no pings, confirms every
    subscribe (twice when asked twice) whose identifier starts with its channel."""
    ws = await request.accept(subprotocol=None)
    with contextlib.suppress(ConnectionClosed):
        await ws.send_message(json.dumps({"type": "welcome"}))
        while True:
            try:
                command = json.loads(await ws.get_message())
            except ValueError:
                continue
            if isinstance(command, dict) and command.get("command") == "subscribe":
                identifier = command.get("identifier")
                if isinstance(identifier, str) and not identifier.startswith('{"channel"'):
                    reply = {"type": "reject_subscription", "identifier": identifier}
                else:
                    reply = {"type": "confirm_subscription", "identifier": identifier}
                await ws.send_message(json.dumps(reply))


async def refuses_tokens(request: WebSocketRequest) -> None:
    """Refuses every handshake that carries a token, valid or not (as a server refusing
    for another reason, such as the Origin, does)."""
    if "jid=" in request.path:
        await request.reject(403)
        return
    await careless(request)


async def test_an_unreachable_port_exits_3_and_nothing_passes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        options = cableway_options(port, port, ANYCABLE, timeout=1.0)
        with trio.fail_after(30):
            results = await Checker(options).run()
    found = by_name(results)
    assert found["handshake"].status == FAIL
    assert found["handshake"].detail == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert exit_status(results) == 3
    assert {r.status for r in results if r.name != "handshake"} == {NOT_RUN, SKIP}
    assert {r.name for r in results if r.status == SKIP} == {*APPLICATION_CHANNEL, *SHUTDOWN}
    assert found["JWT expired"].detail == "needs a passing check: 'JWT valid' NOT RUN"


async def test_a_silent_tcp_server_exits_3_within_one_timeout() -> None:
    """It accepts and never answers: the handshake check ends after its --timeout (the
    WebSocket client used to wait ~29 s per check, 145 s in all)."""
    async with tcp_server(mute_tcp) as port:
        options = cableway_options(port, port, ANYCABLE, timeout=0.5)
        with trio.fail_after(30):
            results = await Checker(options).run()
    found = by_name(results)
    assert found["handshake"].detail == "no answer to the WebSocket handshake within 0.5s"
    assert exit_status(results) == 3
    assert [r for r in results if r.status == PASS] == []


async def test_a_server_that_never_welcomes_fails_welcome_and_runs_nothing_after_it() -> None:
    async with tiny_server(silent) as port:
        options = cableway_options(port, port, ANYCABLE, timeout=0.5, fuzz=False)
        with trio.fail_after(30):
            results = by_name(await Checker(options).run())
    assert results["handshake"].status == PASS
    assert results["subprotocol"].status == PASS
    assert results["welcome"].status == FAIL
    assert results["welcome"].detail == "no welcome within 0.5s"
    assert results["welcome"].sent
    assert results["welcome"].received
    for name in ("ping cadence", "garbage tolerance", "signed subscribe", "duplicate subscribe"):
        assert results[name].status == NOT_RUN
        assert results[name].detail == "needs a passing check: 'welcome' FAIL"
    assert results["JWT valid"].status == FAIL
    assert results["JWT expired"].status == NOT_RUN
    assert exit_status(list(results.values())) == 1


@pytest.mark.parametrize("turbo", [False, True])
async def test_fuzz_never_counts_a_mute_server_as_tolerant(turbo: bool) -> None:
    """A server that welcomes and then says nothing (no pings, no replies) is not
    "tolerant" of garbage: the liveness probe needs an answer."""
    async with tiny_server(welcomes_then_mute) as port:
        options = cableway_options(
            port,
            port,
            ACTIONCABLE,
            timeout=0.5,
            ping_interval=0.2,
            turbo_secret=TURBO_KEY if turbo else None,
            broadcast_url=None,
        )
        with trio.fail_after(60):
            results = by_name(await Checker(options).run())
    assert results["welcome"].status == PASS
    for name in ("garbage tolerance", "fuzz: malformed commands", "fuzz: malformed frames"):
        assert results[name].status == FAIL, results[name]


async def test_a_careless_server_fails_the_checks_it_breaks() -> None:
    async with tiny_server(careless) as port:
        options = cableway_options(
            port,
            port,
            ANYCABLE,
            timeout=0.5,
            ping_interval=0.2,
            fuzz=False,
            broadcast_url=f"http://127.0.0.1:{port}/_broadcast",
        )
        with trio.fail_after(60):
            results = by_name(await Checker(options).run())
    assert results["welcome"].status == PASS
    assert results["welcome"].detail == "welcome (without sid, as Rails)"
    expected_failures = {
        "subprotocol": "offered ['actioncable-v1-json', 'actioncable-unsupported'], the "
        "server chose None",
        "ping cadence": "0 ping(s) in 1s (interval 0.2s)",
        "signed subscribe": "a stream signed with another key was confirmed",
        "identifier key order": "the same keys in another order got reject_subscription",
        "duplicate subscribe": "the duplicate subscribe was confirmed a second time",
        "unknown channel rejected": "an unknown channel got confirm_subscription",
        "JWT expired": "the token was accepted (welcome)",
        "JWT forged": "the token was accepted (welcome)",
        "ext: sid and pong": "offered ['actioncable-v1-ext-json'], the server chose None "
        "(the extended protocol is AnyCable's)",
        "signed $pubsub": "a $pubsub stream signed with another key was confirmed",
    }
    assert {name: results[name].detail for name in expected_failures} == expected_failures
    assert all(results[name].status == FAIL for name in expected_failures)
    # the broadcast endpoint does not exist: a failure of that check, not "unusable"
    assert results["broadcast round trip"].status == FAIL
    assert results["unsubscribe stops broadcasts"].status == NOT_RUN
    assert results["SSE"].status == FAIL


async def upgrades_everything(stream: trio.SocketStream) -> None:
    """Answers every GET with 101 and actioncable-v1-json, offered or not, Upgrade or not."""
    head = b""
    with contextlib.suppress(trio.BrokenResourceError):
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            head += chunk
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n"
            b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
        )
        while await stream.receive_some(65536):
            pass


async def test_a_server_that_upgrades_everything_fails_the_handshake_edge_cases() -> None:
    async with tcp_server(upgrades_everything) as port:
        options = Options(url=f"ws://127.0.0.1:{port}/cable", timeout=0.5)
        with trio.fail_after(30):
            results = by_name(await Checker(options).run())
    assert results["handshake"].status == PASS
    assert results["subprotocol"].status == PASS
    assert results["welcome"].status == FAIL
    assert results["no subprotocol offered"].status == FAIL
    assert results["no subprotocol offered"].detail == (
        "the server answered 101 with a subprotocol the client never offered (invalid "
        "handshake answer: unrecognized subprotocol actioncable-v1-json)"
    )
    assert results["plain HTTP to the cable path"].status == FAIL
    assert results["plain HTTP to the cable path"].detail == (
        "GET /cable (no upgrade asked for) was answered 101"
    )


async def test_a_refusal_counts_only_when_a_valid_token_is_accepted() -> None:
    """A server refusing every handshake with a token must not pass 'JWT expired/forged'."""
    async with tiny_server(refuses_tokens) as port:
        options = cableway_options(port, port, ANYCABLE, timeout=0.5, fuzz=False)
        with trio.fail_after(60):
            results = by_name(await Checker(options).run())
    # every connection of the anycable profile carries a valid token: all are refused
    assert results["handshake"].status == FAIL
    assert "HTTP 403" in results["handshake"].detail
    assert exit_status(list(results.values())) == 3
    assert results["JWT valid"].status == NOT_RUN
    assert results["JWT expired"].status == NOT_RUN
    assert results["JWT forged"].status == NOT_RUN


async def test_the_origin_defaults_to_the_urls_own() -> None:
    seen: list[str | None] = []

    async def same_origin_only(request: WebSocketRequest) -> None:
        origin = dict(request.headers).get(b"origin")
        seen.append(origin.decode() if origin else None)
        if origin != f"http://127.0.0.1:{request.local.port}".encode():
            await request.reject(404)
            return
        await careless(request)

    async with tiny_server(same_origin_only) as port:
        options = Options(url=f"ws://127.0.0.1:{port}/cable", timeout=0.5, ping_interval=0.2)
        with trio.fail_after(30):
            results = by_name(await Checker(options).run())
    assert results["handshake"].status == PASS
    assert seen[0] == f"http://127.0.0.1:{port}"


async def test_cableway_without_its_extensions_fails_the_checks_that_need_them() -> None:
    """No broker (no history, no restore), no presence on signed streams, and no
    application channels (Cableway has no RPC): the checks that use --channel are NOT RUN."""
    cfg = config(ping_interval=0.5, broker="none", streams_presence=False)
    async with running(cfg) as server:
        options = cableway_options(
            server.main_port,
            server.broadcast_port,
            ANYCABLE,
            fuzz=False,
            channel="EchoChannel",
            params={"room": "1"},
            action="echo",
        )
        with trio.fail_after(120):
            results = by_name(await Checker(options).run())
    assert results["channel subscribe"].status == FAIL
    assert results["channel subscribe"].detail.endswith("got reject_subscription")
    for name in ("message/perform", "ext: session restore", "duplicate subscribe"):
        assert results[name].status == NOT_RUN
        assert results[name].detail == "needs a passing check: 'channel subscribe' FAIL"
    assert results["ext: history"].status == FAIL
    assert results["presence"].status == FAIL
    assert results["broadcast round trip"].status == PASS
    async with running(cfg) as server:
        options = cableway_options(server.main_port, server.broadcast_port, ANYCABLE, fuzz=False)
        with trio.fail_after(120):
            results = by_name(await Checker(options).run())
    assert results["ext: session restore"].status == FAIL
    assert results["ext: session restore"].detail.startswith("?sid= did not restore")


async def test_an_action_that_transmits_nothing_fails_message_perform(
    rails: RailsServer,
) -> None:
    options = rails_options(rails, ACTIONCABLE, fuzz=False, action="no_such_action")
    with trio.fail_after(120):
        results = by_name(await Checker(options).run())
    assert results["channel subscribe"].status == PASS
    assert results["message/perform"].status == FAIL
    assert "after performing 'no_such_action'" in results["message/perform"].detail


async def reads_before_welcoming(request: WebSocketRequest) -> None:
    """Answers a command that came with the upgrade before it sends the welcome."""
    ws = await request.accept(subprotocol=v1_if_offered(request))
    with contextlib.suppress(ConnectionClosed):
        with trio.move_on_after(0.2):  # an early command is already there: no wait then
            command = json.loads(await ws.get_message())
            reply = {"type": "confirm_subscription", "identifier": command.get("identifier")}
            await ws.send_message(json.dumps(reply))
        await ws.send_message(json.dumps({"type": "welcome"}))
        while True:
            await ws.get_message()


async def test_an_answer_before_the_welcome_fails_commands_before_welcome() -> None:
    async with tiny_server(reads_before_welcoming) as port:
        options = cableway_options(port, port, ACTIONCABLE, timeout=0.5, fuzz=False)
        with trio.fail_after(60):
            results = by_name(await Checker(options).run())
    assert results["commands before welcome"].status == FAIL
    assert results["commands before welcome"].detail.startswith(
        "the first message is not a welcome"
    )


@asynccontextmanager
async def deaf_to_unsubscribe() -> AsyncIterator[int]:
    """Confirms Turbo subscribes, ignores unsubscribe, and delivers what is POSTed to
    /_broadcast (any path on the same port is the cable) to every identifier ever
    subscribed to the stream."""
    subscribers: list[tuple[WebSocketConnection, str, str]] = []

    async def cable(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=v1_if_offered(request))
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(json.dumps({"type": "welcome"}))
            while True:
                try:
                    command = json.loads(await ws.get_message())
                    identifier = command["identifier"]
                    signed = json.loads(identifier)["signed_stream_name"]
                    stream = verify_signed_stream_name(signed, TURBO_KEY)
                except (ValueError, TypeError, KeyError, InvalidSignature):
                    continue  # garbage, and forged names, get no answer
                if command.get("command") == "subscribe":
                    subscribers.append((ws, identifier, stream))
                    reply = {"type": "confirm_subscription", "identifier": identifier}
                    await ws.send_message(json.dumps(reply))

    async def broadcasts(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        publication = json.loads(body)
        for ws, identifier, name in list(subscribers):
            if name == publication["stream"]:
                message = {"identifier": identifier, "message": json.loads(publication["data"])}
                with contextlib.suppress(ConnectionClosed):
                    await ws.send_message(json.dumps(message))
        response = h11.Response(status_code=201, headers=[("content-length", "0")])
        await stream.send_all(conn.send(response) + conn.send(h11.EndOfMessage()))

    async with tiny_server(cable) as ws_port, tcp_server(broadcasts) as http_port:
        yield ws_port, http_port


async def test_delivering_after_unsubscribe_fails_its_check() -> None:
    async with deaf_to_unsubscribe() as (ws_port, http_port):
        options = cableway_options(ws_port, http_port, ACTIONCABLE, timeout=1.0, fuzz=False)
        with trio.fail_after(60):
            results = by_name(await Checker(options).run())
    assert results["broadcast round trip"].status == PASS
    assert results["unsubscribe stops broadcasts"].status == FAIL
    assert results["unsubscribe stops broadcasts"].detail.startswith("delivered after unsubscribe")


# -- the command line ----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_main_prints_a_table_and_exits_3_when_unreachable() -> None:
    out = io.StringIO()
    port = closed_port()
    status = main([f"ws://127.0.0.1:{port}/cable", "--timeout", "0.5"], out=out)
    lines = out.getvalue().splitlines()
    assert status == 3
    assert lines[0].startswith("FAIL    handshake")
    assert "cannot connect" in lines[0]
    assert any(line.startswith("NOT RUN welcome") for line in lines)
    assert lines[-2] == "0 passed, 1 failed, 22 skipped, 6 not run"
    assert lines[-1].startswith("the server is unreachable or unusable: cannot connect")


def test_main_json_objects_and_junit(tmp_path: Path) -> None:
    out = io.StringIO()
    port = closed_port()
    report = tmp_path / "report.xml"
    argv = [f"ws://127.0.0.1:{port}/cable", "--timeout", "0.5", "--json", "--junit", str(report)]
    status = main(argv, out=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert status == 3
    checks = {record["check"]: record for record in records[:-1]}
    assert set(checks) == set(ALL)
    handshake = checks["handshake"]
    assert handshake["status"] == "fail"
    assert handshake["profile"] == "actioncable"
    assert isinstance(handshake["duration"], float)
    assert handshake["sent"][0].startswith("GET /cable (upgrade")
    assert checks["welcome"]["status"] == "not_run"
    assert records[-1] == {"passed": 0, "failed": 1, "skipped": 22, "not_run": 6, "exit": 3}
    suite = ElementTree.parse(report).getroot()
    assert suite.tag == "testsuite"
    assert suite.get("tests") == str(len(ALL))
    assert suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["handshake"].find("failure") is not None
    assert cases["welcome"].find("skipped").get("message").startswith("not run:")  # type: ignore[union-attr]


def test_main_usage_errors() -> None:
    assert main(["http://example.invalid/cable"], out=io.StringIO()) == 2
    assert main(["ws://h/cable", "--profile", "nope"], out=io.StringIO()) == 2
    assert main(["ws://h/cable", "--action", "speak"], out=io.StringIO()) == 2
    assert main(["ws://h/cable", "--params", "[1]"], out=io.StringIO()) == 2
    assert main(["--help"], out=io.StringIO()) == 0


def test_option_names_follow_the_server_and_the_old_spellings_still_work() -> None:
    new, _ = parse_args(
        [
            "ws://h/cable",
            "--turbo_streams_secret=T",
            "--jwt_secret=J",
            "--jwt_param=token",
            "--broadcast_url=http://h/_broadcast",
            "--broadcast_key=B",
            "--ping_interval=2",
        ]
    )
    old, _ = parse_args(
        [
            "ws://h/cable",
            "--turbo-secret=T",
            "--jwt-key=J",
            "--jwt-param=token",
            "--broadcast-url=http://h/_broadcast",
            "--broadcast-key=B",
            "--ping-interval=2",
        ]
    )
    assert new == old
    assert (new.turbo_key, new.jwt_secret, new.broadcast_auth) == ("T", "J", "B")
    # --secret is the fallback of every secret, as on the server
    derived, _ = parse_args(["ws://h/cable", "--secret=S"])
    assert (derived.turbo_key, derived.streams_key, derived.jwt_secret) == ("S", "S", "S")
    assert derived.broadcast_auth is not None
    assert derived.broadcast_auth != "S"
    assert derived.origin_header == "http://h"
    # ... and the secrets default to the server's environment variables
    from_env, _ = parse_args(["ws://h/cable"], {"ANYCABLE_SECRET": "S", "ANYCABLE_JWT_SECRET": "J"})
    assert (from_env.turbo_key, from_env.jwt_secret) == ("S", "J")
    assert parse_args(["ws://h/cable", "--secret=X"], {"ANYCABLE_SECRET": "S"})[0].secret == "X"


@pytest.mark.parametrize(
    ("profile", "expected"),
    [(ACTIONCABLE, CABLEWAY_ACTIONCABLE), (ANYCABLE, CABLEWAY_ANYCABLE)],
)
async def test_a_server_enforcing_jwt_passes_both_profiles(
    profile: str, expected: dict[str, str]
) -> None:
    """Every connection, and the SSE request (?jid=), carry a valid token."""
    async with running(
        config(ping_interval=0.5, broker="memory", streams_whisper=True, enforce_jwt=True)
    ) as server:
        options = cableway_options(server.main_port, server.broadcast_port, profile)
        with trio.fail_after(120):
            results = await Checker(options).run()
    assert [r for r in results if r.status != expected[r.name]] == []


async def test_whisper_is_checked_only_when_the_server_is_said_to_allow_it() -> None:
    """Whisper on signed streams is off by default (AnyCable's and Cableway's)."""
    async with running(config(ping_interval=0.5, broker="memory")) as server:
        port = server.main_port
        off = cableway_options(port, port, ANYCABLE, streams_whisper=False, fuzz=False)
        on = cableway_options(port, port, ANYCABLE, fuzz=False)
        with trio.fail_after(60):
            skipped = by_name(await Checker(off).run())["whisper"]
            failed = by_name(await Checker(on).run())["whisper"]
    assert skipped.status == SKIP
    assert skipped.detail.startswith("needs --streams_whisper")
    assert failed.status == FAIL
    assert failed.detail.startswith("no whisper at the other subscriber")


def test_cableway_help_does_not_call_check_optional(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "check" in text
    assert "when installed" not in text
