"""``cableway check WS_URL``: a compliance checker for any Action Cable server.

Connects to the server at ``WS_URL`` (Cableway, AnyCable-Go, Rails...) as an Action
Cable client (trio-websocket) and checks the behaviours that apply to what it is told:

========================  ===================================================  =================
check                     passes when                                          needs
========================  ===================================================  =================
welcome                   the first message is ``{"type":"welcome",…}``        —
subprotocol               ``actioncable-v1-json`` is chosen from the Rails     —
                          client's offer
ping cadence              two pings ``--ping-interval`` apart (±50%), integer  —
                          timestamps
garbage tolerance         malformed commands are ignored: the session stays    —
                          open and answers the next subscribe
signed subscribe          a signed Turbo stream is confirmed, a forged one     ``--turbo-secret``
                          rejected, both echoing the identifier
duplicate subscribe       a second subscribe of the same identifier gets no    ``--turbo-secret``
                          second confirmation and breaks nothing
broadcast round trip      a publication POSTed to the broadcast URL reaches    ``--broadcast-url``
                          the subscriber                                       + turbo secret
JWT valid/expired/forged  a valid token is welcomed; expired and forged ones   ``--jwt-key``
                          are refused (``token_expired`` / ``unauthorized``)
fuzz: …                   malformed commands and malformed WebSocket frames    ``--fuzz``
                          (on throwaway connections) never take down another
                          client or the server
========================  ===================================================  =================

Prints one line per check (``PASS``/``FAIL``/``SKIP``) and ``N passed, N failed``, or
JSON lines with ``--json``. Exit status: 0 when every check that ran passed, 1 when one
failed, 2 for a usage error. Each check is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import ssl
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import h11
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
)

from .auth.jwt import encode_token
from .auth.signed_streams import sign_stream_name

__all__ = ["CheckFailed", "Checker", "Options", "Result", "main"]

V1 = "actioncable-v1-json"
RAILS_OFFER = (V1, "actioncable-unsupported")
TURBO_CHANNEL = "Turbo::StreamsChannel"
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says what was seen."""


@dataclass(frozen=True, slots=True)
class Options:
    """What the checker is told about the server."""

    url: str
    turbo_secret: str | None = None
    jwt_key: str | None = None
    jwt_param: str = "jid"
    broadcast_url: str | None = None
    broadcast_key: str | None = None
    fuzz: bool = False
    origin: str | None = None
    ping_interval: float = 3.0
    timeout: float = 5.0
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    status: str
    detail: str = ""


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def turbo_identifier(stream: str, secret: str) -> str:
    """The identifier turbo-rails' ``<turbo-cable-stream-source>`` subscribes with."""
    return _compact(
        {"channel": TURBO_CHANNEL, "signed_stream_name": sign_stream_name(stream, secret)}
    )


