"""The resolved configuration: :class:`Config`, what the rest of Cableway reads.

Every field's default is its option's declared value (:mod:`cableway.config.options`), so
``Config()`` is what ``cableway`` runs with when nothing is set.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, fields
from typing import Any

from ..protocol.broker import MemoryBroker
from ..protocol.channels import StreamPolicy
from ..protocol.handshake import AuthPolicy
from ..protocol.limits import Limits
from ..rpc.settings import RpcSettings
from .options import BY_FIELD, OPEN_BROADCAST_PORT

__all__ = ["REDACTED", "SECRET_FIELDS", "Config"]

REDACTED = "[REDACTED]"
#: The Config fields that hold secrets (never logged, redacted by --print-config).
SECRET_FIELDS = frozenset(option.field for option in BY_FIELD.values() if option.kind == "secret")


def _default(field: str) -> Any:
    """The default of Config field ``field``: its option's declared value."""
    return BY_FIELD[field].value


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Resolved server settings.

    Built by :func:`load_config`, which validates every value. Constructing it directly (tests,
    embedding) skips validation, so e.g. ``Config(port=0)`` asks for an ephemeral port.
    Secrets never appear in ``repr()``; use :meth:`redacted` to log the configuration.
    """

    host: str = _default("host")
    port: int = _default("port")
    path: tuple[str, ...] = _default("path")
    health_path: str = _default("health_path")
    # Authentication and signed streams. ``None`` = unset (the literal ``none`` resolves to it).
    secret: str | None = _default("secret")
    jwt_secret: str | None = _default("jwt_secret")
    jwt_param: str = _default("jwt_param")
    enforce_jwt: bool = _default("enforce_jwt")
    streams_secret: str | None = _default("streams_secret")
    public_streams: bool = _default("public_streams")
    turbo_streams: bool = _default("turbo_streams")
    turbo_streams_secret: str | None = _default("turbo_streams_secret")
    # True only when it takes effect: Turbo Streams enabled and no Turbo secret resolved, so
    # Turbo::StreamsChannel uses signed_stream_name as the plain stream name (AnyCable 1.4).
    turbo_rails_cleartext: bool = _default("turbo_rails_cleartext")
    noauth: bool = _default("noauth")
    public: bool = _default("public")
    # Broadcasting (application -> server).
    broadcast_adapters: tuple[str, ...] = _default("broadcast_adapters")
    broadcast_key: str | None = _default("broadcast_key")
    # the option's 0 ("auto") resolved without a broadcast key
    http_broadcast_port: int = OPEN_BROADCAST_PORT
    http_broadcast_path: str = _default("http_broadcast_path")
    # Scale-out on Redis (spec §11.4-11.7).
    pubsub: str = _default("pubsub")  # "redis": inter-node fan-out through Redis pub/sub
    redis_url: str = _default("redis_url")
    redis_channel: str = _default("redis_channel")
    redisx_stream: str = _default("redisx_stream")
    # Managed Redis: Sentinel and TLS (AnyCable-Go's [redis] section).
    # "" = no Sentinel; else --redis_url's host is the master name
    redis_sentinels: str = _default("redis_sentinels")
    redis_sentinel_discovery_interval: int = _default("redis_sentinel_discovery_interval")
    redis_tls_verify: bool = _default("redis_tls_verify")  # AnyCable-Go's default is false
    redis_tls_ca_cert_path: str = _default("redis_tls_ca_cert_path")  # "" = unset
    redis_tls_client_cert_path: str = _default("redis_tls_client_cert_path")
    redis_tls_client_key_path: str = _default("redis_tls_client_key_path")
    # Reliable streams: stream history, session restore and presence (spec §7). Cableway keeps
    # them in memory by default ("memory"); "none" is AnyCable's no-op broker.
    broker: str = _default("broker")
    history_limit: int = _default("history_limit")
    history_ttl: float = _default("history_ttl")
    sessions_ttl: float = _default("sessions_ttl")  # 0 = no session restore
    presence_ttl: float = _default("presence_ttl")
    history_max_bytes: int = _default("history_max_bytes")  # 0 = no cap (memory broker)
    streams_whisper: bool = _default("streams_whisper")
    streams_presence: bool = _default("streams_presence")
    # WebSocket and pings.
    ping_interval: float = _default("ping_interval")
    ping_timestamp_precision: str = _default("ping_timestamp_precision")
    pong_timeout: float = _default("pong_timeout")  # 0 = off
    max_message_size: int = _default("max_message_size")
    ws_write_timeout: float = _default("ws_write_timeout")
    ws_max_pending_size: int = _default("ws_max_pending_size")
    enable_ws_compression: bool = _default("enable_ws_compression")
    enable_native_pings: bool = _default("enable_native_pings")
    # Server-Sent Events.
    sse: bool = _default("sse")
    sse_path: str = _default("sse_path")
    # Origins and connections.
    allowed_origins: tuple[str, ...] = _default("allowed_origins")  # () = every origin
    max_conn: int = _default("max_conn")  # 0 = unlimited
    # TLS on every listener (AnyCable-Go's [server] ssl.cert_path / ssl.key_path); "" = off
    ssl_cert: str = _default("ssl_cert")
    ssl_key: str = _default("ssl_key")
    # Cableway limits (not AnyCable options).
    max_subscriptions: int = _default("max_subscriptions")
    max_identifier_size: int = _default("max_identifier_size")
    commands_rate: float = _default("commands_rate")  # per second per connection; 0 = off
    commands_burst: int = _default("commands_burst")
    handshake_timeout: float = _default("handshake_timeout")
    max_header_size: int = _default("max_header_size")
    max_broadcast_body: int = _default("max_broadcast_body")
    max_bodies_in_flight: int = _default("max_bodies_in_flight")  # all bodies being received
    # Worker processes (--workers; "auto" resolved to the CPUs this process may use).
    workers: int = 1
    # Shutdown.
    shutdown_timeout: float = _default("shutdown_timeout")
    shutdown_delay: float = _default("shutdown_delay")
    # Logging and metrics.
    log_level: str = _default("log_level")
    log_format: str = _default("log_format")
    metrics_http: str | None = _default("metrics_http")  # e.g. "/metrics"; None = no endpoint
    metrics_host: str | None = _default("metrics_host")  # None = the main host
    metrics_port: int = _default("metrics_port")  # 0 = the main port
    metrics_log: bool = _default("metrics_log")
    metrics_rotate_interval: float = _default("metrics_rotate_interval")
    metrics_tags: tuple[tuple[str, str], ...] = _default("metrics_tags")
    # StatsD (AnyCable-Go's [metrics.statsd] section): "" = off.
    statsd_host: str = _default("statsd_host")
    statsd_prefix: str = _default("statsd_prefix")
    statsd_max_packet_size: int = _default("statsd_max_packet_size")
    statsd_tags_format: str = _default("statsd_tags_format")
    # The live demo page (a Cableway option, not an AnyCable one).
    demo: bool = _default("demo")
    # The REST API (docs/api.md): port 0 = the main port; api_secret is the resolved key
    # (--api_secret, or derived from --secret; None = no authorization).
    api_port: int = _default("api_port")
    api_path: str = _default("api_path")
    api_secret: str | None = _default("api_secret")
    # RPC (rpc.md): None = RPC-less; resolved from the options of .options_rpc.
    rpc: RpcSettings | None = None

    @property
    def api_served(self) -> bool:
        """Whether the REST API is served: as AnyCable-Go 1.6 decides (``cli/cli.go``,
        ``startAPIServer``), only when it is protected by a key, on a port of its own, or
        in public mode."""
        return self.public or self.api_port != 0 or self.api_secret is not None

    # -- the core's settings, derived once for every driver (trio server, ASGI app) --

    def limits(self) -> Limits:
        """The per-session bounds of the sans-IO core."""
        return Limits(
            max_message_size=self.max_message_size,
            max_identifier_size=self.max_identifier_size,
            max_subscriptions=self.max_subscriptions,
            commands_rate=self.commands_rate,
            commands_burst=self.commands_burst,
        )

    def stream_policy(self) -> StreamPolicy:
        """Which built-in channels are served, with which secrets."""
        return StreamPolicy(
            streams_secret=self.streams_secret,
            turbo_streams=self.turbo_streams,
            turbo_secret=self.turbo_streams_secret,
            turbo_cleartext=self.turbo_rails_cleartext,
            public_streams=self.public_streams,
            streams_whisper=self.streams_whisper,
            streams_presence=self.streams_presence,
        )

    def auth_policy(self) -> AuthPolicy:
        """How connections are identified."""
        return AuthPolicy(jwt_secret=self.jwt_secret, enforce_jwt=self.enforce_jwt)

    def new_broker(self) -> MemoryBroker | None:
        """A fresh in-memory broker with a random epoch; ``None`` unless ``--broker=memory``
        (``redis`` is built by the server around its Redis connection)."""
        if self.broker != "memory":
            return None
        alphabet = string.ascii_letters + string.digits
        return MemoryBroker(
            epoch="".join(secrets.choice(alphabet) for _ in range(4)),
            history_limit=self.history_limit,
            history_ttl=self.history_ttl,
            sessions_ttl=self.sessions_ttl,
            presence_ttl=self.presence_ttl,
            history_max_bytes=self.history_max_bytes,
        )

    def redacted(self) -> dict[str, object]:
        """All fields, with every set secret replaced by ``"[REDACTED]"`` (safe to log).

        The Redis URL keeps its host but loses its password.
        """
        result: dict[str, object] = {}
        for field in fields(self):
            value: object = getattr(self, field.name)
            if field.name in SECRET_FIELDS and value is not None:
                value = REDACTED
            elif field.name == "redis_url" and isinstance(value, str):
                value = _redact_url_password(value)
            elif field.name == "redis_sentinels" and isinstance(value, str):
                value = ",".join(_redact_url_password(item) for item in value.split(","))
            result[field.name] = value
        return result

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Config({inner})"


def _redact_url_password(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:[REDACTED]@host``."""
    return re.sub(r"^(\s*(?:[a-z][a-z0-9+.-]*://)?[^:/@]*:)[^@/]*@", rf"\g<1>{REDACTED}@", url)
