"""The reference: the quick Turbo Streams server anyone would write with ``websockets``.

asyncio + the ``websockets`` library (>= 13, the ``websockets.asyncio`` API), speaking the
same minimal Action Cable protocol as Cableway: ``welcome`` on connect, a ``ping`` every
3 s (``?pi=0`` turns it off, as in Cableway), signed ``Turbo::StreamsChannel`` (and public
``$pubsub``) subscriptions answered with ``confirm_subscription``, and ``POST
/_broadcast`` (one publication or an array) fanned out with ``websockets.broadcast``.

``websockets`` only parses GET requests, so ``/_broadcast`` is served by a tiny asyncio
HTTP/1.1 handler on a second port (Cableway too serves broadcasts on their own port in
the benchmark). WebSocket-level keepalive pings are off (``ping_interval=None``): Action
Cable has its own pings, and the benchmark clients do not answer protocol pings.

Usage: python bench/reference_server.py --port P --broadcast-port B --secret S
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import signal
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

# stream -> identifier -> connections
SUBSCRIBERS: dict[str, dict[str, set[ServerConnection]]] = {}
SECRET = b""


def verify(signed: str) -> str | None:
    data, _, digest = signed.rpartition("--")
    want = hmac.new(SECRET, data.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, digest):
        return None
    try:
        value = json.loads(base64.b64decode(data, validate=True))
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def resolve(identifier: str) -> str | None:
    try:
        params = json.loads(identifier)
    except ValueError:
        return None
    if not isinstance(params, dict):
        return None
    if params.get("channel") == "Turbo::StreamsChannel":
        signed = params.get("signed_stream_name")
        return verify(signed) if isinstance(signed, str) else None
    if params.get("channel") == "$pubsub":
        name = params.get("stream_name")
        return name if isinstance(name, str) and name else None
    return None


async def pinger(ws: ServerConnection, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await ws.send(json.dumps({"type": "ping", "message": int(time.time())}))


async def handler(ws: ServerConnection) -> None:
    query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
    interval = float(query.get("pi", ["3"])[0] or 3)
    await ws.send(json.dumps({"type": "welcome", "sid": uuid.uuid4().hex}))
    ping_task = asyncio.create_task(pinger(ws, interval)) if interval > 0 else None
    mine: list[tuple[str, str]] = []
    try:
        async for raw in ws:
            try:
                command = json.loads(raw)
                name, identifier = command["command"], command["identifier"]
            except (ValueError, KeyError, TypeError):
                continue
            if name == "subscribe":
                stream = resolve(identifier)
                if stream is None:
                    await ws.send(
                        json.dumps({"type": "reject_subscription", "identifier": identifier})
                    )
                    continue
                SUBSCRIBERS.setdefault(stream, {}).setdefault(identifier, set()).add(ws)
                mine.append((stream, identifier))
                await ws.send(
                    json.dumps({"type": "confirm_subscription", "identifier": identifier})
                )
            elif name == "unsubscribe":
                for stream, ident in list(mine):
                    if ident == identifier:
                        SUBSCRIBERS.get(stream, {}).get(ident, set()).discard(ws)
                        mine.remove((stream, ident))
    except ConnectionClosed:
        pass  # clients of the benchmark leave with a reset
    finally:
        if ping_task is not None:
            ping_task.cancel()
        for stream, ident in mine:
            groups = SUBSCRIBERS.get(stream, {})
            groups.get(ident, set()).discard(ws)
            if not groups.get(ident, True):
                del groups[ident]
            if not groups:
                SUBSCRIBERS.pop(stream, None)


def publish(publication: dict[str, object]) -> None:
    stream, data = publication.get("stream"), publication.get("data")
    if not isinstance(stream, str) or not isinstance(data, str):
        return
    try:
        message = json.loads(data)
    except ValueError:
        message = data
    for identifier, connections in SUBSCRIBERS.get(stream, {}).items():
        broadcast(connections, json.dumps({"identifier": identifier, "message": message}))


async def http_broadcast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``POST /_broadcast`` with keep-alive (and pipelining, since it reads in order)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            if lines[0].startswith("POST /_broadcast"):
                try:
                    value = json.loads(body)
                except ValueError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    continue
                for publication in value if isinstance(value, list) else [value]:
                    if isinstance(publication, dict):
                        publish(publication)
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    global SECRET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broadcast-port", type=int, required=True)
    parser.add_argument("--secret", default="bench-secret")
    args = parser.parse_args()
    SECRET = args.secret.encode()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    http = await asyncio.start_server(http_broadcast, "127.0.0.1", args.broadcast_port)
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        subprotocols=["actioncable-v1-json"],  # type: ignore[list-item]
        ping_interval=None,
        compression=None,
        backlog=4096,
    ):
        print(f"reference listening on {args.port} (broadcasts on {args.broadcast_port})")
        await stop
    http.close()


if __name__ == "__main__":
    asyncio.run(main())
