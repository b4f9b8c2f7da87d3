"""The trio server: listeners, the handler nursery, fan-out and graceful shutdown."""

from __future__ import annotations

import errno
import logging
import math
import random
import signal
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from ..node.backend import SWEEP_SLICE, Backend, MemoryBackend, NoBackend
from ..node.intake import Invalid, account, judge
from ..node.node import Node
from ..node.opening import SessionRules
from ..ops.metrics import REDIS_DEFINITIONS, Metrics
from ..protocol.broadcast import Publication, RemoteDisconnect
from ..protocol.broker import MemoryBroker, PresenceEvent, SessionSnapshot
from ..protocol.connection import SessionSettings
from ..protocol.routes import Router
from .accept import Acceptor
from .api_endpoint import api_role
from .fanout import fan_out, fan_out_one
from .http import CONNECTION_TASK, FrontDoor, serve_http
from .listeners import listen_plan, metrics_apart
from .poller import ReadPoller
from .redis_backend import RedisBackend
from .redis_broker import RedisBroker
from .redislinks import redis_links
from .redisx import StreamConsumer
from .rpc_client import RPC_DEFINITIONS, DisconnectQueue, HttpRpc
from .scaleout import (
    Acknowledgement,
    Confirmation,
    Publisher,
    Subscriber,
    acknowledged,
    encode_remote,
    encode_stamped,
)
from .session import Session
from .startup import (
    announce,
    close_listeners,
    listen,
    raise_open_file_limit,
    tune_garbage_collector,
)
from .statsd import run_statsd
from .timers import Timers
from .tls import TlsDoor
from .worklink import HubBackend, HubLink, WorkerRole

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["SWEEP_SLICE", "Server", "serve"]

log = logging.getLogger("cableway")

_ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: how long a node that shuts down waits for Redis to take what its sessions wrote last
REDIS_FLUSH_SECONDS = 2.0


