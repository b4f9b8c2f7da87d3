"""Echo mode of the real WebSocket driver, for Autobahn|Testsuite (test-only).

Run: ``python fuzz/autobahn/echo_server.py --port 9001`` (loopback only). It lives with the
conformance suite, outside the shipped ``cableway`` package: no ``cableway`` command or
configuration can start it.

What is real and what is not:

* real: the h11 request reader of the front door (:class:`~.httpconn.Conn`, so the same
  head limit and handshake deadline), :class:`~.ws.WebSocketSession` and its
  :class:`~.session.Session` base (wsproto, the reader task, the bounded outbox and its
  writer task with a write timeout, the message-size check that closes with 1009, the
  ping/close handling), the same permessage-deflate negotiation
  (:func:`~cableway.protocol.handshake.negotiate_deflate`, as with
  ``--enable_ws_compression``) and the same frames (the session's :meth:`encode` path:
  :func:`~cableway.protocol.wsframe.text_frame` or the shared compressor);
* replaced: the Action Cable core. :class:`EchoCore` queues every complete message
  and :class:`EchoSession` sends it back as one frame of the same type;
* duplicated: the upgrade-request checks and the ``101`` answer (about twenty lines of
  ``http._websocket``, which builds an Action Cable session right after them).

Compression is on (Autobahn's cases 12.* and 13.* offer it; the others do not).

Autobahn sends messages of up to 16 MiB (cases 9.1.6/9.2.6), so the echo server runs
with ``max_message_size`` = 16 MiB; the production default (64 KiB) is tested elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import h11
import trio
from wsproto.connection import ConnectionState
from wsproto.utilities import generate_accept_token

from cableway.config import Config
from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.handshake import Deflate, negotiate_deflate
from cableway.protocol.wsframe import data_frame, deflater
from cableway.transport.httpconn import Conn, Request, bad_request
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

__all__ = ["ECHO_MAX_MESSAGE_SIZE", "EchoCore", "EchoSession", "echo_config", "main", "serve_echo"]

log = logging.getLogger("cableway.echo")

#: Largest message Autobahn's group 9 sends.
ECHO_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def echo_config(max_message_size: int = ECHO_MAX_MESSAGE_SIZE) -> Config:
    """The settings the echo driver runs with (loopback, large messages)."""
    return Config(
        host="127.0.0.1",
        port=0,
        max_message_size=max_message_size,
        # room for one echoed maximal message plus framing and control frames
        ws_max_pending_size=4 * max_message_size,
        ws_write_timeout=10.0,
        broadcast_adapters=(),
        broker="none",
        sse=False,
    )


class EchoCore(CableConnection):
    """A session core that keeps every complete client message for echoing.

    No welcome, no pings (``ping_interval=0``), no commands: the state stays ``NEW``
    and :meth:`receive_message` only records the message.
    """

    def __init__(self) -> None:
        super().__init__(sid="echo", settings=SessionSettings(ping_interval=0.0), now=0.0)
        self.replies: list[str | bytes] = []

    def receive_message(self, message: str | bytes, *, now: float) -> bool:
        self.replies.append(message)
        return False  # not an Action Cable command


class EchoSession(WebSocketSession):
    """:class:`WebSocketSession` whose core echoes: each message goes back as it came.

    Only :meth:`apply` (core events -> outbox) differs: it frames the recorded messages.
    """

    def __init__(
        self,
        server: Server,
        stream: trio.abc.Stream,
        *,
        trailing_data: bytes,
        deflate: Deflate | None = None,
    ) -> None:
        self.echo = EchoCore()
        super().__init__(server, stream, self.echo, trailing_data=trailing_data, deflate=deflate)

    def apply(self) -> None:
        replies, self.echo.replies = self.echo.replies, []
        for message in replies:
            if self.ws.state is not ConnectionState.OPEN:
                return
            binary = isinstance(message, bytes)
            payload = message if isinstance(message, bytes) else message.encode("utf-8")
            if self.deflate is not None:
                frame = deflater(self.deflate.server_max_window_bits).frame(payload, binary=binary)
            else:
                frame = data_frame(payload, binary=binary)
            if not self._admit():
                self.outbox.drop_unstarted()
                self._close_transport(1008, "too slow")
                self._closing = True
                return
            self._send_control(frame)


async def serve_echo(server: Server, stream: trio.abc.Stream) -> None:
    """Serve one TCP connection: one WebSocket upgrade, then echo; never raises."""
    conn = Conn(stream, server.max_header_bytes)
    upgraded = False
    event: object = None
    try:
        with trio.move_on_after(server.handshake_timeout):
            event = await conn.next_event()
        if not isinstance(event, h11.Request):
            return
        request = Request(event)
        key = request.headers.get("sec-websocket-key")
        if (
            request.method != "GET"
            or "websocket" not in request.headers.get("upgrade", "").lower()
            or "upgrade" not in [t.lower() for t in request.header_list("connection")]
            or not key
            or request.headers.get("sec-websocket-version") != "13"
        ):
            await conn.respond(
                400, b"Bad Request", headers=[(b"sec-websocket-version", b"13")], close=True
            )
            return
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", generate_accept_token(key.encode("latin-1"))),
        ]
        deflate = negotiate_deflate(request.headers.get("sec-websocket-extensions", ""))
        if deflate is not None:
            headers.append((b"sec-websocket-extensions", deflate.response.encode()))
        await conn.send(h11.InformationalResponse(status_code=101, headers=headers))
        trailing, _closed = conn.h11.trailing_data
        upgraded = True
        session = EchoSession(server, stream, trailing_data=bytes(trailing), deflate=deflate)
        await session.run()
    except h11.RemoteProtocolError as exc:
        await bad_request(conn, exc.error_status_hint)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        pass
    finally:
        if not upgraded:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()


async def run_echo(
    port: int,
    *,
    max_message_size: int = ECHO_MAX_MESSAGE_SIZE,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``127.0.0.1:port`` (``0``: any free port) and echo until cancelled.

    ``task_status.started`` receives the bound port.
    """
    server = Server(echo_config(max_message_size))

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await serve_echo(server, stream)
        except Exception:  # a bug must cost one connection, never the server
            log.exception("unexpected error in the echo driver")

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    bound = int(listeners[0].socket.getsockname()[1])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        task_status.started(bound)


def main(argv: Sequence[str] | None = None) -> int:
    """``python fuzz/autobahn/echo_server.py --port P``; prints the bound address."""
    parser = argparse.ArgumentParser(
        prog="echo_server.py",
        description="Echo mode of Cableway's WebSocket driver (for Autobahn; loopback only).",
    )
    parser.add_argument("--port", type=int, default=9001, help="TCP port (0: any free port)")
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=ECHO_MAX_MESSAGE_SIZE,
        help="largest message in bytes before close 1009 (default: 16 MiB)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: run_echo(
                    args.port, max_message_size=args.max_message_size, task_status=task_status
                )
            )
            print(f"echo: listening on 127.0.0.1:{port}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