class Client:
    """One Action Cable client connection (over trio-websocket).

    Pings are recorded (with arrival times) and skipped by :meth:`recv`.
    """

    def __init__(self, ws: WebSocketConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.pings: list[tuple[float, object]] = []

    async def send(self, message: object) -> None:
        text = message if isinstance(message, str | bytes) else _compact(message)
        try:
            await self.ws.send_message(text)
        except ConnectionClosed as exc:
            raise CheckFailed(f"the server closed the connection ({_reason(exc)})") from None

    async def recv(self, within: float | None = None) -> dict[str, Any]:
        """The next message other than a ping (``TimeoutError`` after ``within`` s)."""
        with trio.move_on_after(self.timeout if within is None else within) as scope:
            while True:
                try:
                    raw = await self.ws.get_message()
                except ConnectionClosed as exc:
                    raise CheckFailed(
                        f"the server closed the connection ({_reason(exc)})"
                    ) from None
                try:
                    message = json.loads(raw)
                except (ValueError, TypeError):
                    raise CheckFailed(f"the server sent a non-JSON message: {raw!r:.80}") from None
                if not isinstance(message, dict):
                    raise CheckFailed(f"the server sent a non-object message: {raw!r:.80}")
                if message.get("type") == "ping":
                    self.pings.append((trio.current_time(), message.get("message")))
                    continue
                return message
        assert scope.cancelled_caught
        raise TimeoutError

    async def expect(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], within: float | None = None
    ) -> dict[str, Any]:
        """Read until a message satisfies ``predicate``; fail after ``within`` s."""
        seen: list[dict[str, Any]] = []
        deadline = trio.current_time() + (self.timeout if within is None else within)
        while True:
            try:
                message = await self.recv(max(0.0, deadline - trio.current_time()))
            except TimeoutError:
                others = f" (got {_brief(seen)})" if seen else ""
                raise CheckFailed(f"no {what}{others}") from None
            if predicate(message):
                return message
            seen.append(message)

    async def wait_pings(self, count: int, within: float) -> list[tuple[float, object]]:
        """Wait (at most ``within`` s) until ``count`` pings arrived; the pings so far."""
        with trio.move_on_after(within):
            while len(self.pings) < count:
                try:
                    raw = await self.ws.get_message()
                except ConnectionClosed as exc:
                    raise CheckFailed(
                        f"the server closed the connection ({_reason(exc)})"
                    ) from None
                try:
                    message = json.loads(raw)
                except (ValueError, TypeError):
                    raise CheckFailed(f"the server sent a non-JSON message: {raw!r:.80}") from None
                if isinstance(message, dict) and message.get("type") == "ping":
                    self.pings.append((trio.current_time(), message.get("message")))
                else:
                    raise CheckFailed(f"unexpected message while idle: {_brief([message])}")
        return self.pings

    async def messages_for(self, seconds: float) -> list[dict[str, Any]]:
        """Every non-ping message arriving within ``seconds``."""
        out: list[dict[str, Any]] = []
        deadline = trio.current_time() + seconds
        while True:
            try:
                out.append(await self.recv(max(0.0, deadline - trio.current_time())))
            except TimeoutError:
                return out

    async def welcome(self) -> dict[str, Any]:
        message = await self.expect("welcome", lambda m: True)
        if message.get("type") != "welcome":
            raise CheckFailed(f"the first message is not a welcome: {_brief([message])}")
        return message

    async def subscribe(self, identifier: str) -> dict[str, Any]:
        """Subscribe; the confirm or reject for exactly this identifier."""
        await self.send({"command": "subscribe", "identifier": identifier})
        return await self.expect(
            "confirm_subscription/reject_subscription",
            lambda m: (
                m.get("type") in ("confirm_subscription", "reject_subscription")
                and m.get("identifier") == identifier
            ),
        )


