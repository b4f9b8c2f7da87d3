"""What the checks use to talk to the server: WebSocket connections (bounded handshakes,
sessions that have been welcomed), JWTs, HTTP requests and broadcasts."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
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

from ...auth.jwt import encode_token
from .client import (
    EVIDENCE_CHARS,
    RAILS_OFFER,
    CheckFailed,
    Client,
    HandshakeRefused,
    Transcript,
    Unusable,
    compact,
    turbo_identifier,
)
from .model import ANYCABLE, PROFILES, Options, new_stream


class Harness:
    """One server's connections and requests, as the checks open them."""

    def __init__(self, options: Options) -> None:
        self.options = options
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

    def subscribable(self) -> str | None:
        """An identifier the server confirms: the application channel, else a Turbo stream."""
        options = self.options
        if options.channel:
            return compact({"channel": options.channel, **options.params})
        if options.turbo_key:
            return turbo_identifier(new_stream(), options.turbo_key)
        return None

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