class Server:
    """Shared state of one Cableway node and the tasks that serve it.

    Attributes:
        hub: stream -> sessions index used by the fan-out.
        sessions: every live WebSocket session.
        ports: the bound main port and broadcast port (after :meth:`run` started).
    """

    def __init__(self, config: Config, *, worker: WorkerRole | None = None) -> None:
        self.config = config
        #: --workers N: this process is worker ``worker.index`` of a supervisor
        self.worker = worker
        self.limits = config.limits()
        self.stream_policy = config.stream_policy()
        self.auth_policy = config.auth_policy()
        self.metrics = Metrics()
        #: one timer task for every session's pings and deadlines
        self.timers = Timers(self.metrics)
        #: --workers N (without --pubsub=redis): the supervisor's hub keeps what the
        #: memory broker would
        self.hub_relay = worker is not None and config.pubsub != "redis"
        self.broker: MemoryBroker | None = None if self.hub_relay else config.new_broker()
        # scale-out on Redis (spec §11.4-11.7): the publisher, subscriber, redisx
        # consumer and (--broker=redis) broker the configuration needs
        pubsub = self.pubsub = config.pubsub == "redis"
        links = redis_links(
            config,
            on_broadcast=self._take_channel_broadcast,
            on_command=self.remote_disconnect,
            on_stamped=self.deliver,
            on_entry=self._take_stream_entry,
        )
        #: fired whenever a Redis link's state changes (see :meth:`wait_redis_ready`)
        self.redis_state = links.state
        self.publisher: Publisher | None = links.publisher
        self.subscriber: Subscriber | None = links.subscriber
        self.consumer: StreamConsumer | None = links.consumer
        self.redis_broker: RedisBroker | None = links.broker
        #: --workers N: the link to the supervisor's hub (metrics, health); without
        #: --pubsub=redis (:attr:`hub_relay`) the hub also stamps and relays every
        #: publication and keeps history, sessions and presence for all workers
        self.link: HubLink | None = None
        if worker is not None:
            self.link = HubLink(
                worker.hub_path,
                index=worker.index,
                on_deliver=lambda items: self.node.deliver_stamped(items),
                on_remote=self._take_remote,
                on_presence=self.publish_presence,
                metrics=self.metrics.snapshot,
                on_lost=self.shutdown,
            )
        #: history, sessions and presence: the one backend every call site uses
        self.backend: Backend[Confirmation] = (
            RedisBackend(self.redis_broker)
            if self.redis_broker is not None
            else HubBackend(self.link, sessions_ttl=config.sessions_ttl)
            if self.link is not None and self.hub_relay and config.broker == "memory"
            else MemoryBackend(self.broker)
            if self.broker is not None
            else NoBackend()
        )
        #: how sessions open: settings, handshakes (cableway.node.opening)
        self.session_rules = SessionRules.from_config(
            config, self.backend, native_pings=config.enable_native_pings
        )
        #: the rules of the node (cableway.node): registry, publishing, remote commands
        self.node: Node[Session, Confirmation] = Node(
            self.backend,
            self.metrics,
            fan_out,
            wall_clock=time.time,
            relay=self._relay
            if pubsub and self.publisher is not None
            else self.link.relay
            if self.link is not None and self.hub_relay
            else None,
            fan_out_one=fan_out_one,
        )
        if self.subscriber is not None:
            self.node.registry.on_first = self.subscriber.want
            self.node.registry.on_last = self.subscriber.unwant
        #: stream -> sessions index used by the fan-out
        self.hub = self.node.registry
        #: every live session (WebSocket and SSE)
        self.sessions = self.node.sessions
        #: how long a publisher waits for Redis to accept a publication (then 503)
        self.confirm_timeout = 5.0
        self.idle_scopes: set[trio.CancelScope] = set()
        self.random = random.Random()
        self.handshake_timeout = config.handshake_timeout
        self.max_header_bytes = config.max_header_size
        #: each listener role's endpoint router (.http; the configuration's, made once)
        self.routers: dict[str, Router[str]] = {}
        self.max_broadcast_body = config.max_broadcast_body
        #: node-wide HTTP state: the budget of request bodies in flight, warning limits
        self.front_door = FrontDoor(config)
        self.connections = trio.CapacityLimiter(config.max_conn) if config.max_conn > 0 else None
        #: where tasks answering sessions' broker requests run (set by :meth:`run`)
        self._tasks: trio.Nursery | None = None
        #: where idle sessions park their readers while the server runs (see .poller)
        self._poller: ReadPoller | None = None
        self.main_port = 0
        self.broadcast_port = 0
        self._shared_broadcast = (
            "http" in config.broadcast_adapters and config.http_broadcast_port == config.port
        )
        self._shutdown = trio.Event()
        self.node.serve_gauges(self.metrics)
        if self.publisher or self.subscriber or self.consumer:
            for metric in REDIS_DEFINITIONS:
                self.metrics.register(metric)
            self.metrics.set("redis_up", lambda: int(self.redis_ready()))
            publisher = self.publisher
            if publisher is not None:
                self.metrics.set("redis_pending_commands", lambda: len(publisher.queue))
                self.metrics.set("redis_dropped_commands", lambda: publisher.dropped)
        self.metrics_port = 0
        #: --ssl_cert/--ssl_key: TLS on every listener (set by :meth:`run`, which reads the
        #: files)
        self.tls: TlsDoor | None = None
        #: --rpc_host: the application's HTTP RPC, and the queue of Disconnect calls
        self.rpc: HttpRpc | None = None
        self.disconnects: DisconnectQueue | None = None
        if config.rpc is not None:
            for metric in RPC_DEFINITIONS:
                self.metrics.register(metric)
            rpc = self.rpc = HttpRpc(config.rpc, self.metrics)
            queue = self.disconnects = DisconnectQueue(
                rpc.disconnect, config.rpc.disconnect_rate, self.sessions, metrics=self.metrics
            )
            self.metrics.set("disconnect_queue_size", lambda: queue.size)

    @property
    def task_nursery(self) -> trio.Nursery | None:
        """The nursery of connection handlers while :meth:`run` runs, else ``None``.

        Sessions start their writer tasks in it, so an idle session needs no nursery
        of its own.
        """
        return self._tasks

    @property
    def poller(self) -> ReadPoller | None:
        """The epoll set idle sessions park their readers on while :meth:`run` runs
        (``None`` before: they wait with ``trio.lowlevel.wait_readable`` then)."""
        return self._poller

    def session_settings(
        self, ping_interval: float, ping_precision: str, *, extended: bool, rpc: bool = False
    ) -> SessionSettings:
        """The core settings of one session (``rpc``: one that can delegate to the
        application, a WebSocket session; SSE sessions do not call RPC;
        :class:`cableway.node.opening.SessionRules`)."""
        return self.session_rules.settings(
            ping_interval, ping_precision, extended=extended, delegate=rpc and self.rpc is not None
        )

    @property
    def publishing_waits(self) -> bool:
        """Whether a publication waits for Redis (or the workers' hub) to accept it (HTTP
        answers after it)."""
        return self.publisher is not None or self.hub_relay

    # -- fan-out -------------------------------------------------------------------

    def _metrics_apart(self) -> bool:
        return metrics_apart(self.config)

    def schedule(self, session: Session) -> None:
        """Make sure the timer task wakes ``session`` at its next deadline."""
        self.timers.schedule(session)

    def file_pings(self, sessions: list[Session]) -> None:
        """:meth:`.Timers.file_pings`: sessions whose cached ping rode a broadcast."""
        self.timers.file_pings(sessions)

    def serves(self, role: str, what: str) -> bool:
        """Whether a listener of ``role`` serves ``what`` (``broadcast`` or ``metrics``).

        Each is served on the main listener unless configured on a port of its own.
        """
        if what == "api":
            return role == api_role(self.config)
        if what == "broadcast":
            if "http" not in self.config.broadcast_adapters:
                return False
            return role == ("main" if self._shared_broadcast else "broadcast")
        if not self.config.metrics_http:
            return False
        return role == ("metrics" if self._metrics_apart() else "main")

    def publish(self, publications: Iterable[Publication]) -> None:
        """Store (when a broker keeps history) and deliver publications, never awaiting.

        With ``--pubsub=redis`` each stamped publication goes to Redis (in order) and
        every node, this one included, delivers it when it comes back: exactly once per
        node. Without, it is delivered here at once (see :meth:`.Node.publish`).
        """
        self.node.publish(publications)

    def _relay(
        self,
        publication: Publication,
        offset: int | None,
        epoch: str | None,
        confirmation: Confirmation | None,
    ) -> None:
        """``--pubsub=redis``: a stamped publication to every node, through Redis."""
        assert self.publisher is not None
        self.publisher.post(
            publication.stream, encode_stamped(publication, offset, epoch), confirmation
        )

    def _take_remote(self, text: str) -> None:
        """A remote command the hub relayed (from any worker)."""
        verdict = judge(text.encode())
        if isinstance(verdict, RemoteDisconnect):
            self.remote_disconnect(verdict)

    async def metrics_values(self) -> dict[str, float] | None:
        """``--workers``: every worker's metrics summed (None: this process's own)."""
        return None if self.link is None else await self.link.metrics_sum()

    async def workers_up(self) -> tuple[int, int] | None:
        """``--workers``: (workers linked to the hub, workers configured); None: not a
        worker."""
        return None if self.link is None else await self.link.workers_up(self.config.workers)

    def redis_ready(self, *streams: str) -> bool:
        """Whether every Redis link is up (and, with ``--pubsub=redis``, the node listens
        to the channels of ``streams``)."""
        subscriber, publisher, consumer = self.subscriber, self.publisher, self.consumer
        return (
            (subscriber is None or subscriber.ready(*(streams if subscriber.per_stream else ())))
            and (publisher is None or publisher.up)
            and (consumer is None or consumer.ready)
        )

    async def wait_redis_ready(self, *streams: str) -> None:
        """Return once :meth:`redis_ready` holds (no polling: woken by every change)."""
        await self.redis_state.wait_for(lambda: self.redis_ready(*streams))

    def post_publications(self, publications: Iterable[Publication]) -> Acknowledgement:
        """:meth:`publish` now; what tells whether Redis (``--pubsub=redis``) or the
        workers' hub accepted them: known at once (a bool), or a :class:`Confirmation` to
        await (:func:`.scaleout.acknowledged`). False: the link is known to be down,
        nothing was stamped."""
        publisher = self.publisher or (self.link if self.hub_relay else None)
        if publisher is None:
            self.publish(publications)
            return True
        items = list(publications)
        if not items:
            return True
        if not publisher.up:
            return False
        confirmation = Confirmation()
        self.node.publish(items, confirmation)
        return confirmation

    async def publish_confirmed(self, publications: Iterable[Publication]) -> bool:
        """:meth:`post_publications`, awaited: False when not accepted (Redis or the hub
        unreachable, or no answer within :attr:`confirm_timeout` seconds)."""
        pending = self.post_publications(publications)
        return await acknowledged(pending, trio.current_time() + self.confirm_timeout)

    def post_remote(self, command: RemoteDisconnect) -> Acknowledgement:
        """A remote command to every node (through Redis with ``--pubsub``, the hub with
        ``--workers``), now; what tells whether it was taken (:meth:`post_publications`)."""
        if self.link is not None and self.hub_relay:
            return self.link.post_remote(encode_remote(command).decode())
        publisher, subscriber = self.publisher, self.subscriber
        if (
            not self.pubsub
            or publisher is None
            or subscriber is None
            or subscriber.internal_channel is None
        ):
            self.remote_disconnect(command)
            return True
        if not publisher.up:
            return False
        confirmation = Confirmation()
        publisher.post(subscriber.internal_channel, encode_remote(command), confirmation)
        return confirmation

    async def remote_command(self, command: RemoteDisconnect) -> bool:
        """:meth:`post_remote`, awaited (as :meth:`publish_confirmed`)."""
        pending = self.post_remote(command)
        return await acknowledged(pending, trio.current_time() + self.confirm_timeout)

    def deliver(self, publication: Publication, offset: int | None, epoch: str | None) -> None:
        """Fan a (stamped) publication out to this node's subscribers, never awaiting."""
        self.node.deliver(publication, offset, epoch)

    async def restore_snapshot(self, sid: str) -> SessionSnapshot | None:
        """The snapshot of session ``sid`` when it can be restored (else None)."""
        return await self.backend.restore_session(sid, now=time.time())

    def publish_presence(self, event: PresenceEvent) -> None:
        """Broadcast a presence join/leave to the presence stream (transient)."""
        self.node.publish_presence(event)

    def remote_disconnect(self, command: RemoteDisconnect) -> None:
        """Disconnect every session whose identifiers equal the command's."""
        self.node.remote_disconnect(command)

    def _take_channel_broadcast(self, payload: bytes, channel: str) -> None:
        """A broadcast on the legacy Redis channel: every node gets it, so it is
        delivered here and bypasses the broker."""
        verdict = judge(payload)
        account(verdict, self.metrics)
        if isinstance(verdict, Invalid):
            log.warning("invalid broadcast on %s: %s", channel, verdict.detail)
        elif isinstance(verdict, RemoteDisconnect):
            self.remote_disconnect(verdict)
        else:
            for publication in verdict:
                self.deliver(publication, None, None)

    async def _take_stream_entry(self, payload: bytes, stream: str) -> bool:
        """A ``redisx`` entry; False: not accepted (read it again later)."""
        verdict = judge(payload)
        account(verdict, self.metrics)
        if isinstance(verdict, Invalid):
            log.warning("invalid broadcast in stream %s: %s", stream, verdict.detail)
            return True  # nothing to retry: drop it
        if isinstance(verdict, RemoteDisconnect):
            return await self.remote_command(verdict)
        return await self.publish_confirmed(verdict)

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
        self.tls = TlsDoor.from_config(config)  # before listening: a bad file stops here
        if self.link is not None:
            await self.link.connect()  # before serving: the hub keeps what sessions need
        roles: list[tuple[str, list[trio.SocketListener]]] = []
        for role, host, port, host_option, port_option in listen_plan(config):
            group = await self._listen(host, port, host_option, port_option)
            roles.append((role, group))
            bound = group[0].socket.getsockname()[1]
            if role == "main":
                self.main_port = bound
            elif role == "broadcast":
                self.broadcast_port = bound
            elif role == "metrics":
                self.metrics_port = bound
        if "http" not in config.broadcast_adapters or self._shared_broadcast:
            self.broadcast_port = self.main_port
        if config.metrics_http and not self._metrics_apart():
            self.metrics_port = self.main_port
        if config.api_served:
            auth = "authorization required" if config.api_secret else "no authorization"
            log.info("Handle REST API requests at %s (%s)", config.api_path, auth)
        announce(
            config,
            tls=self.tls is not None,
            main_port=self.main_port,
            broadcast_port=self.broadcast_port,
            memory=self.broker,
            redis=self.redis_broker,
            redis_links=self.publisher is not None
            or self.subscriber is not None
            or self.consumer is not None,
            redisx=self.consumer is not None,
            publisher=self.publisher is not None,
            hub_worker=self.link.index if self.link is not None and self.hub_relay else None,
        )
        listeners = [listener for _, group in roles for listener in group]
        try:
            # Redis links outlive the clients: what sessions write as they close (snapshots
            # kept for restore, presence expiries) is flushed before the node exits
            async with trio.open_nursery() as links:
                for adapter in (self.subscriber, self.publisher, self.consumer, self.link):
                    if adapter is not None:
                        links.start_soon(adapter.run)
                if self.disconnects is not None:
                    links.start_soon(self.disconnects.run)
                await self._serve_until_shutdown(roles, listeners, handle_signals, task_status)
                if self.disconnects is not None:
                    with trio.move_on_after(config.shutdown_timeout):
                        await self.disconnects.finish()
                await self._flush_redis()
                if self.link is not None:
                    with trio.move_on_after(REDIS_FLUSH_SECONDS):
                        await self.link.drained()
                    self.link.closing = True
                links.cancel_scope.cancel()
        finally:
            close_listeners(listeners)
            if self.rpc is not None:
                await self.rpc.aclose()

    async def _listen(
        self, host: str, port: int, host_option: str, port_option: str
    ) -> list[trio.SocketListener]:
        """The listeners for ``host:port``: the supervisor's (``--workers``), else new."""
        inherited = None if self.worker is None else self.worker.sockets(host, port)
        if inherited is not None:
            return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in inherited]
        return await listen(host, port, host_option, port_option)

    async def _serve_until_shutdown(
        self,
        roles: list[tuple[str, list[trio.SocketListener]]],
        listeners: list[trio.SocketListener],
        handle_signals: bool,
        task_status: trio.TaskStatus[Server],
    ) -> None:
        config = self.config
        async with trio.open_nursery() as handlers:
            self._tasks = handlers
            # in the handlers' nursery: parked readers are woken until the last session
            # closed (the drain cancels it with them)
            poller = self._poller = ReadPoller()
            handlers.start_soon(poller.run)
            async with trio.open_nursery() as accepting:
                for role, group in roles:
                    accepting.start_soon(self._serve, group, handlers, role)
                if handle_signals:
                    accepting.start_soon(self._watch_signals)
                if self.backend.sweep_interval < math.inf:
                    accepting.start_soon(self._sweep, self.backend)
                accepting.start_soon(self.timers.run)
                if config.metrics_log:
                    accepting.start_soon(self._log_metrics)
                if config.statsd_host and (self.link is None or self.link.index == 0):
                    accepting.start_soon(run_statsd, self.metrics, config, self.link)
                task_status.started(self)
                await self._shutdown.wait()
                if config.shutdown_delay > 0:
                    # keep serving while a load balancer notices we are going away
                    log.info("Waiting %gs before shutting down", config.shutdown_delay)
                    await trio.sleep(config.shutdown_delay)
                accepting.cancel_scope.cancel()
            close_listeners(listeners)  # stop accepting before telling clients
            await self._drain(handlers)

    async def _flush_redis(self) -> None:
        """Give the Redis command queue :data:`REDIS_FLUSH_SECONDS` to send what is queued."""
        publisher = self.publisher
        if publisher is not None and publisher.up:
            with trio.move_on_after(REDIS_FLUSH_SECONDS):
                await publisher.drained()

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
        with trio.move_on_after(self.config.shutdown_timeout) as waited:
            for session in sessions:
                await session.wait_closed()
        if waited.cancelled_caught:
            log.warning(
                "Shutdown timeout: %d connections still open after %gs, closing them",
                len(self.sessions),
                self.config.shutdown_timeout,
            )
        handlers.cancel_scope.cancel()

    async def _serve(
        self, listeners: list[trio.SocketListener], handlers: trio.Nursery, role: str
    ) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, handlers, role)

    async def _accept_loop(
        self, listener: trio.SocketListener, handlers: trio.Nursery, role: str
    ) -> None:
        """Accept connections; with ``--max-conn`` the excess waits in the backlog.

        The cap applies to the main listener only: the application's broadcasts and
        the metrics scraper never queue behind clients.
        """
        limiter = self.connections if role == "main" else None
        # (TCP_NODELAY set once on the listener, not per connection: see .accept)
        acceptor = Acceptor(listener)
        while True:
            token = object()
            if limiter is not None:
                await limiter.acquire_on_behalf_of(token)
            try:
                stream = await acceptor.accept()
            except OSError as exc:
                if limiter is not None:
                    limiter.release_on_behalf_of(token)
                if exc.errno in _ACCEPT_CAPACITY_ERRORS:
                    log.error("accept failed (%s): backing off", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            except BaseException:
                if limiter is not None:
                    limiter.release_on_behalf_of(token)
                raise
            handlers.start_soon(self._handle, stream, role, token, limiter, name=CONNECTION_TASK)

    async def _handle(
        self,
        stream: trio.SocketStream,
        role: str,
        token: object,
        limiter: trio.CapacityLimiter | None,
    ) -> None:
        try:
            served: trio.abc.Stream = stream
            if self.tls is not None:
                secure = await self.tls.accept(stream, self.idle_scopes)
                if secure is None:
                    return
                served = secure
            if (session := await serve_http(self, served, role)) is not None:
                await session.run()  # in this frame: one frame less per idle connection
        except Exception:  # a bug must cost one connection, never the server
            log.exception("unexpected error while serving a connection")
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(token)

    async def _sweep(self, backend: Backend[Confirmation]) -> None:
        """Expire history, sessions and presence (AnyCable's sweeper, once a second for
        the memory broker), in slices with a checkpoint between them, so that a mass
        expiry (a million streams published together) never holds the event loop."""
        while True:
            await trio.sleep(backend.sweep_interval)
            now = time.time()
            while self.node.sweep(now):
                await trio.lowlevel.checkpoint()

    async def _log_metrics(self) -> None:
        """``--metrics_log``: one line per interval with counter deltas and gauges."""
        previous = self.metrics.snapshot()
        while True:
            await trio.sleep(self.config.metrics_rotate_interval)
            log.info("", extra={"context": "metrics", **self.metrics.log_fields(previous)})
            previous = self.metrics.snapshot()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self._shutdown.is_set():
                    raise SystemExit(1)  # second signal: stop at once
                self.shutdown()


async def serve(
    config: Config,
    *,
    handle_signals: bool = True,
    worker: WorkerRole | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a Cableway server for ``config`` until shut down (``worker``: as one worker
    of a ``--workers`` supervisor)."""
    raise_open_file_limit()
    tune_garbage_collector()
    await Server(config, worker=worker).run(handle_signals=handle_signals, task_status=task_status)
