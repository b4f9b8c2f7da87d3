"""The checks of a connection's life: the handshake, the subprotocol, the welcome, pings, the
extended protocol's sid and pong, and the ``server_restart`` disconnect on shutdown."""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from .client import (
    EXT,
    RAILS_OFFER,
    V1,
    CheckFailed,
    Closed,
    HandshakeRefused,
    Transcript,
    compact,
)
from .harness import Harness


async def handshake(checker: Harness, transcript: Transcript) -> str:
    async with checker.connect(transcript) as client:
        return f"HTTP 101 (Origin {checker.options.origin_header})" + (
            "" if client.subprotocol else ", no subprotocol"
        )


async def subprotocol(checker: Harness, transcript: Transcript) -> str:
    async with checker.connect(transcript) as client:
        if client.subprotocol != V1:
            raise CheckFailed(
                f"offered {list(RAILS_OFFER)}, the server chose {client.subprotocol!r}"
            )
    return f"{V1} chosen from {list(RAILS_OFFER)}"


async def welcome(checker: Harness, transcript: Transcript) -> str:
    async with checker.connect(transcript) as client:
        message = await client.welcome()
    sid = message.get("sid")
    return f"welcome with sid {sid!r}" if sid else "welcome (without sid, as Rails)"


async def no_subprotocol(checker: Harness, transcript: Transcript) -> str:
    try:
        async with checker.connect(transcript, subprotocols=()) as client:
            if client.subprotocol is not None:  # wsproto refuses this already
                raise CheckFailed(f"the server chose {client.subprotocol!r}, never offered")
    except HandshakeRefused as exc:
        if 400 <= exc.status < 500:
            return f"refused with HTTP {exc.status}"
        raise CheckFailed(str(exc)) from None
    except CheckFailed as exc:
        if "unrecognized subprotocol" in str(exc):
            raise CheckFailed(
                f"the server answered 101 with a subprotocol the client never offered ({exc})"
            ) from None
        raise
    return "101 without Sec-WebSocket-Protocol (the client decides)"


async def plain_http(checker: Harness, transcript: Transcript) -> str:
    parts = urlsplit(checker.options.url)
    scheme = "https" if checker.secure else "http"
    url = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
    headers = [("origin", checker.options.origin_header)]
    status, _, _ = await checker.http_request("GET", url, transcript, headers=headers)
    if status == 101 or status < 400:
        raise CheckFailed(f"a plain GET of the cable path was answered {status}")
    return f"answered {status}"


async def pings(checker: Harness, transcript: Transcript) -> str:
    interval = checker.options.ping_interval
    async with checker.session(transcript) as client:
        pings = await client.wait_pings(2, interval * 2.5 + checker.options.timeout)
    if len(pings) < 2:
        raise CheckFailed(
            f"{len(pings)} ping(s) in {interval * 2.5 + checker.options.timeout:g}s "
            f"(interval {interval:g}s)"
        )
    for _, stamp in pings:
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise CheckFailed(f"ping message is not an integer timestamp: {stamp!r}")
    gap = pings[-1][0] - pings[-2][0]
    if not interval * 0.5 <= gap <= interval * 1.5 + 0.25:
        raise CheckFailed(f"pings {gap:.2f}s apart, expected about {interval:g}s")
    return f"pings {gap:.2f}s apart (expected {interval:g}s), integer timestamps"


async def ext(checker: Harness, transcript: Transcript) -> str:
    async with checker.connect(transcript, subprotocols=(EXT,)) as client:
        if client.subprotocol != EXT:
            raise CheckFailed(
                f"offered [{EXT!r}], the server chose {client.subprotocol!r} (the extended "
                "protocol is AnyCable's)"
            )
        welcome = await client.welcome()
        if not isinstance(welcome.get("sid"), str) or not welcome["sid"]:
            raise CheckFailed("the welcome carries no sid")
        await client.send({"command": "ping"})
        await client.expect("pong", lambda m: m.get("type") == "pong")
    return f"{EXT} chosen; welcome with sid; ping answered with pong"


async def shutdown(checker: Harness, transcript: Transcript) -> str:
    """--shutdown_command stops the server: a connected client is told server_restart."""
    command = checker.options.shutdown_command
    assert command is not None
    outcome: list[int] = []

    async def stop() -> None:
        transcript.send(f"<runs {command}>")
        try:
            done = await trio.run_process(
                shlex.split(command), check=False, capture_stdout=True, capture_stderr=True
            )
        except OSError as exc:
            transcript.receive(f"<cannot run it: {exc}>")
            outcome.append(-1)
            return
        outcome.append(done.returncode)

    async with checker.session(transcript) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            try:
                message: dict[str, Any] | CheckFailed = await client.expect(
                    "disconnect message before the server went away",
                    lambda m: m.get("type") == "disconnect",
                    within=checker.options.timeout * 2,
                )
            except Closed as exc:
                message = CheckFailed(f"{exc}, without a disconnect message")
            except CheckFailed as exc:
                message = exc
        if outcome and outcome[0] != 0:
            raise CheckFailed(f"--shutdown_command exited with status {outcome[0]}")
        if isinstance(message, CheckFailed):
            raise message
        if message.get("reason") != "server_restart" or message.get("reconnect") is not True:
            raise CheckFailed(
                f"expected reason server_restart, reconnect true: {compact(message):.120}"
            )
    return "disconnect server_restart (reconnect true) before the server stopped"
