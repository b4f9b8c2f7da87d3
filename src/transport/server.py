"""The trio server: listeners, the handler nursery, fan-out and graceful shutdown."""

from __future__ import annotations

import errno
import gc
import heapq
import itertools
import logging
import math
import random
import signal
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from ..config import StartupError
from ..metrics import REDIS_DEFINITIONS, Metrics
from ..protocol import service
from ..protocol.broadcast import EncodedBroadcast, Publication, RemoteDisconnect
from ..protocol.broker import MemoryBroker, PresenceEvent, SessionSnapshot
from ..protocol.connection import SessionSettings
from ..protocol.events import HistoryRequest, PresenceRequest
from ..protocol.hub import Hub
from .http import FrontDoor, handle_connection
from .redis_broker import RedisBroker
from .scaleout import (
    Confirmation,
    Publisher,
    StateSignal,
    StreamConsumer,
    Subscriber,
    encode_remote,
    encode_stamped,
)
from .sentinel import redis_target
from .session import Session, fan_out
from .statsd import run_statsd

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Server", "serve"]

log = logging.getLogger("cableway")

_ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: how long a node that shuts down waits for Redis to take what its sessions wrote last
REDIS_FLUSH_SECONDS = 2.0

#: the shortest time between two batches of the shared timer task, in seconds: a
#: session's ping, pong deadline or hold deadline fires at most this late
TIMER_QUANTUM = 0.01

#: messages, sessions and presence records the memory broker's sweep expires between two
#: checkpoints (a few milliseconds of work)
SWEEP_SLICE = 2000


