"""How a node opens its sessions (pure): one home, for the trio server and the ASGI app,
for the handshake glue around the core's pure decisions.

:class:`SessionRules` holds what every session of one node shares (limits, channel
policy, authentication, ping options) and which core features the node's backend allows
(history, presence and restore only with a backend that keeps state). Its methods map an
opening request (WebSocket upgrade or event stream) to the core's decision
(:mod:`cableway.protocol.handshake`, :mod:`cableway.protocol.sse`), build the session's
core and count and log the outcome. What waits (the snapshot of a restored session, the
transport's own handshake) stays with the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..auth.origin import origin_allowed
from ..protocol.broker import SessionSnapshot
from ..protocol.channels import StreamPolicy
from ..protocol.connection import CableConnection, SessionSettings, SessionState
from ..protocol.handshake import (
    Accepted,
    AuthPolicy,
    Rejected,
    Restored,
    WebSocketOpen,
    identify,
    websocket_open,
)
from ..protocol.limits import Limits
from ..protocol.sse import Refusal, SseOpen, sse_connection, sse_open
from ..rpc.messages import Status
from .backend import Backend
from .intake import Counters
from .rpc import Application, RpcSession, connect_needed

__all__ = ["SSE_BAD_METHOD", "SSE_PREFLIGHT", "SSE_TOO_LARGE", "SessionConfig", "SessionRules"]

#: the answer to an event stream's CORS preflight (``OPTIONS``), CORS headers added
SSE_PREFLIGHT = Refusal(200, b"")
#: the answer to an event-stream request with a method other than GET, POST and OPTIONS
SSE_BAD_METHOD = Refusal(405, b"Method Not Allowed")
#: the answer to an event-stream POST whose body is over ``max_message_size``
SSE_TOO_LARGE = Refusal(413, b"Payload Too Large")

log = logging.getLogger("cableway.node")

#: at most this many distinct session settings are shared (see SessionRules.settings)
SHARED_SETTINGS = 64


class SessionConfig(Protocol):
    """What :class:`SessionRules` reads from the configuration (``cableway.config.Config``)."""

    @property
    def jwt_param(self) -> str: ...

    @property
    def ping_interval(self) -> float: ...

    @property
    def ping_timestamp_precision(self) -> str: ...

    @property
    def pong_timeout(self) -> float: ...

    @property
    def max_message_size(self) -> int: ...

    @property
    def allowed_origins(self) -> Sequence[str]: ...

    @property
    def enable_ws_compression(self) -> bool: ...

    def limits(self) -> Limits: ...

    def stream_policy(self) -> StreamPolicy: ...

    def auth_policy(self) -> AuthPolicy: ...


@dataclass(frozen=True, slots=True)
class SessionRules:
    """What every session of one node is opened with.

    Attributes:
        limits: size and count bounds (``Config.limits()``).
        policy: the built-in channels and their secrets (``Config.stream_policy()``).
        auth: how clients authenticate (``Config.auth_policy()``).
        jwt_param, ping_interval, ping_precision, pong_timeout, max_message_size: the
            options of the same names (``ping_precision``: ``ping_timestamp_precision``).
        allowed_origins: ``Config.allowed_origins`` (WebSocket and SSE).
        native_pings: the transport can send WebSocket pings and the config asks for them
            (the ASGI app cannot: always ``False`` there).
        backend: the node's backend; history, presence and restore are offered when it
            keeps state.
        compression: ``--enable_ws_compression``: a WebSocket opening negotiates
            permessage-deflate (:attr:`WebSocketOpen.deflate`; the ASGI app leaves it
            to its ASGI server and ignores it).
    """

    limits: Limits
    policy: StreamPolicy
    auth: AuthPolicy
    jwt_param: str
    ping_interval: float
    ping_precision: str
    pong_timeout: float
    max_message_size: int
    allowed_origins: tuple[str, ...]
    native_pings: bool
    backend: Backend[Any]
    compression: bool = False
    #: the settings handed out, by what a request chose (see :meth:`settings`)
    _settings: dict[tuple[float, str, bool, bool], SessionSettings] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_config(
        cls, config: SessionConfig, backend: Backend[Any], *, native_pings: bool
    ) -> SessionRules:
        return cls(
            limits=config.limits(),
            policy=config.stream_policy(),
            auth=config.auth_policy(),
            jwt_param=config.jwt_param,
            ping_interval=config.ping_interval,
            ping_precision=config.ping_timestamp_precision,
            pong_timeout=config.pong_timeout,
            max_message_size=config.max_message_size,
            allowed_origins=tuple(config.allowed_origins),
            native_pings=native_pings,
            backend=backend,
            compression=config.enable_ws_compression,
        )

    def settings(
        self, ping_interval: float, ping_precision: str, *, extended: bool, delegate: bool = False
    ) -> SessionSettings:
        """The settings of one session, from its opening (ping options, subprotocol);
        ``delegate``: it may hand commands to the application (RPC).

        Sessions that chose the same share one object (immutable; one per connection
        would be memory per idle connection), up to :data:`SHARED_SETTINGS` choices
        (clients choose the ping options: beyond that each gets its own).
        """
        key = (ping_interval, ping_precision, extended, delegate)
        shared = self._settings.get(key)
        if shared is not None:
            return shared
        backend = self.backend
        brokered = backend.keeps_state
        settings = SessionSettings(
            ping_interval=ping_interval,
            ping_precision=ping_precision,
            limits=self.limits,
            policy=self.policy,
            extended=extended,
            pong_timeout=self.pong_timeout,
            history=brokered,
            presence=brokered,
            resumable=brokered and backend.resumable,
            native_pings=self.native_pings,
            delegate=delegate,
        )
        if len(self._settings) < SHARED_SETTINGS:
            self._settings[key] = settings
        return settings

    # -- WebSocket -----------------------------------------------------------------------

    def origin_refusal(self, origins: Sequence[bytes]) -> tuple[int, bytes] | None:
        """Cross-site WebSocket hijacking protection, before the upgrade is answered:
        ``origins`` are the request's ``Origin`` header values. ``400`` for several,
        ``403`` for one that ``allowed_origins`` does not allow; ``None``: go on."""
        if len(origins) > 1:
            log.info("WebSocket refused: several Origin headers")
            return 400, b"Bad Request: several Origin headers"
        origin = origins[0].decode("latin-1") if origins else None
        if not origin_allowed(origin, self.allowed_origins):
            log.info("WebSocket refused: origin %r is not allowed", origin)
            return 403, b"Forbidden"
        return None

    def websocket_open(
        self,
        *,
        headers: Mapping[str, str],
        query: str,
        subprotocols: Sequence[str],
        fresh_sid: str,
    ) -> WebSocketOpen:
        """The upgrade request mapped (subprotocol, sid, ping options, token, sid to
        restore, compression)."""
        return websocket_open(
            headers=headers,
            query=query,
            subprotocols=subprotocols,
            fresh_sid=fresh_sid,
            jwt_param=self.jwt_param,
            ping_interval=self.ping_interval,
            ping_precision=self.ping_precision,
            compression=self.compression,
        )

    def websocket_core(
        self, opening: WebSocketOpen, *, now: float, ping_jitter: float, delegate: bool = False
    ) -> CableConnection:
        """The core of an accepted upgrade (not yet identified); ``delegate``: the node
        has an RPC application to hand commands to."""
        settings = self.settings(
            opening.ping_interval,
            opening.ping_precision,
            extended=opening.extended,
            delegate=delegate,
        )
        return CableConnection(sid=opening.sid, settings=settings, now=now, ping_jitter=ping_jitter)

    def identify(
        self,
        core: CableConnection,
        opening: WebSocketOpen,
        snapshot: SessionSnapshot | None,
        *,
        now: float,
        unix_time: float,
        metrics: Counters,
    ) -> Restored | Accepted | Rejected:
        """Restore, accept or reject ``core`` (``snapshot``: the driver's look-up of
        ``opening.restore_sid``, or ``None``); a rejection counts ``failed_auths_total``."""
        outcome = identify(core, opening, snapshot, policy=self.auth, now=now, unix_time=unix_time)
        sid = core.sid
        if isinstance(outcome, Restored):
            log.debug("restored sid=%s from=%s", sid, outcome.previous_sid)
        elif isinstance(outcome, Accepted):
            log.debug("connected sid=%s protocol=%s", sid, opening.subprotocol)
        else:
            metrics.inc("failed_auths_total")
            log.info("connection rejected sid=%s reason=%s", sid, outcome.reason)
        return outcome

    async def open_websocket(
        self,
        core: CableConnection,
        opening: WebSocketOpen,
        *,
        application: tuple[Application, RpcSession] | None,
        noauth: bool,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        metrics: Counters,
    ) -> None:
        """Identify an accepted upgrade's core, as every driver does: a session that asks
        for a restore gets its snapshot from the backend (no re-authentication); then the
        application decides when it should (``application``: its calls and this session's
        state, rpc.md §4.2: not for a restored or JWT-identified session, not with
        ``noauth``), else :meth:`identify` (the token) does. A rejection by either counts
        ``failed_auths_total``. It awaits only the backend's and the application's own
        answers; ``clock`` is the driver's monotonic clock, ``wall_clock`` Unix time."""
        snapshot = None
        if opening.restore_sid is not None:
            snapshot = await self.backend.restore_session(opening.restore_sid, now=wall_clock())
        if application is not None:
            calls, state = application
            restored = snapshot is not None
            if connect_needed(opening.token, self.auth, noauth=noauth, restored=restored):
                answer = await calls.connect(core.sid, state.connect_request())
                status = state.apply_connect(core, answer)
                if status is not Status.SUCCESS:
                    metrics.inc("failed_auths_total")
                    log.info(
                        "connection rejected by the application sid=%s status=%s",
                        core.sid,
                        status.name,
                    )
                return
        outcome = self.identify(
            core, opening, snapshot, now=clock(), unix_time=wall_clock(), metrics=metrics
        )
        if application is not None and core.identifiers is not None:
            state = application[1]
            if core.state is SessionState.OPEN:
                state.identified(core.identifiers)
                if isinstance(outcome, Restored) and snapshot is not None:
                    state.restore(core, snapshot)

    # -- Server-Sent Events --------------------------------------------------------------

    def sse_request(self, method: str) -> Refusal | int | None:
        """What an event-stream request gets before its body is read: a CORS preflight
        (``OPTIONS``) is answered ``200`` with no body, a method other than ``GET`` and
        ``POST`` ``405``; a ``POST`` body (JSON lines of commands) may have up to
        ``max_message_size`` bytes (the limit is returned; over it: :data:`SSE_TOO_LARGE`);
        ``None``: a ``GET``, whose body is not read (its query says what to subscribe)."""
        if method == "OPTIONS":
            return SSE_PREFLIGHT
        if method == "GET":
            return None
        if method == "POST":
            return self.max_message_size
        return SSE_BAD_METHOD

    def sse_open(
        self,
        method: str,
        *,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        fresh_sid: str,
        unix_time: float,
        metrics: Counters,
    ) -> SseOpen | Refusal:
        """An event-stream request mapped, or refused (a ``401`` counts
        ``failed_auths_total``)."""
        opening = sse_open(
            method,
            query=query,
            headers=headers,
            body=body,
            fresh_sid=fresh_sid,
            policy=self.auth,
            jwt_param=self.jwt_param,
            ping_interval=self.ping_interval,
            ping_precision=self.ping_precision,
            max_size=self.max_message_size,
            unix_time=unix_time,
        )
        if isinstance(opening, Refusal) and opening.status == 401:
            metrics.inc("failed_auths_total")
        return opening

    def sse_core(
        self, opening: SseOpen, *, now: float, ping_jitter: float
    ) -> CableConnection | Refusal:
        """The subscribed core of an event stream, or a refusal (then nothing was carried
        out yet: drop the core)."""
        settings = self.settings(opening.ping_interval, opening.ping_precision, extended=False)
        return sse_connection(opening, settings=settings, now=now, ping_jitter=ping_jitter)

    def sse_delegating_core(
        self, opening: SseOpen, *, now: float, ping_jitter: float
    ) -> CableConnection:
        """The core of an event stream whose subscriptions may be application channels:
        new, neither accepted nor subscribed (``cableway.node.rpc.open_event_stream``
        does both)."""
        settings = self.settings(
            opening.ping_interval, opening.ping_precision, extended=False, delegate=True
        )
        return CableConnection(sid=opening.sid, settings=settings, now=now, ping_jitter=ping_jitter)
