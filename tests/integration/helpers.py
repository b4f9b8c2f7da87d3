"""Real-socket helpers: start a server on 127.0.0.1:0, speak HTTP and WebSocket to it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from cableway.auth.signed_streams import sign_stream_name
from cableway.config import Config
from cableway.transport.server import Server

JWT_KEY = "jwt-secret-of-at-least-thirty-two-bytes!"
TURBO_KEY = "s3Krit"
BROADCAST_KEY = "broadcast-key"

BASE = Config(
    host="127.0.0.1",
    port=0,
    jwt_secret=JWT_KEY,
    turbo_streams=True,
    turbo_streams_secret=TURBO_KEY,
    streams_secret="streams-secret",
    broadcast_key=BROADCAST_KEY,
    http_broadcast_port=0,
    broker="none",  # plain delivery; reliable streams are tested with broker="memory"
)


def config(**changes: Any) -> Config:
    return dataclasses.replace(BASE, **changes)


@asynccontextmanager
async def running(cfg: Config = BASE) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: Server(cfg).run(task_status=task_status)
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def turbo_identifier(stream: str, secret: str = TURBO_KEY) -> str:
    return json.dumps(
        {
            "channel": "Turbo::StreamsChannel",
            "signed_stream_name": sign_stream_name(stream, secret),
        },
        separators=(",", ":"),
    )


@asynccontextmanager
async def cable(
    server: Server,
    query: str = "",
    subprotocols: list[str] | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> AsyncIterator[WebSocketConnection]:
    url = f"ws://127.0.0.1:{server.main_port}/cable{query}"
    async with open_websocket_url(
        url,
        subprotocols=subprotocols
        if subprotocols is not None
        else ["actioncable-v1-json", "actioncable-unsupported"],
        extra_headers=headers,
    ) as ws:
        try:
            yield ws
        finally:
            # trio-websocket 0.12's client never closes its TCP stream after a
            # server-initiated close handshake (its reader just stops); close it here
            # so the test run does not leak sockets.
            await ws._stream.aclose()


async def recv_json(ws: WebSocketConnection, *, skip_pings: bool = True) -> dict[str, Any]:
    """Next message, skipping pings; bounded so a missing message fails the test."""
    with trio.fail_after(5):
        while True:
            message = json.loads(await ws.get_message())
            if not (skip_pings and message.get("type") == "ping"):
                return message  # type: ignore[no-any-return]


async def close_code(ws: WebSocketConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    with trio.fail_after(5):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            return exc.reason.code


async def welcome(ws: WebSocketConnection) -> str:
    message = await recv_json(ws)
    assert message["type"] == "welcome"
    return str(message["sid"])


async def subscribe(ws: WebSocketConnection, identifier: str) -> dict[str, Any]:
    await ws.send_message(json.dumps({"command": "subscribe", "identifier": identifier}))
    return await recv_json(ws)


@dataclasses.dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def http(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    """One HTTP/1.1 request over a fresh connection."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            hdrs = [
                ("host", f"127.0.0.1:{port}"),
                ("content-length", str(len(body))),
                *(headers or []),
            ]
            await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=hdrs)))
            if body:
                await stream.send_all(conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            response: h11.Response | None = None
            chunks: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            assert response is not None
            return HttpResponse(
                response.status_code,
                {k.decode(): v.decode() for k, v in response.headers},
                b"".join(chunks),
            )


async def broadcast(
    server: Server, payload: object, *, key: str | None = BROADCAST_KEY
) -> HttpResponse:
    headers = [("authorization", f"Bearer {key}")] if key else []
    headers.append(("content-type", "application/json"))
    return await http(
        server.broadcast_port,
        "POST",
        server.config.http_broadcast_path,
        json.dumps(payload).encode(),
        headers,
    )


class SseClient:
    """A streaming HTTP client that parses ``text/event-stream`` like a browser does."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self._buffer = ""
        self._events: list[dict[str, str]] = []
        self.ended = False

    async def _next(self) -> h11.Event | type[h11.NEED_DATA]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(65536)
            self.conn.receive_data(bytes(data))

    async def start(self) -> None:
        with trio.fail_after(5):
            while True:
                event = await self._next()
                if isinstance(event, h11.Response):
                    self.status = event.status_code
                    self.headers = {k.decode(): v.decode() for k, v in event.headers}
                    return

    async def read_body(self) -> bytes:
        with trio.fail_after(5):
            chunks = []
            while True:
                event = await self._next()
                if isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                else:
                    break
        return b"".join(chunks)

    async def event(self, *, skip_pings: bool = True) -> dict[str, str] | None:
        """The next event as {"event", "data", "id"...}; None when the stream ended."""
        with trio.fail_after(5):
            while True:
                while self._events:
                    ev = self._events.pop(0)
                    if not (skip_pings and ev.get("event") == "ping"):
                        return ev
                if self.ended:
                    return None
                event = await self._next()
                if isinstance(event, h11.Data):
                    self._feed(bytes(event.data).decode())
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    self.ended = True

    def _feed(self, text: str) -> None:
        self._buffer += text
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            fields: dict[str, str] = {}
            data_lines = []
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data_lines.append(value)
                else:
                    fields[name] = value
            if data_lines:
                fields["data"] = "\n".join(data_lines)
            self._events.append(fields)


@asynccontextmanager
async def sse(
    server: Server,
    target: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> AsyncIterator[SseClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
    async with stream:
        client = SseClient(stream)
        hdrs = [("host", "127.0.0.1"), *(headers or [])]
        if method == "POST":
            hdrs.append(("content-length", str(len(body))))
        await stream.send_all(
            client.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        )
        if body:
            await stream.send_all(client.conn.send(h11.Data(data=body)))
        if method == "POST":
            await stream.send_all(client.conn.send(h11.EndOfMessage()))
        await client.start()
        yield client