class Server:
    """Shared state of one Cableway node and the tasks that serve it.

    Attributes:
        hub: stream -> sessions index used by the fan-out.
        sessions: every live WebSocket session.
        ports: the bound main port and broadcast port (after :meth:`run` started).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.limits = config.limits()
        self.stream_policy = config.stream_policy()
        self.auth_policy = config.auth_policy()
        self.hub: Hub[Session] = Hub()
        # one timer task for every session's pings and deadlines: a heap of
        # (deadline, sequence, weak reference to the session), entries made stale by
        # later changes are harmless, and a closed session is freed at once
        self._timers: list[tuple[float, int, weakref.ref[Session]]] = []
        self._timer_seq = itertools.count()
        self._timers_changed = trio.Event()
        self.sessions: set[Session] = set()
        self.broker: MemoryBroker | None = config.new_broker()
        # scale-out on Redis (spec §11.4-11.7)
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.consumer: StreamConsumer | None = None
        #: --broker=redis: history, sessions and presence in Redis
        self.redis_broker: RedisBroker | None = None
        adapters = config.broadcast_adapters
        pubsub = self.pubsub = config.pubsub == "redis"
        #: fired whenever a Redis link's state changes (see :meth:`wait_redis_ready`)
        self.redis_state = StateSignal()
        if pubsub or config.broker == "redis" or "redis" in adapters or "redisx" in adapters:
            url = redis_target(config)
            legacy = config.redis_channel if "redis" in adapters else None
            if pubsub or config.broker == "redis":
                # one ordered connection for PUBLISH and the broker's scripts and reads
                self.publisher = Publisher(url, state=self.redis_state)
            if config.broker == "redis":
                assert self.publisher is not None
                self.redis_broker = RedisBroker(
                    self.publisher,
                    history_limit=config.history_limit,
                    history_ttl=config.history_ttl,
                    sessions_ttl=config.sessions_ttl,
                    presence_ttl=config.presence_ttl,
                )
            if pubsub or legacy is not None:
                self.subscriber = Subscriber(
                    self, url, legacy_channel=legacy, per_stream=pubsub, state=self.redis_state
                )
            if "redisx" in adapters:
                self.consumer = StreamConsumer(
                    self, url, stream=config.redisx_stream, state=self.redis_state
                )
        #: how long a publisher waits for Redis to accept a publication (then 503)
        self.confirm_timeout = 5.0
        self.idle_scopes: set[trio.CancelScope] = set()
        self.random = random.Random()
        self.handshake_timeout = config.handshake_timeout
        self.max_header_bytes = config.max_header_size
        self.max_broadcast_body = config.max_broadcast_body
        #: node-wide HTTP state: the budget of request bodies in flight, warning limits
        self.front_door = FrontDoor(config)
        self.connections = trio.CapacityLimiter(config.max_conn) if config.max_conn > 0 else None
        #: where tasks answering sessions' broker requests run (set by :meth:`run`)
        self._tasks: trio.Nursery | None = None
        self.main_port = 0
        self.broadcast_port = 0
        self._shared_broadcast = (
            "http" in config.broadcast_adapters and config.http_broadcast_port == config.port
        )
        self._shutdown = trio.Event()
        self.metrics = Metrics()
        self.metrics.set("clients_num", lambda: len(self.sessions))
        self.metrics.set(
            "clients_uniq_num", lambda: len({s.core.identifiers for s in self.sessions})
        )
        self.metrics.set("broadcast_streams_num", lambda: len(self.hub))
        if self.publisher or self.subscriber or self.consumer:
            for metric in REDIS_DEFINITIONS:
                self.metrics.register(metric)
            self.metrics.set("redis_up", lambda: int(self.redis_ready()))
            publisher = self.publisher
            if publisher is not None:
                self.metrics.set("redis_pending_commands", lambda: len(publisher.queue))
                self.metrics.set("redis_dropped_commands", lambda: publisher.dropped)
        self.metrics_port = 0

    @property
    def task_nursery(self) -> trio.Nursery | None:
        """The nursery of connection handlers while :meth:`run` runs, else ``None``.

        Sessions start their writer tasks in it, so an idle session needs no nursery
        of its own.
        """
        return self._tasks

    def session_settings(
        self, ping_interval: float, ping_precision: str, *, extended: bool
    ) -> SessionSettings:
        """The core settings of one session."""
        config = self.config
        brokered = self.broker is not None or self.redis_broker is not None
        return SessionSettings(
            ping_interval=ping_interval,
            ping_precision=ping_precision,
            limits=self.limits,
            policy=self.stream_policy,
            extended=extended,
            pong_timeout=config.pong_timeout,
            history=brokered,
            presence=brokered,
            resumable=brokered and config.sessions_ttl > 0,
            native_pings=config.enable_native_pings,
        )

    # -- fan-out -------------------------------------------------------------------

    def _metrics_apart(self) -> bool:
        port = self.config.metrics_port
        return bool(self.config.metrics_http) and port not in (0, self.config.port)

    def schedule(self, session: Session) -> None:
        """Make sure the timer task wakes ``session`` at its next deadline."""
        deadline = session.core.next_deadline()
        if deadline is None or deadline >= session.scheduled_at:
            return
        session.scheduled_at = deadline
        ref = session.ref
        heapq.heappush(self._timers, (deadline, next(self._timer_seq), ref))
        if self._timers[0][2] is ref:
            self._timers_changed.set()  # an earlier wake-up than the task sleeps for

    async def _run_timers(self) -> None:
        """Fire every session's due timers, in batches at most :data:`TIMER_QUANTUM` apart.

        Deadlines are spread out (pings are jittered per session), so waking for each
        one would cost a wake-up of this task per ping; instead each wake-up fires
        everything due and the next one is at least a quantum later (timers fire at
        most that late, never early). Sessions woken in one batch share their ping
        bytes (see :meth:`Session.on_timer`).
        """
        timers = self._timers
        heappop = heapq.heappop
        inf = math.inf
        last = -inf
        while True:
            wake = max(timers[0][0], last + TIMER_QUANTUM) if timers else inf
            with trio.move_on_at(wake):
                await self._timers_changed.wait()
            if self._timers_changed.is_set():
                self._timers_changed = trio.Event()
            now = trio.current_time()
            if not timers or timers[0][0] > now:
                continue
            last = now
            unix_time = time.time()
            frames: dict[tuple[str, str], bytes | None] = {}
            while timers and timers[0][0] <= now:
                session = heappop(timers)[2]()
                if session is None:
                    continue  # closed and freed
                session.scheduled_at = inf
                session.on_timer(now, unix_time, frames)  # re-schedules the next deadline
            await trio.lowlevel.checkpoint()

    def serves(self, role: str, what: str) -> bool:
        """Whether a listener of ``role`` serves ``what`` (``broadcast`` or ``metrics``).

        Each is served on the main listener unless configured on a port of its own.
        """
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
        node. Without, it is delivered here at once.
        """
        publisher = self.publisher if self.pubsub else None
        redis_broker = self.redis_broker
        # consecutive publications on one stream are delivered together: each
        # subscriber gets them in one write
        run: list[tuple[Publication, int | None, str | None]] = []
        for publication in publications:
            if redis_broker is not None and not publication.transient:
                if run:
                    self._deliver_run(run)
                    run = []
                self._stamp_in_redis(redis_broker, publication, None)
                continue
            offset, epoch = self._stamp(publication)
            if publisher is not None:
                publisher.post(publication.stream, encode_stamped(publication, offset, epoch))
                continue
            if run and run[0][0].stream != publication.stream:
                self._deliver_run(run)
                run = []
            run.append((publication, offset, epoch))
        if run:
            self._deliver_run(run)

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

    def _stamp_in_redis(
        self,
        broker: RedisBroker,
        publication: Publication,
        confirmation: Confirmation | None,
    ) -> None:
        """``--broker=redis``: Redis assigns the offset; with ``--pubsub=redis`` the same
        script publishes the stamped message to every node, else it is delivered here
        once Redis answered (in order: replies come in the order of the commands)."""
        self.metrics.inc("broadcast_msg_total")
        broker.stamp(
            publication,
            now=time.time(),
            channel=publication.stream if self.pubsub else None,
            confirmation=confirmation,
            on_stamped=None if self.pubsub else self.deliver,
        )

    async def publish_confirmed(self, publications: Iterable[Publication]) -> bool:
        """Like :meth:`publish`, and wait until Redis accepted them (``--pubsub=redis``).

        False: not accepted (Redis is unreachable, or did not answer within
        :attr:`confirm_timeout` seconds); nothing was stamped when Redis was already known
        to be down.
        """
        publisher = self.publisher
        if publisher is None:
            self.publish(publications)
            return True
        items = list(publications)
        if not items:
            return True
        if not publisher.up:
            return False
        confirmation = Confirmation()
        redis_broker = self.redis_broker
        for publication in items:
            if redis_broker is not None and not publication.transient:
                self._stamp_in_redis(redis_broker, publication, confirmation)
            elif self.pubsub:
                offset, epoch = self._stamp(publication)
                payload = encode_stamped(publication, offset, epoch)
                publisher.post(publication.stream, payload, confirmation)
            else:
                self.deliver(publication, *self._stamp(publication))
        with trio.move_on_after(self.confirm_timeout):
            await confirmation.done.wait()
        ok = confirmation.done.is_set() and confirmation.ok
        if not ok:
            confirmation.abandoned = True
        return ok

    async def remote_command(self, command: RemoteDisconnect) -> bool:
        """Carry out a remote command on every node (through Redis with ``--pubsub``)."""
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
        with trio.move_on_after(self.confirm_timeout):
            await confirmation.done.wait()
        if not (confirmation.done.is_set() and confirmation.ok):
            confirmation.abandoned = True
            return False
        return True

    def _stamp(self, publication: Publication) -> tuple[int | None, str | None]:
        """Count a publication accepted by this node and store it in the broker."""
        self.metrics.inc("broadcast_msg_total")
        broker = self.broker
        if broker is None or publication.transient:
            return None, None
        offset = broker.add(
            publication.stream,
            publication.data,
            now=time.time(),
            broadcast_type=publication.broadcast_type,
        )
        return offset, broker.epoch

    def deliver(self, publication: Publication, offset: int | None, epoch: str | None) -> None:
        """Fan a (stamped) publication out to this node's subscribers, never awaiting.

        Each publication is encoded once per distinct identifier and turned into wire
        bytes once per kind of session (WebSocket frame, SSE event...); the same bytes
        are written to every subscriber of that kind.
        """
        self._deliver_run([(publication, offset, epoch)])

    def _deliver_run(self, run: list[tuple[Publication, int | None, str | None]]) -> None:
        """Deliver (stamped) publications of one stream, in order, never awaiting.

        A subscriber gets all of them in one write (see :func:`.session.fan_out`); the
        metrics are accounted once per run.
        """
        recipients = self.hub.recipients(run[0][0].stream)
        if not recipients:
            return
        if len(run) > 1 and len(recipients) > 1 and _shared_members(recipients.values()):
            # a session subscribed through several identifiers gets each publication
            # under every identifier before the next one: keep that interleaving
            for item in run:
                self._deliver_run([item])
            return
        encoded = [EncodedBroadcast(pub, offset=offset, epoch=epoch) for pub, offset, epoch in run]
        offsets = [offset for _, offset, _ in run]
        excluded = [pub.exclude_socket for pub, _, _ in run]
        excludes = None if all(exclude is None for exclude in excluded) else excluded
        delivered = sent = 0
        for identifier, sessions in recipients.items():
            texts = [item.for_identifier(identifier) for item in encoded]
            done, written = fan_out(sessions, identifier, texts, offsets, excludes)
            delivered += done
            sent += written
        metrics = self.metrics
        metrics.inc("server_msg_total", delivered)
        if sent:
            metrics.inc("data_sent_total", sent)

    def add_subscriber(self, stream: str, identifier: str, session: Session) -> None:
        """Register a subscription; the node subscribes to the stream's channel if new."""
        if self.hub.add(stream, identifier, session) and self.subscriber is not None:
            self.subscriber.want(stream)

    def remove_subscriber(self, stream: str, identifier: str, session: Session) -> None:
        """Unregister; the node leaves the stream's channel when nobody here listens."""
        if self.hub.remove(stream, identifier, session) and self.subscriber is not None:
            self.subscriber.unwant(stream)

    def answer_history(self, session: Session, request: HistoryRequest) -> None:
        """Serve a session's history request from the broker.

        The memory broker answers at once; Redis later, from a task (the core holds the
        subscription's live messages meanwhile).
        """
        redis_broker = self.redis_broker
        if redis_broker is None or self._tasks is None:
            service.answer_history(self.broker, session.core, request, now=time.time())
        else:
            self._tasks.start_soon(self._answer_history_later, redis_broker, session, request)

    async def _answer_history_later(
        self, broker: RedisBroker, session: Session, request: HistoryRequest
    ) -> None:
        try:
            entries, epoch = await broker.fetch_history(request.queries, now=time.time())
            if session.closing:
                return
            session.core.history_result(request.identifier, entries, epoch=epoch)
            session.apply()
        except Exception:  # a bug must cost one answer, never the server
            log.exception("unexpected error answering a history request")

    def answer_presence(self, session: Session, request: PresenceRequest) -> None:
        """Carry out a session's presence operation and publish what it changed."""
        redis_broker = self.redis_broker
        if redis_broker is None or self._tasks is None:
            publication = service.answer_presence(self.broker, session.core, request)
            if publication is not None:
                self.publish([publication])
        elif request.kind == "join":
            redis_broker.presence_join(
                request.stream,
                session.sid,
                request.presence_id,
                request.info,
                self.publish_presence,
                now=time.time(),
            )
        elif request.kind == "leave":
            redis_broker.presence_leave(request.stream, session.sid, self.publish_presence)
        else:
            self._tasks.start_soon(self._presence_info_later, redis_broker, session, request)

    async def _presence_info_later(
        self, broker: RedisBroker, session: Session, request: PresenceRequest
    ) -> None:
        try:
            records = await broker.presence_info(request.stream)
            if session.closing:
                return
            session.core.presence_result(request.identifier, records)
            session.apply()
        except Exception:  # a bug must cost one answer, never the server
            log.exception("unexpected error answering a presence request")

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        """Keep a live resumable session's snapshot in the broker."""
        if self.broker is not None:
            self.broker.save_session(sid, snapshot)
        elif self.redis_broker is not None:
            self.redis_broker.save_session(sid, snapshot)

    def release_session(
        self, sid: str, snapshot: SessionSnapshot | None, presence: Iterable[str]
    ) -> None:
        """A session closed: its snapshot stays restorable for ``sessions_ttl``, and its
        presence in ``presence`` streams expires after ``presence_ttl``."""
        now = time.time()
        if self.broker is not None:
            self.broker.release_session(sid, now=now)
            for stream in presence:
                self.broker.presence_disconnect(stream, sid, now=now)
        elif self.redis_broker is not None:
            self.redis_broker.release_session(sid, snapshot)
            for stream in presence:
                self.redis_broker.presence_disconnect(stream, sid, now=now)

    async def restore_snapshot(self, sid: str) -> SessionSnapshot | None:
        """The snapshot of session ``sid`` when it can be restored (else None)."""
        if self.broker is not None:
            return self.broker.restore_session(sid, now=time.time())
        if self.redis_broker is not None:
            return await self.redis_broker.restore_session(sid)
        return None

    def publish_presence(self, event: PresenceEvent) -> None:
        """Broadcast a presence join/leave to the presence stream (transient)."""
        self.publish(
            [service.presence_publication(event.stream, event.kind, event.presence_id, event.info)]
        )

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
        main_listeners = await _listen(config.host, config.port, "--host", "--port")
        self.main_port = main_listeners[0].socket.getsockname()[1]
        roles: list[tuple[str, list[trio.SocketListener]]] = [("main", main_listeners)]
        if "http" in config.broadcast_adapters and not self._shared_broadcast:
            extra = await _listen(
                config.host, config.http_broadcast_port, "--host", "--http_broadcast_port"
            )
            self.broadcast_port = extra[0].socket.getsockname()[1]
            roles.append(("broadcast", extra))
        else:
            self.broadcast_port = self.main_port
        if self._metrics_apart():
            extra = await _listen(
                config.metrics_host or config.host,
                config.metrics_port,
                "--metrics_host" if config.metrics_host else "--host",
                "--metrics_port",
            )
            self.metrics_port = extra[0].socket.getsockname()[1]
            roles.append(("metrics", extra))
        elif config.metrics_http:
            self.metrics_port = self.main_port
        self._announce()
        listeners = [listener for _, group in roles for listener in group]
        try:
            # Redis links outlive the clients: what sessions write as they close (snapshots
            # kept for restore, presence expiries) is flushed before the node exits
            async with trio.open_nursery() as links:
                for adapter in (self.subscriber, self.publisher, self.consumer):
                    if adapter is not None:
                        links.start_soon(adapter.run)
                await self._serve_until_shutdown(roles, listeners, handle_signals, task_status)
                await self._flush_redis()
                links.cancel_scope.cancel()
        finally:
            _close_listeners(listeners)

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
            async with trio.open_nursery() as accepting:
                for role, group in roles:
                    accepting.start_soon(self._serve, group, handlers, role)
                if handle_signals:
                    accepting.start_soon(self._watch_signals)
                if self.broker is not None:
                    accepting.start_soon(self._sweep, self.broker)
                if self.redis_broker is not None:
                    accepting.start_soon(self._sweep_redis, self.redis_broker)
                accepting.start_soon(self._run_timers)
                if config.metrics_log:
                    accepting.start_soon(self._log_metrics)
                if config.statsd_host:
                    accepting.start_soon(run_statsd, self.metrics, config)
                task_status.started(self)
                await self._shutdown.wait()
                if config.shutdown_delay > 0:
                    # keep serving while a load balancer notices we are going away
                    log.info("Waiting %gs before shutting down", config.shutdown_delay)
                    await trio.sleep(config.shutdown_delay)
                accepting.cancel_scope.cancel()
            _close_listeners(listeners)  # stop accepting before telling clients
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
        with trio.move_on_after(self.config.shutdown_timeout):
            for session in sessions:
                await session.wait_closed()
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
        while True:
            token = object()
            if limiter is not None:
                await limiter.acquire_on_behalf_of(token)
            try:
                stream = await listener.accept()
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
            handlers.start_soon(self._handle, stream, role, token, limiter)

    async def _handle(
        self,
        stream: trio.SocketStream,
        role: str,
        token: object,
        limiter: trio.CapacityLimiter | None,
    ) -> None:
        try:
            await handle_connection(self, stream, main=role == "main", role=role)
        except Exception:  # a bug must cost one connection, never the server
            log.exception("unexpected error while serving a connection")
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(token)

    async def _sweep(self, broker: MemoryBroker) -> None:
        """Expire history, sessions and presence once a second (AnyCable's sweeper), in
        slices of :data:`SWEEP_SLICE` with a checkpoint between them, so that a mass
        expiry (a million streams published together) never holds the event loop."""
        while True:
            await trio.sleep(1)
            now = time.time()
            while True:
                for event in broker.expire(now, budget=SWEEP_SLICE):
                    self.publish_presence(event)
                if not broker.expiry_pending(now):
                    break
                await trio.lowlevel.checkpoint()

    async def _sweep_redis(self, broker: RedisBroker) -> None:
        """Expire presence in Redis once a second (each expiry is handed to one node),
        and renew the leases of this node's live presence every third of a lease."""
        renewed = trio.current_time()
        while True:
            await trio.sleep(min(1.0, broker.presence_lease / 3))
            now = time.time()
            if trio.current_time() - renewed >= broker.presence_lease / 3:
                renewed = trio.current_time()
                broker.presence_renew(
                    (
                        (stream, session.sid)
                        for session in self.sessions
                        for _presence_id, stream in session.core.presence.values()
                    ),
                    now=now,
                )
            broker.expire(now, self.publish_presence)

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
        if self.redis_broker is not None:
            rb = self.redis_broker
            log.info(
                "Using Redis broker at %s (history limit: %d, history ttl: %gs, "
                "sessions ttl: %gs, presence ttl: %gs)",
                redis_target(config).describe(),
                rb.history_limit,
                rb.history_ttl,
                rb.sessions_ttl,
                rb.presence_ttl,
            )
        broker = self.broker
        if broker is not None:
            log.info(
                "Using in-memory broker (epoch: %s, history limit: %d, history ttl: %gs, "
                "sessions ttl: %gs, presence ttl: %gs)",
                broker.epoch,
                broker.history_limit,
                broker.history_ttl,
                broker.sessions_ttl,
                broker.presence_ttl,
            )
            if broker.history_max_bytes:
                log.info(
                    "History capped at %d bytes: the oldest messages are evicted first",
                    broker.history_max_bytes,
                )
        elif self.redis_broker is None:
            log.info("No broker: streams keep no history and sessions cannot be restored")
        if self.publisher is not None or self.subscriber is not None or self.consumer is not None:
            url = redis_target(config).describe()
            if "redis" in config.broadcast_adapters:
                log.info("Accept broadcasts from Redis channel %s at %s", config.redis_channel, url)
            if self.consumer is not None:
                log.info(
                    "Accept broadcasts from Redis stream %s (group bx) at %s",
                    config.redisx_stream,
                    url,
                )
            if self.publisher is not None:
                log.info("Using Redis pub/sub at %s", url)
        if config.sse:
            log.info("Handle SSE requests at %s%s", base, config.sse_path)
        channels = ["$pubsub"]
        if config.turbo_streams:
            channels.append("Turbo::StreamsChannel")
        log.info("Using channels router: %s", ", ".join(channels))
        if config.public:
            log.info("Server is running in the public mode")