def _reason(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "no close reason"
    return f"code {reason.code}" + (f", {reason.reason!r}" if reason.reason else "")


def _brief(messages: Sequence[object]) -> str:
    text = ", ".join(_compact(m) for m in messages[:3])
    return text if len(text) <= 160 else text[:157] + "..."


class Checker:
    """Runs the checks against one server."""

    def __init__(self, options: Options, *, out: TextIO | None = None) -> None:
        self.options = options
        self.out = out
        self.results: list[Result] = []
        parts = urlsplit(options.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {options.url}")
        self.secure = parts.scheme == "wss"
        self.ssl_context: ssl.SSLContext | None = None
        if self.secure:
            self.ssl_context = ssl.create_default_context()
            if options.insecure:
                self.ssl_context.check_hostname = False
                self.ssl_context.verify_mode = ssl.CERT_NONE
        self.welcomed = False

    # -- connections ------------------------------------------------------------------

    def url(self, jwt: str | None = None) -> str:
        """The WebSocket URL with ``jwt`` in the query (default: a valid token when
        ``--jwt-key`` is given, else none)."""
        options = self.options
        token = jwt
        if token is None and options.jwt_key:
            token = self.token()
        if token is None:
            return options.url
        parts = urlsplit(options.url)
        query = parts.query + ("&" if parts.query else "") + urlencode({options.jwt_param: token})
        return urlunsplit(parts._replace(query=query))

    def token(self, *, expired: bool = False, key: str | None = None) -> str:
        key = key or self.options.jwt_key
        assert key is not None
        exp = time.time() + (-3600 if expired else 3600)
        return encode_token({"user_id": "cableway-check"}, key, exp=exp)

    @asynccontextmanager
    async def connect(
        self, *, jwt: str | None = None, subprotocols: Sequence[str] = RAILS_OFFER
    ) -> AsyncIterator[Client]:
        """A connection (``jwt``: the token to present; default: a valid one if any)."""
        headers = [(b"origin", self.options.origin.encode())] if self.options.origin else None
        try:
            manager = open_websocket_url(
                self.url(jwt),
                self.ssl_context,
                subprotocols=list(subprotocols),
                extra_headers=headers,
                message_queue_size=256,
                max_message_size=4 << 20,
                connect_timeout=self.options.timeout,
                disconnect_timeout=1,
            )
            ws = await manager.__aenter__()
        except ConnectionRejected as exc:
            raise CheckFailed(
                f"the WebSocket handshake was refused: HTTP {exc.status_code}"
            ) from None
        except HandshakeError as exc:
            if isinstance(exc.__cause__, OSError):
                raise CheckFailed(f"cannot connect: {exc.__cause__}") from None
            raise CheckFailed(f"the WebSocket handshake failed: {exc!r:.120}") from None
        except OSError as exc:
            raise CheckFailed(f"cannot connect: {exc}") from None
        except ExceptionGroup as group:  # trio-websocket may wrap the above in a nursery's group
            first = group.exceptions[0]
            raise CheckFailed(f"cannot connect: {first!r:.120}") from None
        try:
            yield Client(ws, self.options.timeout)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.options.timeout):
                with contextlib.suppress(Exception):  # closing a connection the server broke
                    await manager.__aexit__(None, None, None)
                # trio-websocket 0.12 leaves the TCP stream open after a server close
                stream = getattr(ws, "_stream", None)
                if stream is not None:
                    await stream.aclose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Client]:
        """A connection that has been welcomed."""
        if not self.welcomed:
            raise CheckFailed("not run: no welcome (see the welcome check)")
        async with self.connect() as client:
            await client.welcome()
            yield client

    # -- running ------------------------------------------------------------------------

    def report(self, result: Result) -> None:
        self.results.append(result)
        if self.out is not None:
            self.out.write(format_result(result, as_json=False) + "\n")
            self.out.flush()

    async def run_check(
        self,
        name: str,
        check: Callable[[], Awaitable[str]],
        *,
        needs: str | None = None,
        waits: int = 4,
    ) -> Result:
        """Run one check, bounded by ``waits`` timeouts plus three ping intervals."""
        if needs is not None:
            result = Result(name, SKIP, needs)
        else:
            budget = self.options.timeout * waits + self.options.ping_interval * 3
            try:
                with trio.fail_after(budget):
                    result = Result(name, PASS, await check())
            except CheckFailed as exc:
                result = Result(name, FAIL, str(exc))
            except trio.TooSlowError:
                result = Result(name, FAIL, "timed out")
            except Exception as exc:
                result = Result(name, FAIL, f"{type(exc).__name__}: {exc}"[:200])
        self.report(result)
        return result

    async def run(self) -> list[Result]:
        options = self.options
        turbo = None if options.turbo_secret else "needs --turbo-secret"
        jwt = None if options.jwt_key else "needs --jwt-key"
        broadcast = turbo or (None if options.broadcast_url else "needs --broadcast-url")
        fuzz = None if options.fuzz else "needs --fuzz"
        welcome = await self.run_check("welcome", self.check_welcome)
        self.welcomed = welcome.status == PASS
        await self.run_check("subprotocol", self.check_subprotocol)
        await self.run_check("ping cadence", self.check_pings)
        await self.run_check("garbage tolerance", self.check_garbage)
        await self.run_check("signed subscribe", self.check_signed_subscribe, needs=turbo)
        await self.run_check("duplicate subscribe", self.check_duplicate, needs=turbo)
        await self.run_check("broadcast round trip", self.check_broadcast, needs=broadcast)
        await self.run_check("JWT valid", self.check_jwt_valid, needs=jwt)
        await self.run_check("JWT expired", self.check_jwt_expired, needs=jwt)
        await self.run_check("JWT forged", self.check_jwt_forged, needs=jwt)
        await self.run_check("fuzz: malformed commands", self.check_fuzz_commands, needs=fuzz)
        await self.run_check(
            "fuzz: malformed frames",
            self.check_fuzz_frames,
            needs=fuzz,
            waits=2 * len(BAD_FRAMES) + 6,
        )
        return self.results

    # -- the checks -----------------------------------------------------------------

    async def check_welcome(self) -> str:
        async with self.connect() as client:
            message = await client.welcome()
        sid = message.get("sid")
        return f"sid {sid!r}" if sid else "welcome without sid (Rails style)"

    async def check_subprotocol(self) -> str:
        async with self.connect() as client:
            chosen = client.ws.subprotocol
            if chosen != V1:
                raise CheckFailed(f"offered {list(RAILS_OFFER)}, the server chose {chosen!r}")
        return f"{V1} chosen from {list(RAILS_OFFER)}"

    async def check_pings(self) -> str:
        interval = self.options.ping_interval
        async with self.session() as client:
            pings = await client.wait_pings(2, interval * 2.5 + self.options.timeout)
        if len(pings) < 2:
            raise CheckFailed(
                f"{len(pings)} ping(s) in {interval * 2.5:g}s (interval {interval:g}s)"
            )
        for _, stamp in pings:
            if isinstance(stamp, bool) or not isinstance(stamp, int):
                raise CheckFailed(f"ping message is not an integer timestamp: {stamp!r}")
        gap = pings[1][0] - pings[0][0]
        if not interval * 0.5 <= gap <= interval * 1.5 + 0.25:
            raise CheckFailed(f"pings {gap:.2f}s apart, expected about {interval:g}s")
        return f"pings {gap:.2f}s apart (expected {interval:g}s)"

    async def _answers_subscribe(self, client: Client) -> str:
        """A subscribe is answered: the session is alive and still reads commands."""
        if self.options.turbo_secret:
            identifier = turbo_identifier(
                f"check/{secrets.token_hex(4)}", self.options.turbo_secret
            )
        else:
            identifier = _compact({"channel": "CablewayCheckNoSuchChannel"})
        reply = await client.subscribe(identifier)
        return str(reply["type"])

    async def check_garbage(self) -> str:
        async with self.session() as client:
            for message in GARBAGE_COMMANDS[:6]:
                await client.send(message)
            answer = await self._answers_subscribe(client)
        return f"6 malformed commands ignored, then {answer}"

    async def check_signed_subscribe(self) -> str:
        secret = self.options.turbo_secret
        assert secret is not None
        stream = f"check/{secrets.token_hex(4)}"
        async with self.session() as client:
            good = turbo_identifier(stream, secret)
            reply = await client.subscribe(good)
            if reply.get("type") != "confirm_subscription":
                raise CheckFailed(f"a correctly signed stream was {reply.get('type')}")
            forged = turbo_identifier(stream, secret + "-forged")
            reply = await client.subscribe(forged)
            if reply.get("type") != "reject_subscription":
                raise CheckFailed("a stream signed with another key was confirmed")
        return "signed stream confirmed, forged one rejected"

    async def check_duplicate(self) -> str:
        secret = self.options.turbo_secret
        assert secret is not None
        identifier = turbo_identifier(f"check/{secrets.token_hex(4)}", secret)
        async with self.session() as client:
            if (await client.subscribe(identifier)).get("type") != "confirm_subscription":
                raise CheckFailed("the first subscribe was not confirmed")
            await client.send({"command": "subscribe", "identifier": identifier})
            extra = [
                m
                for m in await client.messages_for(min(1.0, self.options.timeout))
                if m.get("identifier") == identifier
            ]
            if any(m.get("type") == "confirm_subscription" for m in extra):
                raise CheckFailed("the duplicate subscribe was confirmed a second time")
            if any(m.get("type") == "reject_subscription" for m in extra):
                raise CheckFailed("the duplicate subscribe rejected the live subscription")
            await client.send({"command": "unsubscribe", "identifier": identifier})
            await client.messages_for(min(0.3, self.options.timeout))
            if (await client.subscribe(identifier)).get("type") != "confirm_subscription":
                raise CheckFailed("subscribing again after unsubscribe was not confirmed")
        return "one confirmation; unsubscribe and resubscribe still work"

    async def check_broadcast(self) -> str:
        secret, url = self.options.turbo_secret, self.options.broadcast_url
        assert secret is not None
        assert url is not None
        stream = f"check/{secrets.token_hex(4)}"
        nonce = secrets.token_hex(8)
        identifier = turbo_identifier(stream, secret)
        async with self.session() as client:
            if (await client.subscribe(identifier)).get("type") != "confirm_subscription":
                raise CheckFailed("the subscription was not confirmed")
            body = _compact({"stream": stream, "data": _compact({"check": nonce})}).encode()
            status, text = await http_post(
                url, body, key=self.options.broadcast_key, within=self.options.timeout
            )
            if not 200 <= status < 300:
                raise CheckFailed(f"the broadcast URL answered {status}: {text[:80]!r}")
            message = await client.expect(
                "broadcast", lambda m: m.get("identifier") == identifier and "message" in m
            )
            if message["message"] != {"check": nonce}:
                raise CheckFailed(f"unexpected broadcast payload: {_brief([message])}")
        return f"POST answered {status}; the subscriber got the message"

    async def check_jwt_valid(self) -> str:
        async with self.connect() as client:
            await client.welcome()
        return "a valid token is welcomed"

    async def _refused(self, token: str, reasons: tuple[str, ...]) -> str:
        try:
            async with self.connect(jwt=token) as client:
                try:
                    message = await client.recv()
                except CheckFailed as exc:  # closed at once, without a message
                    return f"refused: {exc}"
                except TimeoutError:
                    raise CheckFailed("no answer at all to the token") from None
                if message.get("type") == "welcome":
                    raise CheckFailed("the token was accepted (welcome)")
                if message.get("type") != "disconnect":
                    raise CheckFailed(f"unexpected answer: {_brief([message])}")
                reason = message.get("reason")
                if reason not in reasons:
                    raise CheckFailed(f"disconnect reason {reason!r}, expected {reasons}")
                return f"disconnect {reason!r}"
        except CheckFailed as exc:
            if str(exc).startswith(("the WebSocket handshake", "cannot connect")):
                return f"refused at the handshake: {exc}"
            raise

    async def check_jwt_expired(self) -> str:
        return await self._refused(self.token(expired=True), ("token_expired", "unauthorized"))

    async def check_jwt_forged(self) -> str:
        key = (self.options.jwt_key or "") + "-forged-key-of-at-least-32-bytes"
        return await self._refused(self.token(key=key), ("unauthorized",))

    async def check_fuzz_commands(self) -> str:
        """Every malformed command on one connection, watched by a second one."""
        async with self.session() as observer, self.session() as client:
            for message in GARBAGE_COMMANDS:
                await client.send(message)
            answer = await self._answers_subscribe(client)
            observed = await self._answers_subscribe(observer)
        return (
            f"{len(GARBAGE_COMMANDS)} malformed commands: the client still answers "
            f"({answer}), so does another ({observed})"
        )

    async def check_fuzz_frames(self) -> str:
        """Each malformed frame on its own connection; a watcher must stay served."""
        closed = 0
        async with self.session() as observer:
            for name, frame in BAD_FRAMES:
                outcome = await self.raw_exchange(frame)
                if outcome == "open":
                    raise CheckFailed(f"{name}: the server kept the connection open")
                closed += 1
            observed = await self._answers_subscribe(observer)
        async with self.session() as fresh:
            fresh_answer = await self._answers_subscribe(fresh)
        return (
            f"{closed} malformed frames: each connection closed; another client answers "
            f"({observed}), a new one too ({fresh_answer})"
        )

    async def raw_exchange(self, frame: bytes) -> str:
        """Open a raw WebSocket, send ``frame``; 'closed' once the server ends it."""
        parts = urlsplit(self.url())
        host = parts.hostname or "localhost"
        port = parts.port or (443 if self.secure else 80)
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if self.ssl_context is not None:
            stream = trio.SSLStream(stream, self.ssl_context, server_hostname=host)
        async with stream:
            ws = WSConnection(ConnectionType.CLIENT)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            extra = [(b"origin", self.options.origin.encode())] if self.options.origin else []
            await stream.send_all(
                ws.send(
                    Request(
                        host=parts.netloc, target=target, subprotocols=[V1], extra_headers=extra
                    )
                )
            )
            accepted = False
            with trio.move_on_after(self.options.timeout):
                while not accepted:
                    data = await stream.receive_some(65536)
                    if not data:
                        return "closed"
                    ws.receive_data(bytes(data))
                    for event in ws.events():
                        if isinstance(event, AcceptConnection):
                            accepted = True
                        elif isinstance(event, RejectConnection):
                            raise CheckFailed("the WebSocket handshake was refused")
            if not accepted:
                raise CheckFailed("no answer to the WebSocket handshake")
            try:
                await stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return "closed"
            with trio.move_on_after(self.options.timeout):
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return "closed"
                    if not data:
                        return "closed"
                    try:
                        ws.receive_data(bytes(data))
                        if any(isinstance(e, CloseConnection) for e in ws.events()):
                            return "closed"
                    except Exception:  # noqa: S112 -- a client-side parse error is fine
                        continue
        return "open"


