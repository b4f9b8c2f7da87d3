"""The checks: what the checker is told (:class:`Options`), each :class:`Check` with its
profile, needs and prerequisites (:data:`CHECKS`), and the :class:`Checker` that runs them."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError

from ..auth.jwt import encode_token
from ..auth.keys import derive_broadcast_key
from ..auth.signed_streams import sign_stream_name
from .client import (
    EVIDENCE_CHARS,
    EXT,
    RAILS_OFFER,
    V1,
    CheckFailed,
    Client,
    Closed,
    HandshakeRefused,
    Transcript,
    Unusable,
    client_frame,
    compact,
    pubsub_identifier,
    turbo_identifier,
)

PASS, FAIL, SKIP, NOT_RUN = "PASS", "FAIL", "SKIP", "NOT RUN"
ACTIONCABLE, ANYCABLE = "actioncable", "anycable"
PROFILES = (ACTIONCABLE, ANYCABLE)
#: How many checks run at once
CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Options:
    """What the checker is told about the server."""

    url: str
    profile: str = ACTIONCABLE
    secret: str | None = None
    turbo_secret: str | None = None
    streams_secret: str | None = None
    jwt_key: str | None = None
    jwt_param: str = "jid"
    broadcast_url: str | None = None
    broadcast_key: str | None = None
    channel: str | None = None
    action: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sse_path: str = "/events"
    streams_whisper: bool = False
    shutdown_command: str | None = None
    fuzz: bool = False
    origin: str | None = None
    ping_interval: float = 3.0
    timeout: float = 5.0
    insecure: bool = False

    # AnyCable's fallbacks: each secret defaults to the application secret (--secret)
    @property
    def turbo_key(self) -> str | None:
        return self.turbo_secret or self.streams_secret or self.secret

    @property
    def streams_key(self) -> str | None:
        return self.streams_secret or self.secret

    @property
    def jwt_secret(self) -> str | None:
        return self.jwt_key or self.secret

    @property
    def broadcast_auth(self) -> str | None:
        if self.broadcast_key:
            return None if self.broadcast_key.lower() == "none" else self.broadcast_key
        return derive_broadcast_key(self.secret) if self.secret else None

    @property
    def origin_header(self) -> str:
        """``--origin``, else the URL's own origin (what a browser on that host sends)."""
        if self.origin is not None:
            return self.origin
        parts = urlsplit(self.url)
        return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's verdict, with the evidence when it failed."""

    name: str
    status: str
    detail: str = ""
    profile: str = ACTIONCABLE
    duration: float = 0.0
    sent: tuple[str, ...] = ()
    received: tuple[str, ...] = ()
    unusable: bool = False

    def as_dict(self) -> dict[str, object]:
        record: dict[str, object] = {
            "check": self.name,
            "status": self.status.lower().replace(" ", "_"),
            "profile": self.profile,
            "duration": round(self.duration, 3),
            "detail": self.detail,
        }
        if self.status == FAIL:  # JSON messages as JSON values, the rest as text
            record["sent"] = [_as_data(text) for text in self.sent]
            record["received"] = [_as_data(text) for text in self.received]
        return record


def _as_data(text: str) -> object:
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _stream() -> str:
    return f"cableway-check/{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its profile, what it needs (a SKIP reason) and what must pass first."""

    name: str
    profile: str
    run: Callable[[Checker, Transcript], Awaitable[str]]
    requires: tuple[str, ...] = ("welcome",)
    needs: Callable[[Options], str | None] = lambda _options: None
    #: the check's time limit: this many --timeout waits plus ``pings`` ping intervals
    waits: float = 4
    pings: float = 0
    #: runs once every other check has ended (it stops the server)
    last: bool = False
    #: subscribes to --channel when it is given: then 'channel subscribe' must pass first
    uses_channel: bool = False

    def prerequisites(self, options: Options) -> tuple[str, ...]:
        if self.uses_channel and options.channel:
            return (*self.requires, "channel subscribe")
        return self.requires