def _shared_members(groups: Iterable[set[Session]]) -> bool:
    """Whether a session is in more than one of ``groups``."""
    seen: set[Session] = set()
    total = 0
    for group in groups:
        seen |= group
        total += len(group)
    return len(seen) != total


def _tune_garbage_collector() -> None:
    """Keep the cyclic collector off the fan-out path.

    Every connection keeps a few long-lived objects (tasks, cancel scopes, events);
    with thousands of them each young-generation collection walks a large, stable
    heap. Objects created at start-up are frozen out of collections, and the
    young-generation threshold is raised so collections are rare and cheap (the
    benchmarks in docs/benchmarks.md measured the collector as most of the CPU per
    delivery at 5 000 subscribers).

    This is safe for memory only because a closed session is freed by reference
    counting: nothing it owns points back at it (tests/integration/test_session_freed.py
    proves it with the collector off). A reference cycle through a session would keep
    it until a rare full collection (bench/churn.py shows the growth).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _raise_open_file_limit() -> None:
    """Every connection is a file descriptor: use the hard limit, as AnyCable-Go does."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        log.info("Open file limit: %d", soft)
    except (ImportError, ValueError, OSError) as exc:  # not on every platform
        log.warning("could not raise the open file limit: %s", exc)


async def _listen(
    host: str, port: int, host_option: str, port_option: str
) -> list[trio.SocketListener]:
    """trio.open_tcp_listeners, its failure as a StartupError naming the options."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise StartupError.cannot_listen(exc, host, port, host_option, port_option) from exc


def _close_listeners(listeners: list[trio.SocketListener]) -> None:
    for listener in listeners:
        listener.socket.close()


async def serve(
    config: Config,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a Cableway server for ``config`` until shut down."""
    _raise_open_file_limit()
    _tune_garbage_collector()
    await Server(config).run(handle_signals=handle_signals, task_status=task_status)