def _client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame (random mask key)."""
    mask = secrets.token_bytes(4)
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | rsv << 4 | opcode]) + length + mask + masked


GARBAGE_COMMANDS: list[str | bytes] = [
    "this is not JSON",
    "[1,2,3]",
    '{"command":"subscribe"}',
    '{"command":"subscribe","identifier":{"channel":"NotAString"}}',
    '{"command":"no_such_command","identifier":"{}"}',
    '{"command":"message","identifier":"{\\"channel\\":\\"NotSubscribed\\"}","data":"{}"}',
    "null",
    '"just a string"',
    '{"command":"unsubscribe","identifier":"{\\"channel\\":\\"Never\\"}"}',
    "[" * 20000,
    '{"command":"subscribe","identifier":"' + "x" * 30000 + '"}',
    '{"command":"message","identifier":"{}","data":' + "9" * 5000 + "}",
    '{"command":"subscribe","identifier":"\\ud800"}',
    '{"command":"subscribe","command":"unsubscribe","identifier":"{}"}',
    '{"command":"subscribe","identifier":"{\\"channel\\":\\"Turbo::StreamsChannel\\",'
    '\\"signed_stream_name\\":\\"a--b\\"}"}',
    b'{"command":"subscribe","identifier":"{}"}',
    b"\x00\xff\xfe binary garbage",
    *[
        _compact({"command": "subscribe", "identifier": _compact({"channel": f"Bad{i}"})})
        for i in range(20)
    ],
]

BAD_FRAMES: list[tuple[str, bytes]] = [
    ("RSV1 without extension", _client_frame(0x1, b"{}", rsv=4)),
    ("reserved opcode 0x3", _client_frame(0x3, b"x")),
    ("reserved control opcode 0xB", _client_frame(0xB, b"")),
    ("unmasked frame", b"\x81\x02{}"),
    ("ping with 126-byte payload", _client_frame(0x9, b"p" * 126)),
    ("fragmented ping", _client_frame(0x9, b"p", fin=False)),
    ("continuation without start", _client_frame(0x0, b"x")),
    ("invalid UTF-8 text", _client_frame(0x1, b"\xff\xfe\xfd")),
    ("close with code 999", _client_frame(0x8, struct.pack("!H", 999))),
    ("close with a 1-byte payload", _client_frame(0x8, b"\x03")),
    ("64-bit length with the top bit set", b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"\0" * 4),
]


async def http_post(url: str, body: bytes, *, key: str | None, within: float) -> tuple[int, bytes]:
    """One HTTP/1.1 POST (h11 over trio); (status, body)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckFailed(f"not an http:// or https:// URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        ("host", parts.netloc),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    if key:
        headers.append(("authorization", f"Bearer {key}"))
    with trio.fail_after(within):
        stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
        if parts.scheme == "https":
            stream = trio.SSLStream(
                stream, ssl.create_default_context(), server_hostname=parts.hostname
            )
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            data = conn.send(h11.Request(method="POST", target=target, headers=headers))
            data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            status = 0
            chunks: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, b"".join(chunks)


def format_result(result: Result, *, as_json: bool) -> str:
    if as_json:
        return _compact(
            {"check": result.name, "status": result.status.lower(), "detail": result.detail}
        )
    return f"{result.status:<5} {result.name:<26} {result.detail}"


def summary(results: Sequence[Result]) -> tuple[int, int, int]:
    passed = sum(r.status == PASS for r in results)
    failed = sum(r.status == FAIL for r in results)
    return passed, failed, len(results) - passed - failed


def parse_args(argv: Sequence[str]) -> tuple[Options, bool]:
    """The options and whether to print JSON lines; exits (status 2) on a usage error."""
    parser = argparse.ArgumentParser(
        prog="cableway check",
        description="Check an Action Cable / AnyCable-compatible server for compliance.",
    )
    parser.add_argument("url", metavar="WS_URL", help="e.g. ws://localhost:8080/cable")
    parser.add_argument("--turbo-secret", help="Turbo Streams signing key (signed subscribes)")
    parser.add_argument("--jwt-key", help="JWT identification key (valid/expired/forged tokens)")
    parser.add_argument("--jwt-param", default="jid", help="query parameter of the token (jid)")
    parser.add_argument("--broadcast-url", help="HTTP broadcast endpoint (round trip)")
    parser.add_argument("--broadcast-key", help="bearer key of the broadcast endpoint")
    parser.add_argument("--fuzz", action="store_true", help="also send malformed commands/frames")
    parser.add_argument("--origin", help="Origin header to send (servers with an allow-list)")
    parser.add_argument(
        "--ping-interval", type=float, default=3.0, help="the server's ping interval (3)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per wait (5)")
    parser.add_argument("--insecure", action="store_true", help="wss: skip TLS verification")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(list(argv))
    if urlsplit(args.url).scheme not in ("ws", "wss"):
        parser.error(f"WS_URL must start with ws:// or wss:// (got {args.url!r})")
    if args.ping_interval <= 0 or args.timeout <= 0:
        parser.error("--ping-interval and --timeout must be positive")
    options = Options(
        url=args.url,
        turbo_secret=args.turbo_secret,
        jwt_key=args.jwt_key,
        jwt_param=args.jwt_param,
        broadcast_url=args.broadcast_url,
        broadcast_key=args.broadcast_key,
        fuzz=args.fuzz,
        origin=args.origin,
        ping_interval=args.ping_interval,
        timeout=args.timeout,
        insecure=args.insecure,
    )
    return options, bool(args.json)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """``cableway check WS_URL [options]``; returns the exit status."""
    stream = sys.stdout if out is None else out
    try:
        options, as_json = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    checker = Checker(options, out=None if as_json else stream)
    results = trio.run(checker.run)
    if as_json:
        for result in results:
            stream.write(format_result(result, as_json=True) + "\n")
    passed, failed, skipped = summary(results)
    if as_json:
        stream.write(_compact({"passed": passed, "failed": failed, "skipped": skipped}) + "\n")
    else:
        stream.write(f"{passed} passed, {failed} failed, {skipped} skipped\n")
    return 1 if failed else 0
