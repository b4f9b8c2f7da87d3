"""The checker's WebSocket client (wsproto over trio), its errors and the evidence it keeps."""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    TextMessage,
)
from wsproto.utilities import ProtocolError

from ..auth.signed_streams import sign_stream_name

V1 = "actioncable-v1-json"
EXT = "actioncable-v1-ext-json"
RAILS_OFFER = (V1, "actioncable-unsupported")
TURBO_CHANNEL = "Turbo::StreamsChannel"
PUBSUB_CHANNEL = "$pubsub"
#: How much evidence a result keeps (messages each way, characters per message)
EVIDENCE_MESSAGES, EVIDENCE_CHARS = 12, 300


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says what was seen."""


class Unusable(CheckFailed):
    """The server cannot be reached or refuses the WebSocket handshake (exit status 3)."""


class HandshakeRefused(Unusable):
    """The server answered the WebSocket upgrade with an HTTP status other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        text = body.decode("utf-8", "replace").strip()
        super().__init__(
            f"the WebSocket handshake was refused: HTTP {status}"
            + (f" ({text[:80]!r})" if text else "")
        )
        self.status = status


class Closed(CheckFailed):
    """The server closed the WebSocket (or the TCP connection)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        said = "without a close frame" if code is None else f"code {code}"
        super().__init__(
            f"the server closed the connection ({said}{f', {reason!r}' if reason else ''})"
        )
        self.code = code


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def clip(text: str) -> str:
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 3] + "..."


def turbo_identifier(stream: str, secret: str) -> str:
    """The identifier turbo-rails' ``<turbo-cable-stream-source>`` subscribes with."""
    return compact(
        {"channel": TURBO_CHANNEL, "signed_stream_name": sign_stream_name(stream, secret)}
    )


def pubsub_identifier(stream: str, secret: str) -> str:
    """AnyCable's signed ``$pubsub`` identifier."""
    return compact(
        {"channel": PUBSUB_CHANNEL, "signed_stream_name": sign_stream_name(stream, secret)}
    )