class Checker:
    """Runs the checks against one server."""

    def __init__(
        self,
        options: Options,
        *,
        report: Callable[[Result], None] | None = None,
    ) -> None:
        self.options = options
        self._report = report
        self.results: dict[str, Result] = {}
        parts = urlsplit(options.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {options.url}")
        if options.profile not in PROFILES:
            raise ValueError(f"unknown profile {options.profile!r}")
        self.secure = parts.scheme == "wss"
        self.ssl_context: ssl.SSLContext | None = None
        if self.secure:
            self.ssl_context = ssl.create_default_context()
            if options.insecure:
                self.ssl_context.check_hostname = False
                self.ssl_context.verify_mode = ssl.CERT_NONE

    # -- connections ------------------------------------------------------------------

    def url(self, jwt: str | None = None, **query: str) -> str:
        """The WebSocket URL with ``jwt`` (default: a valid token when a JWT secret is
        known) and ``query`` added to its query string."""
        options = self.options
        token = jwt
        if token is None and options.jwt_secret:
            token = self.token()
        extra = dict(query)
        if token is not None:
            extra[options.jwt_param] = token
        if not extra:
            return options.url
        parts = urlsplit(options.url)
        joined = parts.query + ("&" if parts.query else "") + urlencode(extra)
        return urlunsplit(parts._replace(query=joined))

    def token(self, *, expired: bool = False, key: str | None = None) -> str:
        key = key or self.options.jwt_secret
        assert key is not None
        exp = time.time() + (-3600 if expired else 3600)
        return encode_token({"user_id": "cableway-check"}, key, exp=exp)

    async def _open_stream(self, host: str, port: int) -> trio.abc.Stream:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            # trio groups the attempts (one per address): name what each one said
            causes = exc.__cause__.exceptions if isinstance(exc.__cause__, ExceptionGroup) else ()
            said = sorted(
                {os.strerror(c.errno) for c in causes if isinstance(c, OSError) and c.errno}
            )
            reason = ", ".join(said) or exc.strerror or str(exc)
            raise Unusable(f"cannot connect to {host}:{port}: {reason}") from None
        if self.ssl_context is not None:
            stream = trio.SSLStream(stream, self.ssl_context, server_hostname=host)
        return stream

    async def handshake(
        self,
        transcript: Transcript,
        *,
        url: str | None = None,
        subprotocols: Sequence[str] = RAILS_OFFER,
        early: Sequence[object] = (),
    ) -> Client:
        """Open a WebSocket; the whole handshake is bounded by ``--timeout``.

        ``early`` messages are sent right after the upgrade request, before the answer.
        """
        parts = urlsplit(url or self.url())
        host = parts.hostname or "localhost"
        port = parts.port or (443 if self.secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout = self.options.timeout
        transcript.send(f"GET {target} (upgrade, subprotocols {list(subprotocols)})")
        with trio.move_on_after(timeout):
            stream = await self._open_stream(host, port)
            try:
                return await self._upgrade(
                    stream, transcript, parts.netloc, target, subprotocols, early
                )
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        raise Unusable(f"no answer to the WebSocket handshake within {timeout:g}s")

    async def _upgrade(
        self,
        stream: trio.abc.Stream,
        transcript: Transcript,
        netloc: str,
        target: str,
        subprotocols: Sequence[str],
        early: Sequence[object],
    ) -> Client:
        ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"origin", self.options.origin_header.encode())]
        request = Request(
            host=netloc, target=target, subprotocols=list(subprotocols), extra_headers=headers
        )
        data = ws.send(request)
        early_texts = [m if isinstance(m, str) else compact(m) for m in early]
        for text in early_texts:
            transcript.send(text)
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Unusable("the server closed the connection during the handshake") from None
        status = 0
        body: list[bytes] = []
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            try:
                ws.receive_data(bytes(chunk) if chunk else None)
                events = list(ws.events())
            except ProtocolError as exc:
                raise CheckFailed(f"invalid handshake answer: {exc}") from None
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    transcript.receive(f"HTTP 101 (subprotocol {event.subprotocol!r})")
                    client = Client(stream, ws, event.subprotocol, transcript, self.options.timeout)
                    # frames that came in the same read as the 101 (Rails often sends the
                    # welcome right behind it)
                    await client.handle(events[index + 1 :])
                    for text in early_texts:
                        await client.send_raw(ws.send(TextMessage(data=text)))
                    return client
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        transcript.receive(f"HTTP {status}")
                        raise HandshakeRefused(status, b"")
                elif isinstance(event, RejectData):
                    body.append(event.data)
                    if event.body_finished:
                        whole = b"".join(body)
                        transcript.receive(f"HTTP {status} {whole[:200]!r}")
                        raise HandshakeRefused(status, whole)
            if not chunk:
                transcript.receive("<TCP connection closed>")
                raise Unusable("the server closed the connection during the handshake")

    @asynccontextmanager
    async def connect(
        self,
        transcript: Transcript,
        *,
        jwt: str | None = None,
        subprotocols: Sequence[str] = RAILS_OFFER,
        early: Sequence[object] = (),
        **query: str,
    ) -> AsyncIterator[Client]:
        client = await self.handshake(
            transcript, url=self.url(jwt, **query), subprotocols=subprotocols, early=early
        )
        try:
            yield client
        finally:
            await client.close()

    @asynccontextmanager
    async def session(
        self, transcript: Transcript, *, subprotocols: Sequence[str] = RAILS_OFFER, **query: str
    ) -> AsyncIterator[Client]:
        """A connection that has been welcomed."""
        async with self.connect(transcript, subprotocols=subprotocols, **query) as client:
            await client.welcome()
            yield client

    # -- what the options allow ------------------------------------------------------------

    def subscribable(self) -> str | None:
        """An identifier the server confirms: the application channel, else a Turbo stream."""
        options = self.options
        if options.channel:
            return compact({"channel": options.channel, **options.params})
        if options.turbo_key:
            return turbo_identifier(_stream(), options.turbo_key)
        return None

    # -- running ------------------------------------------------------------------------

    def budget(self, check: Check) -> float:
        return self.options.timeout * check.waits + self.options.ping_interval * check.pings

    def skip_reason(self, check: Check) -> str | None:
        if check.profile == ANYCABLE and self.options.profile != ANYCABLE:
            return "needs --profile anycable"
        return check.needs(self.options)

    def record(self, result: Result) -> None:
        self.results[result.name] = result
        if self._report is not None:
            self._report(result)

    async def _run_one(
        self, check: Check, done: dict[str, trio.Event], limit: trio.CapacityLimiter
    ) -> None:
        try:
            reason = self.skip_reason(check)
            if reason is not None:
                self.record(Result(check.name, SKIP, reason, check.profile))
                return
            requires = check.prerequisites(self.options)
            for name in requires:
                await done[name].wait()
            if check.last:
                for other in CHECKS:
                    if not other.last:
                        await done[other.name].wait()
            failed = [n for n in requires if self.results[n].status != PASS]
            if failed:
                causes = ", ".join(f"{n!r} {self.results[n].status}" for n in failed)
                self.record(
                    Result(check.name, NOT_RUN, f"needs a passing check: {causes}", check.profile)
                )
                return
            async with limit:
                self.record(await self._execute(check))
        finally:
            done[check.name].set()

    async def _execute(self, check: Check) -> Result:
        transcript = Transcript()
        started = trio.current_time()
        unusable = False
        budget = self.budget(check)
        try:
            with trio.fail_after(budget):
                status, detail = PASS, await check.run(self, transcript)
        except Unusable as exc:
            status, detail, unusable = FAIL, str(exc), True
        except CheckFailed as exc:
            status, detail = FAIL, str(exc)
        except trio.TooSlowError:
            status, detail = FAIL, f"timed out (the check's limit is {budget:g}s)"
        except Exception as exc:  # a bug in a check must not end the run
            status, detail = FAIL, f"{type(exc).__name__}: {exc}"[:200]
        return Result(
            check.name,
            status,
            detail,
            check.profile,
            trio.current_time() - started,
            tuple(transcript.sent),
            tuple(transcript.received),
            unusable,
        )

    def run_limit(self) -> float:
        """The whole run's limit: the longest chain of dependent checks, each at its limit."""
        by_name = {check.name: check for check in CHECKS}

        def chain(check: Check) -> float:
            prerequisites = check.prerequisites(self.options)
            return self.budget(check) + max((chain(by_name[n]) for n in prerequisites), default=0)

        others = max(chain(check) for check in CHECKS if not check.last)
        last = sum(self.budget(check) for check in CHECKS if check.last)
        return others + last + self.options.timeout

    async def run(self) -> list[Result]:
        """Run every check; the results in the order of :data:`CHECKS`."""
        done = {check.name: trio.Event() for check in CHECKS}
        limit = trio.CapacityLimiter(CONCURRENCY)
        with trio.move_on_after(self.run_limit()):
            async with trio.open_nursery() as nursery:
                for check in CHECKS:
                    nursery.start_soon(self._run_one, check, done, limit)
        for check in CHECKS:
            if check.name not in self.results:
                self.record(
                    Result(check.name, NOT_RUN, "the run's time limit was reached", check.profile)
                )
        return [self.results[check.name] for check in CHECKS]

    # -- the Action Cable checks ---------------------------------------------------------

    async def check_handshake(self, transcript: Transcript) -> str:
        async with self.connect(transcript) as client:
            return f"HTTP 101 (Origin {self.options.origin_header})" + (
                "" if client.subprotocol else ", no subprotocol"
            )

    async def check_subprotocol(self, transcript: Transcript) -> str:
        async with self.connect(transcript) as client:
            if client.subprotocol != V1:
                raise CheckFailed(
                    f"offered {list(RAILS_OFFER)}, the server chose {client.subprotocol!r}"
                )
        return f"{V1} chosen from {list(RAILS_OFFER)}"

    async def check_welcome(self, transcript: Transcript) -> str:
        async with self.connect(transcript) as client:
            message = await client.welcome()
        sid = message.get("sid")
        return f"welcome with sid {sid!r}" if sid else "welcome (without sid, as Rails)"

    async def check_no_subprotocol(self, transcript: Transcript) -> str:
        try:
            async with self.connect(transcript, subprotocols=()) as client:
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

    async def check_plain_http(self, transcript: Transcript) -> str:
        parts = urlsplit(self.options.url)
        scheme = "https" if self.secure else "http"
        url = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
        headers = [("origin", self.options.origin_header)]
        status, _, _ = await self.http_request("GET", url, transcript, headers=headers)
        if status == 101 or status < 400:
            raise CheckFailed(f"a plain GET of the cable path was answered {status}")
        return f"answered {status}"

    async def check_pings(self, transcript: Transcript) -> str:
        interval = self.options.ping_interval
        async with self.session(transcript) as client:
            pings = await client.wait_pings(2, interval * 2.5 + self.options.timeout)
        if len(pings) < 2:
            raise CheckFailed(
                f"{len(pings)} ping(s) in {interval * 2.5 + self.options.timeout:g}s "
                f"(interval {interval:g}s)"
            )
        for _, stamp in pings:
            if isinstance(stamp, bool) or not isinstance(stamp, int):
                raise CheckFailed(f"ping message is not an integer timestamp: {stamp!r}")
        gap = pings[-1][0] - pings[-2][0]
        if not interval * 0.5 <= gap <= interval * 1.5 + 0.25:
            raise CheckFailed(f"pings {gap:.2f}s apart, expected about {interval:g}s")
        return f"pings {gap:.2f}s apart (expected {interval:g}s), integer timestamps"

    async def alive(self, client: Client) -> str:
        """Proof that the session still reads and answers: a subscribe that is confirmed,
        else (anycable) an unknown channel rejected, else (actioncable, where unknown
        channels get no answer) a ping that arrives while the connection stays open."""
        identifier = self.subscribable()
        if identifier is not None:
            await client.confirmed(identifier)
            return "a subscribe is confirmed"
        if self.options.profile == ANYCABLE:
            identifier = compact({"channel": "CablewayCheckNoSuchChannel"})
            reply = await client.subscribe(identifier)
            return f"an unknown channel gets {reply['type']}"
        pings = len(client.pings)
        within = self.options.ping_interval * 1.5 + self.options.timeout
        await client.wait_pings(1, within, strict=False)
        if len(client.pings) == pings:
            raise CheckFailed(f"no ping within {within:g}s: the session looks dead")
        return (
            "the session is still pinged (give --channel or --turbo_streams_secret to test it"
            " with a subscribe)"
        )

    async def settle(self, client: Client) -> None:
        """Give an unanswered command (unsubscribe) time to be handled before the next one.

        Action Cable acknowledges no unsubscribe, and Rails runs one connection's commands on
        a thread pool in no guaranteed order: a subscribe sent right after an unsubscribe of
        the same identifier may be handled first (and ignored as a duplicate)."""
        unexpected = await client.messages_for(min(0.5, self.options.timeout))
        for message in unexpected:
            if message.get("type") in ("confirm_subscription", "reject_subscription"):
                raise CheckFailed(f"unexpected answer to unsubscribe: {compact(message):.120}")

    async def check_garbage(self, transcript: Transcript) -> str:
        async with self.session(transcript) as client:
            for message in GARBAGE_COMMANDS[:6]:
                await client.send(message)
            answer = await self.alive(client)
        return f"6 malformed commands ignored, then {answer}"

    async def check_before_welcome(self, transcript: Transcript) -> str:
        identifier = self.subscribable()
        assert identifier is not None
        command = {"command": "subscribe", "identifier": identifier}
        async with self.connect(transcript, early=[command]) as client:
            await client.welcome()
            reply = await client.expect(
                "answer to the subscribe sent before the welcome",
                lambda m: m.get("identifier") == identifier,
            )
            if reply.get("type") != "confirm_subscription":
                raise CheckFailed(f"the early subscribe got {reply.get('type')}")
        return "welcome first, then the early subscribe confirmed"

    async def check_signed_subscribe(self, transcript: Transcript) -> str:
        secret = self.options.turbo_key
        assert secret is not None
        stream = _stream()
        async with self.session(transcript) as client:
            good = turbo_identifier(stream, secret)
            reply = await client.subscribe(good)
            if reply.get("type") != "confirm_subscription":
                raise CheckFailed(f"a correctly signed stream got {reply.get('type')}")
            forged = turbo_identifier(stream, secret + "-forged")
            reply = await client.subscribe(forged)
            if reply.get("type") != "reject_subscription":
                raise CheckFailed("a stream signed with another key was confirmed")
        return "signed stream confirmed, forged one rejected, each echoing its identifier"

    async def check_key_order(self, transcript: Transcript) -> str:
        identifier = self.subscribable()
        assert identifier is not None
        decoded = json.loads(identifier)
        if len(decoded) < 2:
            raise CheckFailed("needs an identifier with two keys or more (--params)")
        reordered = compact(dict(reversed(list(decoded.items()))))
        async with self.session(transcript) as client:
            await client.confirmed(identifier)
            reply = await client.subscribe(reordered)
            if reply.get("type") != "confirm_subscription":
                raise CheckFailed(f"the same keys in another order got {reply.get('type')}")
        return "the same keys in another order: a subscription of its own, echoed as sent"

    async def check_duplicate(self, transcript: Transcript) -> str:
        identifier = self.subscribable()
        assert identifier is not None
        async with self.session(transcript) as client:
            await client.confirmed(identifier)
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
            await self.settle(client)
            await client.confirmed(identifier)
        return "one confirmation; unsubscribe and resubscribe still work"

    async def check_channel(self, transcript: Transcript) -> str:
        identifier = self.subscribable()
        assert identifier is not None
        async with self.session(transcript) as client:
            reply = await client.subscribe(identifier)
            if reply.get("type") != "confirm_subscription":
                raise CheckFailed(f"{identifier} got {reply.get('type')}")
        return f"{identifier} confirmed"

    async def check_perform(self, transcript: Transcript) -> str:
        identifier = self.subscribable()
        assert identifier is not None
        action = self.options.action
        nonce = secrets.token_hex(8)
        async with self.session(transcript) as client:
            await client.confirmed(identifier)
            data = compact({"action": action, "check": nonce})
            await client.send({"command": "message", "identifier": identifier, "data": data})
            reply = await client.expect(
                f"message for {identifier} after performing {action!r} (does it transmit?)",
                lambda m: m.get("identifier") == identifier and "message" in m,
            )
        return f"{action!r} performed; the channel transmitted {compact(reply['message']):.80}"

    async def broadcast(self, transcript: Transcript, stream: str, data: object) -> int:
        url = self.options.broadcast_url
        assert url is not None
        body = compact({"stream": stream, "data": compact(data)}).encode()
        headers = [("content-type", "application/json")]
        key = self.options.broadcast_auth
        if key:
            headers.append(("authorization", f"Bearer {key}"))
        status, _, text = await self.http_request("POST", url, transcript, headers, body)
        if not 200 <= status < 300:
            raise CheckFailed(f"the broadcast URL answered {status}: {text[:80]!r}")
        return status

    async def check_broadcast(self, transcript: Transcript) -> str:
        secret = self.options.turbo_key
        assert secret is not None
        stream = _stream()
        nonce = secrets.token_hex(8)
        identifier = turbo_identifier(stream, secret)
        async with self.session(transcript) as client:
            await client.confirmed(identifier)
            status = await self.broadcast(transcript, stream, {"check": nonce})
            message = await client.expect(
                "broadcast", lambda m: m.get("identifier") == identifier and "message" in m
            )
            if message["message"] != {"check": nonce}:
                raise CheckFailed(f"unexpected broadcast payload: {compact(message):.120}")
        return f"POST answered {status}; the subscriber got the message"

    async def check_unsubscribe(self, transcript: Transcript) -> str:
        secret = self.options.turbo_key
        assert secret is not None
        stream = _stream()
        identifier = turbo_identifier(stream, secret)
        async with self.session(transcript) as leaver, self.session(transcript) as witness:
            await leaver.confirmed(identifier)
            await witness.confirmed(identifier)
            await leaver.send({"command": "unsubscribe", "identifier": identifier})
            await self.settle(leaver)
            await self.broadcast(transcript, stream, {"check": "after unsubscribe"})
            await witness.expect(
                "broadcast at the witness", lambda m: m.get("identifier") == identifier
            )
            late = [
                m
                for m in await leaver.messages_for(min(0.5, self.options.timeout))
                if m.get("identifier") == identifier
            ]
            if late:
                raise CheckFailed(f"delivered after unsubscribe: {compact(late[0]):.120}")
        return "a subscriber still on the stream got the broadcast; the one that left did not"

    async def check_fuzz_commands(self, transcript: Transcript) -> str:
        """Every malformed command on one connection, watched by a second one."""
        async with self.session(transcript) as observer, self.session(transcript) as client:
            for message in GARBAGE_COMMANDS:
                await client.send(message)
            answer = await self.alive(client)
            observed = await self.alive(observer)
        return (
            f"{len(GARBAGE_COMMANDS)} malformed commands: the client still answers "
            f"({answer}), so does another ({observed})"
        )

    async def check_fuzz_frames(self, transcript: Transcript) -> str:
        """Each malformed frame on its own connection; a watcher must stay served."""
        closed = 0
        async with self.session(transcript) as observer:
            for name, frame in BAD_FRAMES:
                async with self.connect(transcript) as client:
                    transcript.send(f"<frame: {name}>")
                    with suppress(Closed):
                        await client.send_raw(frame)
                    if not await client.is_closed(self.options.timeout):
                        raise CheckFailed(f"{name}: the server kept the connection open")
                closed += 1
            observed = await self.alive(observer)
        async with self.session(transcript) as fresh:
            fresh_answer = await self.alive(fresh)
        return (
            f"{closed} malformed frames: each connection closed; another client answers "
            f"({observed}), a new one too ({fresh_answer})"
        )

    # -- the AnyCable checks ---------------------------------------------------------------

    async def check_unknown_channel(self, transcript: Transcript) -> str:
        identifier = compact({"channel": "CablewayCheckNoSuchChannel"})
        async with self.session(transcript) as client:
            try:
                reply = await client.subscribe(identifier)
            except Closed:
                raise
            except CheckFailed:
                raise CheckFailed(
                    "no answer to a subscribe to an unknown channel (Rails never answers one; "
                    "reject_subscription there is AnyCable's extension)"
                ) from None
            if reply.get("type") != "reject_subscription":
                raise CheckFailed(f"an unknown channel got {reply.get('type')}")
        return "reject_subscription"

    async def check_jwt_valid(self, transcript: Transcript) -> str:
        async with self.connect(transcript, jwt=self.token()) as client:
            await client.welcome()
        return f"a valid token (?{self.options.jwt_param}=) is welcomed"

    async def _refused(self, transcript: Transcript, token: str, reasons: tuple[str, ...]) -> str:
        """The same handshake as 'JWT valid' (which passed), with ``token``: refused."""
        try:
            async with self.connect(transcript, jwt=token) as client:
                try:
                    message = await client.recv()
                except Closed as exc:  # closed at once, without a message
                    return f"closed without a message ({exc})"
                except TimeoutError:
                    raise CheckFailed("no answer at all to the token") from None
                if message.get("type") == "welcome":
                    raise CheckFailed("the token was accepted (welcome)")
                if message.get("type") != "disconnect":
                    raise CheckFailed(f"unexpected answer: {compact(message):.120}")
                reason = message.get("reason")
                if reason not in reasons:
                    raise CheckFailed(f"disconnect reason {reason!r}, expected one of {reasons}")
                if message.get("reconnect") is not False:
                    raise CheckFailed(
                        f'disconnect without "reconnect":false (got {message.get("reconnect")!r})'
                        ": clients would retry the same token forever"
                    )
                if not await client.is_closed(self.options.timeout):
                    raise CheckFailed("the connection stayed open after the disconnect")
                return f"disconnect {reason!r}, reconnect false, closed"
        except HandshakeRefused as exc:
            if exc.status in (401, 403):
                return f"refused at the handshake: HTTP {exc.status}"
            raise CheckFailed(str(exc)) from None
        except Unusable as exc:  # 'JWT valid' connected: this is not an unreachable server
            raise CheckFailed(str(exc)) from None

    async def check_jwt_expired(self, transcript: Transcript) -> str:
        return await self._refused(
            transcript, self.token(expired=True), ("token_expired", "unauthorized")
        )

    async def check_jwt_forged(self, transcript: Transcript) -> str:
        key = (self.options.jwt_secret or "") + "-forged-key-of-at-least-32-bytes"
        return await self._refused(transcript, self.token(key=key), ("unauthorized",))

    async def check_ext(self, transcript: Transcript) -> str:
        async with self.connect(transcript, subprotocols=(EXT,)) as client:
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

    async def check_restore(self, transcript: Transcript) -> str:
        identifier = self.subscribable()
        assert identifier is not None
        async with self.connect(transcript, subprotocols=(EXT,)) as client:
            welcome = await client.welcome()
            sid = welcome.get("sid")
            await client.confirmed(identifier)
        async with self.connect(transcript, subprotocols=(EXT,), sid=str(sid)) as client:
            welcome = await client.welcome()
            if welcome.get("restored") is not True:
                raise CheckFailed(f"?sid= did not restore the session: {compact(welcome):.120}")
            if identifier not in (welcome.get("restored_ids") or []):
                raise CheckFailed("restored_ids does not list the subscription")
        return "?sid= restores the session and its subscription (restored_ids)"

    async def check_history(self, transcript: Transcript) -> str:
        secret = self.options.turbo_key
        assert secret is not None
        stream = _stream()
        identifier = turbo_identifier(stream, secret)
        since = int(time.time()) - 60
        await self.broadcast(transcript, stream, {"check": "history"})
        async with self.session(transcript, subprotocols=(EXT,)) as client:
            await client.confirmed(identifier, history={"since": since})
            message = await client.expect(
                "history (the message broadcast before subscribing)",
                lambda m: m.get("identifier") == identifier and "message" in m,
            )
            if message.get("message") != {"check": "history"}:
                raise CheckFailed(f"unexpected history message: {compact(message):.120}")
            if not {"stream_id", "epoch", "offset"} <= message.keys():
                raise CheckFailed("the replayed message has no stream_id/epoch/offset")
            answer = await client.expect(
                "confirm_history",
                lambda m: m.get("type") in ("confirm_history", "reject_history"),
            )
            if answer.get("type") != "confirm_history":
                raise CheckFailed("the history request got reject_history")
        return "a message published before subscribing is replayed with its offset, then confirmed"

    async def check_pubsub(self, transcript: Transcript) -> str:
        secret = self.options.streams_key
        assert secret is not None
        stream = _stream()
        async with self.session(transcript) as client:
            try:
                reply = await client.subscribe(pubsub_identifier(stream, secret))
            except Closed:
                raise
            except CheckFailed as exc:
                raise CheckFailed(f"{exc} ($pubsub is AnyCable's channel)") from None
            if reply.get("type") != "confirm_subscription":
                raise CheckFailed(f"a signed $pubsub stream got {reply.get('type')}")
            reply = await client.subscribe(pubsub_identifier(stream, secret + "-forged"))
            if reply.get("type") != "reject_subscription":
                raise CheckFailed("a $pubsub stream signed with another key was confirmed")
        return "signed $pubsub stream confirmed, forged one rejected"

    async def check_whisper(self, transcript: Transcript) -> str:
        secret = self.options.streams_key
        assert secret is not None
        identifier = pubsub_identifier(_stream(), secret)
        nonce = secrets.token_hex(6)
        async with self.session(transcript) as sender, self.session(transcript) as peer:
            await sender.confirmed(identifier)
            await peer.confirmed(identifier)
            await sender.send(
                {"command": "whisper", "identifier": identifier, "data": {"check": nonce}}
            )
            try:
                message = await peer.expect(
                    "whisper at the other subscriber",
                    lambda m: m.get("identifier") == identifier and "message" in m,
                )
            except CheckFailed as exc:
                raise CheckFailed(
                    f"{exc} (the server was said to allow whisper on signed streams)"
                ) from None
            if message["message"] != {"check": nonce}:
                raise CheckFailed(f"unexpected whisper: {compact(message):.120}")
            echoed = [
                m
                for m in await sender.messages_for(min(0.5, self.options.timeout))
                if m.get("identifier") == identifier and "message" in m
            ]
            if echoed:
                raise CheckFailed("the whisper came back to its sender")
        return "the other subscriber got the whisper, the sender did not"

    async def check_presence(self, transcript: Transcript) -> str:
        secret = self.options.streams_key
        assert secret is not None
        identifier = pubsub_identifier(_stream(), secret)
        member = f"check-{secrets.token_hex(4)}"
        async with self.session(transcript) as joiner, self.session(transcript) as watcher:
            await joiner.confirmed(identifier)
            await watcher.confirmed(identifier)
            await joiner.send(
                {
                    "command": "join",
                    "identifier": identifier,
                    "presence": {"id": member, "info": {"name": "check"}},
                }
            )
            event = await watcher.expect(
                "presence join event",
                lambda m: m.get("type") == "presence" and m.get("identifier") == identifier,
            )
            body = event.get("message") or {}
            if body.get("type") != "join" or body.get("id") != member:
                raise CheckFailed(f"unexpected presence event: {compact(event):.120}")
            await watcher.send({"command": "presence", "identifier": identifier})
            info = await watcher.expect(
                "presence info",
                lambda m: (
                    m.get("type") == "presence" and (m.get("message") or {}).get("type") == "info"
                ),
            )
            records = (info.get("message") or {}).get("records") or []
            if not any(isinstance(r, dict) and r.get("id") == member for r in records):
                raise CheckFailed(f"presence info does not list the member: {compact(info):.120}")
        return "join reached the other subscriber; presence info lists the member"

    async def check_sse(self, transcript: Transcript) -> str:
        secret = self.options.turbo_key
        assert secret is not None
        parts = urlsplit(self.options.url)
        scheme = "https" if self.secure else "http"
        fields = {"turbo_signed_stream_name": sign_stream_name(_stream(), secret)}
        if self.options.jwt_secret:  # browsers cannot set headers on an EventSource
            fields[self.options.jwt_param] = self.token()
        query = urlencode(fields)
        url = urlunsplit((scheme, parts.netloc, self.options.sse_path, query, ""))
        headers = [("origin", self.options.origin_header), ("accept", "text/event-stream")]
        wanted = {"welcome", "confirm_subscription"}
        status, response_headers, body = await self.http_request(
            "GET",
            url,
            transcript,
            headers,
            until=lambda text: all(f"event: {name}" in text for name in wanted),
        )
        if status != 200:
            raise CheckFailed(f"GET {self.options.sse_path} answered {status} (--sse_path?)")
        kind = response_headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            raise CheckFailed(f"content-type {kind!r}, not text/event-stream")
        text = body.decode("utf-8", "replace")
        missing = [name for name in sorted(wanted) if f"event: {name}" not in text]
        if missing:
            raise CheckFailed(f"no {' / '.join(missing)} event")
        return f"GET {self.options.sse_path}: 200 text/event-stream, welcome and confirm events"

    async def check_shutdown(self, transcript: Transcript) -> str:
        """--shutdown_command stops the server: a connected client is told server_restart."""
        command = self.options.shutdown_command
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

        async with self.session(transcript) as client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop)
                try:
                    message: dict[str, Any] | CheckFailed = await client.expect(
                        "disconnect message before the server went away",
                        lambda m: m.get("type") == "disconnect",
                        within=self.options.timeout * 2,
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

    # -- HTTP ---------------------------------------------------------------------------

    async def http_request(
        self,
        method: str,
        url: str,
        transcript: Transcript,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        until: Callable[[str], bool] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 request (h11 over trio): (status, headers, body).

        With ``until``, stop reading the body once its text satisfies ``until`` (streams);
        bounded by ``--timeout``.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CheckFailed(f"not an http:// or https:// URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        all_headers = [
            ("host", parts.netloc),
            ("content-length", str(len(body))),
            ("connection", "close"),
            *headers,
        ]
        transcript.send(f"{method} {target}" + (f" {body[:200]!r}" if body else ""))
        timeout = self.options.timeout
        with trio.move_on_after(timeout):
            stream = await self._open_stream(parts.hostname, port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                data = conn.send(h11.Request(method=method, target=target, headers=all_headers))
                data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                status = 0
                response_headers: dict[str, str] = {}
                chunks: list[bytes] = []
                while True:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError as exc:
                        if "_SWITCH_UPGRADE" in str(exc):
                            transcript.receive("HTTP 101")
                            raise CheckFailed(
                                f"{method} {parts.path} (no upgrade asked for) was answered 101"
                            ) from None
                        raise CheckFailed(f"invalid HTTP answer: {exc}") from None
                    if event is h11.NEED_DATA:
                        conn.receive_data(bytes(await stream.receive_some(65536)))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        response_headers = {k.decode(): v.decode() for k, v in event.headers}
                        transcript.receive(f"HTTP {status}")
                    elif isinstance(event, h11.Data):
                        chunks.append(bytes(event.data))
                        text = b"".join(chunks).decode("utf-8", "replace")
                        if until is not None and status == 200 and until(text):
                            break
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
                if chunks:
                    transcript.receive(b"".join(chunks)[:EVIDENCE_CHARS].decode("utf-8", "replace"))
                return status, response_headers, b"".join(chunks)
        if until is not None:
            raise CheckFailed(f"{method} {parts.path}: not all expected events within {timeout:g}s")
        raise CheckFailed(f"{method} {parts.path}: no whole answer within {timeout:g}s")


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
        compact({"command": "subscribe", "identifier": compact({"channel": f"Bad{i}"})})
        for i in range(20)
    ],
]

BAD_FRAMES: list[tuple[str, bytes]] = [
    ("RSV1 without extension", client_frame(0x1, b"{}", rsv=4)),
    ("reserved opcode 0x3", client_frame(0x3, b"x")),
    ("reserved control opcode 0xB", client_frame(0xB, b"")),
    ("unmasked frame", b"\x81\x02{}"),
    ("ping with 126-byte payload", client_frame(0x9, b"p" * 126)),
    ("fragmented ping", client_frame(0x9, b"p", fin=False)),
    ("continuation without start", client_frame(0x0, b"x")),
    ("invalid UTF-8 text", client_frame(0x1, b"\xff\xfe\xfd")),
    ("close with code 999", client_frame(0x8, struct.pack("!H", 999))),
    ("close with a 1-byte payload", client_frame(0x8, b"\x03")),
    ("64-bit length with the top bit set", b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"\0" * 4),
]


# -- the checks, in report order ------------------------------------------------------------


def _needs_subscribable(options: Options) -> str | None:
    if options.channel or options.turbo_key:
        return None
    return "needs --channel or --turbo_streams_secret (a channel the server confirms)"


def _needs_turbo(options: Options) -> str | None:
    return None if options.turbo_key else "needs --turbo_streams_secret (or --secret)"


def _needs_broadcast(options: Options) -> str | None:
    if not options.broadcast_url:
        return "needs --broadcast_url (and --turbo_streams_secret)"
    return _needs_turbo(options)


def _needs_channel(options: Options) -> str | None:
    return None if options.channel else "needs --channel"


def _needs_action(options: Options) -> str | None:
    return None if options.channel and options.action else "needs --channel and --action"


def _needs_two_keys(options: Options) -> str | None:
    if options.channel:
        return None if options.params else "needs --params (an identifier with two keys)"
    return _needs_turbo(options)


def _needs_fuzz(options: Options) -> str | None:
    return None if options.fuzz else "needs --fuzz"


def _needs_jwt(options: Options) -> str | None:
    return None if options.jwt_secret else "needs --jwt_secret (or --secret)"


def _needs_whisper(options: Options) -> str | None:
    if not options.streams_whisper:
        return "needs --streams_whisper (whisper on signed streams is off by default)"
    return _needs_streams(options)


def _needs_shutdown(options: Options) -> str | None:
    return None if options.shutdown_command else "needs --shutdown_command (it stops the server)"


def _needs_streams(options: Options) -> str | None:
    return None if options.streams_key else "needs --streams_secret (or --secret)"


def _needs_history(options: Options) -> str | None:
    return _needs_broadcast(options)


CHECKS: tuple[Check, ...] = (
    Check("handshake", ACTIONCABLE, Checker.check_handshake, requires=(), waits=2),
    Check("subprotocol", ACTIONCABLE, Checker.check_subprotocol, requires=("handshake",)),
    Check("welcome", ACTIONCABLE, Checker.check_welcome, requires=("handshake",)),
    Check("no subprotocol offered", ACTIONCABLE, Checker.check_no_subprotocol, ("handshake",)),
    Check("plain HTTP to the cable path", ACTIONCABLE, Checker.check_plain_http, ("handshake",)),
    Check("ping cadence", ACTIONCABLE, Checker.check_pings, waits=3, pings=3),
    Check(
        "garbage tolerance", ACTIONCABLE, Checker.check_garbage, waits=4, pings=2, uses_channel=True
    ),
    Check(
        "commands before welcome",
        ACTIONCABLE,
        Checker.check_before_welcome,
        needs=_needs_subscribable,
        uses_channel=True,
    ),
    Check("signed subscribe", ACTIONCABLE, Checker.check_signed_subscribe, needs=_needs_turbo),
    Check(
        "identifier key order",
        ACTIONCABLE,
        Checker.check_key_order,
        needs=_needs_two_keys,
        uses_channel=True,
    ),
    Check(
        "duplicate subscribe",
        ACTIONCABLE,
        Checker.check_duplicate,
        needs=_needs_subscribable,
        uses_channel=True,
    ),
    Check("channel subscribe", ACTIONCABLE, Checker.check_channel, needs=_needs_channel),
    Check(
        "message/perform",
        ACTIONCABLE,
        Checker.check_perform,
        requires=("channel subscribe",),
        needs=_needs_action,
    ),
    Check("broadcast round trip", ACTIONCABLE, Checker.check_broadcast, needs=_needs_broadcast),
    Check(
        "unsubscribe stops broadcasts",
        ACTIONCABLE,
        Checker.check_unsubscribe,
        requires=("broadcast round trip",),
        needs=_needs_broadcast,
    ),
    Check(
        "fuzz: malformed commands",
        ACTIONCABLE,
        Checker.check_fuzz_commands,
        needs=_needs_fuzz,
        waits=6,
        pings=4,
        uses_channel=True,
    ),
    Check(
        "fuzz: malformed frames",
        ACTIONCABLE,
        Checker.check_fuzz_frames,
        needs=_needs_fuzz,
        waits=3 * len(BAD_FRAMES) + 8,
        pings=4,
        uses_channel=True,
    ),
    Check("unknown channel rejected", ANYCABLE, Checker.check_unknown_channel),
    Check("JWT valid", ANYCABLE, Checker.check_jwt_valid, ("handshake",), _needs_jwt),
    Check("JWT expired", ANYCABLE, Checker.check_jwt_expired, ("JWT valid",), _needs_jwt),
    Check("JWT forged", ANYCABLE, Checker.check_jwt_forged, ("JWT valid",), _needs_jwt),
    Check("ext: sid and pong", ANYCABLE, Checker.check_ext, ("handshake",)),
    Check(
        "ext: session restore",
        ANYCABLE,
        Checker.check_restore,
        requires=("ext: sid and pong",),
        needs=_needs_subscribable,
        uses_channel=True,
    ),
    Check(
        "ext: history",
        ANYCABLE,
        Checker.check_history,
        requires=("ext: sid and pong", "broadcast round trip"),
        needs=_needs_history,
    ),
    Check("signed $pubsub", ANYCABLE, Checker.check_pubsub, needs=_needs_streams),
    Check("whisper", ANYCABLE, Checker.check_whisper, ("signed $pubsub",), _needs_whisper),
    Check("presence", ANYCABLE, Checker.check_presence, ("signed $pubsub",), _needs_streams),
    Check("SSE", ANYCABLE, Checker.check_sse, ("handshake",), _needs_turbo),
    Check(
        "server_restart on shutdown",
        ANYCABLE,
        Checker.check_shutdown,
        needs=_needs_shutdown,
        waits=4,
        last=True,
    ),
)
