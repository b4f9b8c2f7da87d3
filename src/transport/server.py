"""The trio server: listeners, the handler nursery, fan-out and graceful shutdown."""

from __future__ import annotations

import logging
import random
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from ..protocol.broadcast import EncodedBroadcast, Publication, RemoteDisconnect
from ..protocol.channels import StreamPolicy
from ..protocol.handshake import AuthPolicy
from ..protocol.hub import Hub
from ..protocol.limits import Limits
from ..protocol.wsframe import text_frame
from .http import handle_connection
from .ws import WebSocketSession

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Server", "serve"]

log = logging.getLogger("cableway")


class Server:
    """Shared state of one Cableway node and the tasks that serve it.

    Attributes:
        hub: stream -> sessions index used by the fan-out.
        sessions: every live WebSocket session.
        ports: the bound main port and broadcast port (after :meth:`run` started).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.limits = Limits(max_message_size=config.max_message_size)
        self.stream_policy = StreamPolicy(
            streams_secret=config.streams_secret,
            turbo_streams=config.turbo_streams,
            turbo_secret=config.turbo_streams_secret,
            turbo_cleartext=config.turbo_rails_cleartext,
            public_streams=config.public_streams,
        )
        self.auth_policy = AuthPolicy(jwt_secret=config.jwt_secret, enforce_jwt=config.enforce_jwt)
        self.hub: Hub[WebSocketSession] = Hub()
        self.sessions: set[WebSocketSession] = set()
        self.idle_scopes: set[trio.CancelScope] = set()
        self.random = random.Random()
        self.handshake_timeout = 5.0
        self.max_header_bytes = 16384
        self.max_broadcast_body = 1 << 20
        self.main_port = 0
        self.broadcast_port = 0
        self._shared_broadcast = (
            "http" in config.broadcast_adapters and config.http_broadcast_port == config.port
        )
        self._shutdown = trio.Event()
        self.metrics_failed_client_msg = 0
        self.metrics_failed_auths = 0
        self.metrics_failed_broadcast = 0
        self.metrics_slow_clients = 0
        self.metrics_broadcasts = 0

    # -- fan-out -------------------------------------------------------------------

    def serves_broadcast(self, main: bool) -> bool:
        """Whether the listener (main or the separate one) serves ``/_broadcast``."""
        if "http" not in self.config.broadcast_adapters:
            return False
        return self._shared_broadcast if main else not self._shared_broadcast

    def publish(self, publications: Iterable[Publication]) -> None:
        """Deliver publications to local subscribers, never awaiting.

        Each publication is encoded once per distinct identifier and framed once; the
        same bytes are queued for every subscriber of that identifier.
        """
        for publication in publications:
            self.metrics_broadcasts += 1
            recipients = self.hub.recipients(publication.stream)
            if not recipients:
                continue
            encoded = EncodedBroadcast(publication)
            exclude = publication.exclude_socket
            for identifier, sessions in recipients.items():
                frame = text_frame(encoded.for_identifier(identifier).encode())
                for session in sessions:
                    if exclude is None or session.sid != exclude:
                        session.push_frame(frame)

    def remote_disconnect(self, command: RemoteDisconnect) -> None:
        """Disconnect every session whose identifiers equal the command's."""
        for session in list(self.sessions):
            if session.core.identifiers == command.identifier:
                session.request_close(
                    "remote", reconnect=command.reconnect, close_reason="Closed remotely"
                )

    # -- lifecycle -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        self._shutdown.set()

    async def run(
        self,
        *,
        handle_signals: bool = False,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until :meth:`shutdown` (or SIGINT/SIGTERM) completes."""
        config = self.config
        main_listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        self.main_port = main_listeners[0].socket.getsockname()[1]
        extra: list[trio.SocketListener] = []
        if "http" in config.broadcast_adapters and not self._shared_broadcast:
            extra = await trio.open_tcp_listeners(config.http_broadcast_port, host=config.host)
            self.broadcast_port = extra[0].socket.getsockname()[1]
        else:
            self.broadcast_port = self.main_port
        self._announce()
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(self._serve, main_listeners, handlers, True)
                if extra:
                    accepting.start_soon(self._serve, extra, handlers, False)
                if handle_signals:
                    accepting.start_soon(self._watch_signals)
                task_status.started(self)
                await self._shutdown.wait()
                accepting.cancel_scope.cancel()
            for listener in [*main_listeners, *extra]:
                await listener.aclose()
            await self._drain(handlers)

    async def _drain(self, handlers: trio.Nursery) -> None:
        log.info(
            "Shutting down... (wait for up to %gs for graceful shutdown)",
            self.config.shutdown_timeout,
        )
        for scope in list(self.idle_scopes):
            scope.cancel()
        sessions = list(self.sessions)
        for session in sessions:
            session.request_close(
                "server_restart", reconnect=True, code=1001, close_reason="Server restart"
            )
        with trio.move_on_after(self.config.shutdown_timeout):
            for session in sessions:
                await session.wait_closed()
        handlers.cancel_scope.cancel()

    async def _serve(
        self, listeners: list[trio.SocketListener], handlers: trio.Nursery, main: bool
    ) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            try:
                await handle_connection(self, stream, main=main)
            except Exception:  # a bug must cost one connection, never the server
                log.exception("unexpected error while serving a connection")

        await trio.serve_listeners(handler, listeners, handler_nursery=handlers)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self._shutdown.is_set():
                    raise SystemExit(1)  # second signal: stop at once
                self.shutdown()

    def _announce(self) -> None:
        config = self.config
        base = f"http://{config.host}:{self.main_port}"
        for path in config.path:
            log.info("Handle WebSocket connections at %s%s", base, path)
        log.info("Handle health requests at %s%s", base, config.health_path)
        if "http" in config.broadcast_adapters:
            auth = "authorization required" if config.broadcast_key else "no authorization"
            log.info(
                "Accept broadcast requests at http://%s:%d%s (%s)",
                config.host,
                self.broadcast_port,
                config.http_broadcast_path,
                auth,
            )
        if config.jwt_secret:
            log.info(
                "JWT authentication is enabled (param: %s, enforced: %s)",
                config.jwt_param,
                str(config.enforce_jwt).lower(),
            )
        else:
            log.info("JWT authentication is disabled: every connection is accepted anonymously")
        channels = ["$pubsub"]
        if config.turbo_streams:
            channels.append("Turbo::StreamsChannel")
        log.info("Using channels router: %s", ", ".join(channels))
        if config.public:
            log.info("Server is running in the public mode")


async def serve(
    config: Config,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a Cableway server for ``config`` until shut down."""
    await Server(config).run(handle_signals=handle_signals, task_status=task_status)