class Transcript:
    """What one check sent and received (the evidence of a failure)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.received: list[str] = []

    def send(self, text: str) -> None:
        if len(self.sent) < EVIDENCE_MESSAGES:
            self.sent.append(clip(text))

    def receive(self, text: str) -> None:
        self.received.append(clip(text))
        del self.received[: -EVIDENCE_MESSAGES or None]


class Client:
    """One WebSocket client connection (wsproto over a trio stream).

    Server pings (WebSocket and Action Cable ``ping`` messages) are answered or recorded with
    their arrival times, and skipped by :meth:`recv`.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        subprotocol: str | None,
        transcript: Transcript,
        timeout: float,
    ) -> None:
        self.stream = stream
        self.ws = ws
        self.subprotocol = subprotocol
        self.transcript = transcript
        self.timeout = timeout
        self.pings: list[tuple[float, object]] = []
        self._pending: list[str] = []
        self._text: list[str] = []
        self._closed: Closed | None = None

    async def send(self, message: object) -> None:
        text = message if isinstance(message, str) else None
        if isinstance(message, bytes):
            data = self.ws.send(BytesMessage(data=message))
            self.transcript.send(message.decode("utf-8", "replace"))
        else:
            text = text if text is not None else compact(message)
            data = self.ws.send(TextMessage(data=text))
            self.transcript.send(text)
        await self.send_raw(data)

    async def send_raw(self, data: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = Closed(None)
            raise self._closed from None

    async def _next_text(self) -> str:
        """The next whole text (or binary) message; raises :class:`Closed` at the end."""
        while not self._pending:
            if self._closed is not None:
                raise self._closed
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            try:
                self.ws.receive_data(bytes(data) if data else None)
                events = list(self.ws.events())
            except ProtocolError as exc:
                self._closed = Closed(None, f"invalid WebSocket data: {exc}")
                raise self._closed from None
            await self.handle(events)
            if not data and self._closed is None:
                self.transcript.receive("<TCP connection closed>")
                self._closed = Closed(None)
        return self._pending.pop(0)

    async def handle(self, events: Sequence[object]) -> None:
        """Take in wsproto events: whole messages queued, pings and closes answered."""
        for event in events:
            if isinstance(event, TextMessage | BytesMessage):
                chunk = event.data
                self._text.append(
                    chunk if isinstance(chunk, str) else bytes(chunk).decode("utf-8", "replace")
                )
                if event.message_finished:
                    self._pending.append("".join(self._text))
                    self._text.clear()
            elif isinstance(event, Ping):
                await self._quietly_send(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.transcript.receive(f"<close {event.code} {event.reason or ''}>".strip())
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._quietly_send(self.ws.send(event.response()))
                self._closed = Closed(event.code, event.reason or "")

    async def _quietly_send(self, data: bytes) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(data)

    async def _message(self) -> dict[str, Any]:
        raw = await self._next_text()
        self.transcript.receive(raw)
        try:
            message = json.loads(raw)
        except ValueError:
            raise CheckFailed(f"the server sent a non-JSON message: {raw!r:.80}") from None
        if not isinstance(message, dict):
            raise CheckFailed(f"the server sent a non-object message: {raw!r:.80}")
        return message

    async def recv(self, within: float | None = None) -> dict[str, Any]:
        """The next message other than a ping (``TimeoutError`` after ``within`` s)."""
        with trio.move_on_after(self.timeout if within is None else within):
            while True:
                message = await self._message()
                if message.get("type") == "ping":
                    self.pings.append((trio.current_time(), message.get("message")))
                    continue
                return message
        raise TimeoutError

    async def expect(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], within: float | None = None
    ) -> dict[str, Any]:
        """Read until a message satisfies ``predicate``; fail after ``within`` s."""
        deadline = trio.current_time() + (self.timeout if within is None else within)
        while True:
            try:
                message = await self.recv(max(0.0, deadline - trio.current_time()))
            except TimeoutError:
                raise CheckFailed(f"no {what}") from None
            if predicate(message):
                return message

    async def wait_pings(
        self, count: int, within: float, *, strict: bool = True
    ) -> list[tuple[float, object]]:
        """Wait (at most ``within`` s) until ``count`` more pings arrived; the pings so far.

        ``strict``: any other message is a failure (the session is meant to be idle).
        """
        wanted = len(self.pings) + count
        with trio.move_on_after(within):
            while len(self.pings) < wanted:
                message = await self._message()
                if message.get("type") == "ping":
                    self.pings.append((trio.current_time(), message.get("message")))
                elif strict:
                    raise CheckFailed(f"unexpected message while idle: {compact(message):.120}")
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
        try:
            message = await self.recv()
        except TimeoutError:
            raise CheckFailed(f"no welcome within {self.timeout:g}s") from None
        if message.get("type") != "welcome":
            raise CheckFailed(f"the first message is not a welcome: {compact(message):.120}")
        return message

    async def subscribe(self, identifier: str, **extra: object) -> dict[str, Any]:
        """Subscribe; the confirm or reject for exactly this identifier."""
        await self.send({"command": "subscribe", "identifier": identifier, **extra})
        return await self.expect(
            f"confirm_subscription/reject_subscription for {identifier}",
            lambda m: (
                m.get("type") in ("confirm_subscription", "reject_subscription")
                and m.get("identifier") == identifier
            ),
        )

    async def confirmed(self, identifier: str, **extra: object) -> None:
        reply = await self.subscribe(identifier, **extra)
        if reply.get("type") != "confirm_subscription":
            raise CheckFailed(f"the subscription to {identifier} was rejected")

    async def is_closed(self, within: float) -> bool:
        """Whether the server closes the connection within ``within`` s."""
        with trio.move_on_after(within):
            try:
                while True:
                    await self._next_text()
            except Closed:
                return True
        return False

    async def close(self) -> None:
        with trio.move_on_after(min(1.0, self.timeout)) as scope:
            scope.shield = True
            if self._closed is None and self.ws.state is ConnectionState.OPEN:
                await self._quietly_send(self.ws.send(CloseConnection(code=1000)))
            await self.stream.aclose()


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
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
