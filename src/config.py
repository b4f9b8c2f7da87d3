"""Cableway configuration: AnyCable-compatible options from the environment and the command line.

Sources, lowest to highest precedence: environment variables, then command-line flags. Names
follow AnyCable-Go (spec §13.1/§13.2): the environment variable of ``--some_flag`` is
``ANYCABLE_SOME_FLAG``. :func:`load_config` is pure: it reads only the ``argv`` and ``env`` it is
given and returns a :class:`Config` whose values are fully resolved (secret fallbacks applied,
broadcast key derived, broadcast port chosen), so the rest of the server never re-derives them.

Everything the user can set is described once, in :data:`OPTIONS` (accepted options) and
:data:`REFUSED` (AnyCable options Cableway recognises but cannot honour yet). ``--help`` and
``docs/configuration.md`` are generated from these tables.
"""

from __future__ import annotations

import argparse
import decimal
import difflib
import errno
import json
import math
import re
import secrets
import socket
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Literal, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

from . import anycable_toml
from .auth.keys import derive_broadcast_key
from .protocol.broker import MemoryBroker
from .protocol.channels import StreamPolicy
from .protocol.handshake import AuthPolicy
from .protocol.limits import Limits
from .protocol.routes import parse_path_pattern
from .rpc.http import derive_rpc_key
from .rpc.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DISCONNECT_RATE,
    DEFAULT_HEADERS,
    DEFAULT_REQUEST_TIMEOUT_MS,
    DISCONNECT_MODES,
    RpcSettings,
    parse_header_names,
    parse_rpc_host,
    request_timeout_seconds,
)

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "OPTIONS",
    "REDACTED",
    "REFUSED",
    "SECRET_FIELDS",
    "Config",
    "ConfigError",
    "FileOptions",
    "Option",
    "Refusal",
    "SentinelAddress",
    "StartupError",
    "config_toml",
    "file_options",
    "load_config",
    "load_config_with_warnings",
    "parse_sentinels",
    "read_config_file",
    "unread_variables",
]

Kind = Literal["str", "int", "float", "bool", "list", "secret"]
_T = TypeVar("_T")

REDACTED = "[REDACTED]"
SECRET_FIELDS = frozenset(
    {"secret", "jwt_secret", "streams_secret", "turbo_streams_secret", "broadcast_key"}
)


class ConfigError(Exception):
    """An unknown, invalid or unsupported option. The message names the option, for users."""


class StartupError(Exception):
    """The server could not start listening; the message names the cause and the option.

    Raised by the transport when a listener cannot be opened (``cableway`` prints it as one
    ``cableway: error: ...`` line).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @classmethod
    def cannot_listen(
        cls, error: OSError, host: str, port: int, host_option: str, port_option: str
    ) -> StartupError:
        """The error for ``error`` raised while binding ``host``:``port``."""
        where = f"{host}:{port}"
        if isinstance(error, socket.gaierror):
            return cls(
                f"cannot resolve the address {host!r} ({host_option}): {error.strerror or error}"
            )
        if error.errno == errno.EADDRINUSE:
            return cls(
                f"port {port} on {host} is already in use ({port_option}): stop the other "
                "server or choose another port"
            )
        if error.errno == errno.EACCES:
            hint = (
                ": ports below 1024 need root (or CAP_NET_BIND_SERVICE); choose a port of 1024 "
                "or more"
                if 0 < port < 1024
                else ""
            )
            return cls(f"permission denied to listen on {where} ({port_option}){hint}")
        if error.errno == errno.EADDRNOTAVAIL:
            return cls(
                f"cannot listen on {where} ({host_option}): the address is not one of this "
                "machine's"
            )
        return cls(
            f"cannot listen on {where} ({host_option}, {port_option}): {error.strerror or error}"
        )


# ---------------------------------------------------------------------------------------------
# The resolved configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Resolved server settings.

    Built by :func:`load_config`, which validates every value. Constructing it directly (tests,
    embedding) skips validation, so e.g. ``Config(port=0)`` asks for an ephemeral port.
    Secrets never appear in ``repr()``; use :meth:`redacted` to log the configuration.
    """

    host: str = "localhost"
    port: int = 8080
    path: tuple[str, ...] = ("/cable",)
    health_path: str = "/health"
    # Authentication and signed streams. ``None`` = unset (the literal ``none`` resolves to it).
    secret: str | None = None
    jwt_secret: str | None = None
    jwt_param: str = "jid"
    enforce_jwt: bool = False
    streams_secret: str | None = None
    public_streams: bool = False
    turbo_streams: bool = False
    turbo_streams_secret: str | None = None
    # True only when it takes effect: Turbo Streams enabled and no Turbo secret resolved, so
    # Turbo::StreamsChannel uses signed_stream_name as the plain stream name (AnyCable 1.4).
    turbo_rails_cleartext: bool = False
    noauth: bool = False
    public: bool = False
    # Broadcasting (application -> server).
    broadcast_adapters: tuple[str, ...] = ("http",)
    broadcast_key: str | None = None
    http_broadcast_port: int = 8090
    http_broadcast_path: str = "/_broadcast"
    # Scale-out on Redis (spec §11.4-11.7).
    pubsub: str = "none"  # "redis": inter-node fan-out through Redis pub/sub
    redis_url: str = "redis://localhost:6379"
    redis_channel: str = "__anycable__"
    redisx_stream: str = "__anycable__"
    # Managed Redis: Sentinel and TLS (AnyCable-Go's [redis] section).
    redis_sentinels: str = ""  # "" = no Sentinel; else --redis_url's host is the master name
    redis_sentinel_discovery_interval: int = 30  # accepted; unused, as in AnyCable-Go 1.6
    redis_tls_verify: bool = True  # AnyCable-Go's default is false (no check at all)
    redis_tls_ca_cert_path: str = ""  # "" = unset (as in AnyCable-Go)
    redis_tls_client_cert_path: str = ""
    redis_tls_client_key_path: str = ""
    # Reliable streams: stream history, session restore and presence (spec §7). Cableway keeps
    # them in memory by default ("memory"); "none" is AnyCable's no-op broker.
    broker: str = "memory"
    history_limit: int = 100
    history_ttl: float = 300.0
    sessions_ttl: float = 300.0  # 0 = no session restore
    presence_ttl: float = 15.0
    history_max_bytes: int = 0  # 0 = no cap on what the memory broker's history holds
    streams_whisper: bool = False
    streams_presence: bool = True
    # WebSocket and pings.
    ping_interval: float = 3.0
    ping_timestamp_precision: str = "s"
    pong_timeout: float = 0.0  # 0 = off
    max_message_size: int = 65536
    ws_write_timeout: float = 2.0
    ws_max_pending_size: int = 1048576
    enable_native_pings: bool = False
    # Server-Sent Events.
    sse: bool = True
    sse_path: str = "/events"
    # Origins and connections.
    allowed_origins: tuple[str, ...] = ()  # () = every origin (AnyCable's default)
    max_conn: int = 0  # 0 = unlimited
    # Cableway limits (not AnyCable options).
    max_subscriptions: int = 128
    max_identifier_size: int = 8192
    commands_rate: float = 100.0  # commands per second per connection; 0 = unlimited
    commands_burst: int = 200
    handshake_timeout: float = 5.0
    max_header_size: int = 16384
    max_broadcast_body: int = 1048576
    max_bodies_in_flight: int = 67108864  # every HTTP request body being received
    # Shutdown.
    shutdown_timeout: float = 30.0
    shutdown_delay: float = 0.0
    # Logging and metrics.
    log_level: str = "info"
    log_format: str = "text"
    metrics_http: str | None = None  # e.g. "/metrics"; None = no endpoint
    metrics_host: str | None = None  # None = the main host
    metrics_port: int = 0  # 0 = the main port
    metrics_log: bool = False
    metrics_rotate_interval: float = 15.0
    metrics_tags: tuple[tuple[str, str], ...] = ()
    # StatsD (AnyCable-Go's [metrics.statsd] section): "" = off.
    statsd_host: str = ""
    statsd_prefix: str = "anycable_go."
    statsd_max_packet_size: int = 1400
    statsd_tags_format: str = "datadog"
    # The live demo page (a Cableway option, not an AnyCable one).
    demo: bool = False
    # RPC (rpc.md): None = RPC-less.
    rpc: RpcSettings | None = None

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


# ---------------------------------------------------------------------------------------------
# The option tables
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One command-line flag and its environment variables."""

    name: str  # as spelled on the command line, without the leading "--"
    kind: Kind
    default: str  # human-readable, for --help and the docs
    help: str
    section: str
    env: tuple[str, ...]  # highest precedence first; () = no environment variable
    replaced_by: str | None = None  # deprecated alias of this option

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def metavar(self) -> str:
        return _METAVARS[self.kind]


_METAVARS: dict[Kind, str] = {
    "str": "VALUE",
    "int": "N",
    "float": "SECONDS",
    "bool": "BOOL",
    "list": "A,B",
    "secret": "SECRET",
}


def _env_name(name: str) -> str:
    return "ANYCABLE_" + re.sub(r"[-_]", "_", name).upper()


def _option(
    name: str,
    kind: Kind,
    default: str,
    help: str,
    section: str,
    *,
    env: tuple[str, ...] | None = None,
    replaced_by: str | None = None,
) -> Option:
    return Option(
        name=name,
        kind=kind,
        default=default,
        help=help,
        section=section,
        env=(_env_name(name),) if env is None else env,
        replaced_by=replaced_by,
    )


SERVER = "Server"
AUTH = "Authentication (JWT)"
STREAMS = "Signed streams and Turbo Streams"
BROADCAST = "Broadcasting"
BROKER = "Reliable streams (history, session restore, presence)"
WEBSOCKET = "WebSocket and pings"
SSE = "Server-Sent Events"
LIMITS = "Cableway limits (not AnyCable options)"
LOGGING = "Logging"
METRICS = "Metrics"
CONFIG_FILE = "Configuration file"
DEPRECATED = "Deprecated aliases"

RPC = "RPC (the application's channels over AnyCable's HTTP RPC; docs/rpc.md)"

# The RPC options, kept together (an isolated block, easy to move): rpc.md §3-§4.
RPC_OPTIONS: tuple[Option, ...] = (
    _option(
        "rpc_host",
        "str",
        "unset (no RPC)",
        "the application's AnyCable HTTP RPC URL (http:// or https://, e.g. "
        "http://localhost:3000/_anycable); Cableway then calls Connect, Command and Disconnect "
        "there for channels it does not serve itself. gRPC hosts are not supported",
        RPC,
    ),
    _option(
        "norpc",
        "bool",
        "true unless --rpc_host is set",
        "no RPC at all (JWT, signed streams, Turbo Streams only); wins over --rpc_host",
        RPC,
    ),
    _option(
        "http_rpc_secret",
        "secret",
        "derived from --secret",
        "bearer key sent to the RPC app (Authorization: Bearer KEY); unset = "
        'hex(HMAC-SHA256(--secret, "rpc-cable")), or no header without --secret',
        RPC,
    ),
    _option(
        "rpc_concurrency",
        "int",
        "28",
        "RPC calls in flight at most (Connect, Command and Disconnect share it); more wait",
        RPC,
    ),
    _option(
        "rpc_request_timeout",
        "int",
        "3000",
        "milliseconds one RPC call may take (0 = 3000)",
        RPC,
    ),
    _option(
        "headers",
        "list",
        "cookie",
        "handshake headers forwarded to the RPC app in env.headers, comma-separated",
        RPC,
    ),
    _option(
        "proxy-cookies",
        "list",
        "unset (all cookies)",
        "cookie names kept in the forwarded cookie header, comma-separated",
        RPC,
    ),
    _option(
        "disconnect_mode",
        "str",
        "auto",
        "when to call Disconnect: auto (sessions that used RPC), always, never",
        RPC,
    ),
    _option(
        "disconnect_rate",
        "int",
        "100",
        "Disconnect calls per second at most (a mass disconnect is queued, not a burst)",
        RPC,
    ),
)


def _resolve_rpc(get: _Resolver, secret: str | None) -> RpcSettings | None:
    """The RPC settings, or ``None`` for RPC-less (the default)."""
    host_raw = get.pick("rpc_host")
    norpc_raw = get.pick("norpc")
    norpc = get.boolean("norpc", default=host_raw is None or not host_raw.value.strip())
    if norpc:
        return None
    if host_raw is None or not host_raw.value.strip():
        assert norpc_raw is not None
        get.fail(
            norpc_raw,
            "RPC needs --rpc_host=http(s)://... (the application's HTTP RPC URL); Cableway "
            "has no default RPC host (AnyCable-Go's is gRPC localhost:50051)",
        )
    host = get.convert(host_raw, parse_rpc_host)
    key_given, key = get.secret("http_rpc_secret")
    if not key_given and secret is not None:
        key = derive_rpc_key(secret)
    headers_raw = get.pick("headers")
    headers: tuple[str, ...] = DEFAULT_HEADERS
    if headers_raw is not None:
        headers = get.convert(headers_raw, lambda v: parse_header_names(_split_list(v)))
    cookies_raw = get.pick("proxy-cookies")
    proxy_cookies: tuple[str, ...] | None = None
    if cookies_raw is not None and cookies_raw.value.strip():
        proxy_cookies = tuple(name.strip() for name in _split_list(cookies_raw.value))
    return RpcSettings(
        host=host,
        key=key,
        concurrency=get.integer("rpc_concurrency", DEFAULT_CONCURRENCY, 1),
        request_timeout=request_timeout_seconds(
            get.integer("rpc_request_timeout", DEFAULT_REQUEST_TIMEOUT_MS, 0)
        ),
        headers=headers,
        proxy_cookies=proxy_cookies,
        disconnect_mode=get.choice("disconnect_mode", "auto", DISCONNECT_MODES),
        disconnect_rate=get.integer("disconnect_rate", DEFAULT_DISCONNECT_RATE, 1),
    )


OPTIONS: tuple[Option, ...] = (
    _option("host", "str", "localhost", "address to bind (0.0.0.0 = all interfaces)", SERVER),
    _option(
        "port",
        "int",
        "8080",
        "main port: WebSocket, health, and HTTP broadcasts when a broadcast key is set",
        SERVER,
        env=("ANYCABLE_PORT", "PORT"),
    ),
    _option(
        "path",
        "list",
        "/cable",
        "WebSocket endpoint path(s), comma-separated; each may be a pattern with {placeholders} "
        "and a trailing * (/accounts/{tenant}/cable, /admin/cable/*), as in AnyCable-Go",
        SERVER,
    ),
    _option("health-path", "str", "/health", "health check endpoint path", SERVER),
    _option(
        "demo",
        "bool",
        "false",
        "Cableway option (not AnyCable's): serve a live Turbo demo page at / (WebSocket and "
        "SSE panes), generating and printing any missing secret; only for loopback clients "
        "unless --host is not a loopback address (docs/demo.md)",
        SERVER,
    ),
    _option(
        "noauth",
        "bool",
        "false",
        'accept every connection without authentication (identifiers {"sid":...})',
        SERVER,
    ),
    _option(
        "public",
        "bool",
        "false",
        "public mode: --noauth + --public_streams + unauthenticated HTTP broadcasting "
        "(even when a secret is set)",
        SERVER,
    ),
    _option(
        "allowed_origins",
        "list",
        "unset (every origin)",
        "origins that may open a WebSocket or get CORS headers, comma-separated: "
        "example.com, localhost:3000, *.example.com, https://app.example.com; * = all "
        "(explicitly)",
        SERVER,
    ),
    _option(
        "max-conn",
        "int",
        "0 (unlimited)",
        "most concurrent client connections; further ones wait in the listen backlog",
        SERVER,
    ),
    _option(
        "shutdown_timeout",
        "float",
        "30",
        "graceful shutdown budget, in seconds",
        SERVER,
    ),
    _option(
        "shutdown_delay",
        "float",
        "0",
        "seconds to keep serving after SIGTERM/SIGINT before shutting down (lets a load "
        "balancer de-register the node)",
        SERVER,
    ),
    _option(
        "secret",
        "secret",
        "unset",
        "master secret: default JWT, streams and Turbo secret; derives the broadcast key",
        AUTH,
    ),
    _option(
        "jwt_secret",
        "secret",
        "--secret",
        "JWT (HMAC) secret; enables JWT identification",
        AUTH,
    ),
    _option(
        "jwt_param",
        "str",
        "jid",
        "query parameter carrying the token; the header is X- plus it (X-JID by default)",
        AUTH,
    ),
    _option(
        "enforce_jwt",
        "bool",
        "false",
        "reject connections without a token (reason unauthorized); needs a JWT secret",
        AUTH,
    ),
    _option(
        "streams_secret",
        "secret",
        "--secret",
        "secret verifying signed stream names ($pubsub signed_stream_name)",
        STREAMS,
    ),
    _option(
        "public_streams",
        "bool",
        "false",
        "allow unsigned $pubsub subscriptions by stream_name",
        STREAMS,
    ),
    _option(
        "turbo_streams",
        "bool",
        "false",
        "serve Turbo::StreamsChannel (needs a Turbo secret, or --turbo_rails_cleartext)",
        STREAMS,
    ),
    _option(
        "turbo_streams_secret",
        "secret",
        "streams secret",
        "secret verifying Turbo signed stream names (Rails signed_stream_verifier_key)",
        STREAMS,
    ),
    _option(
        "turbo_rails_cleartext",
        "bool",
        "false",
        "deprecated; AnyCable 1.4 semantics: with Turbo Streams on and no Turbo secret, "
        "signed_stream_name is taken as the plain stream name (implies --turbo_streams)",
        STREAMS,
    ),
    _option(
        "streams_whisper",
        "bool",
        "false",
        "allow whispers on signed $pubsub streams (public streams always allow them)",
        STREAMS,
    ),
    _option(
        "streams_presence",
        "bool",
        "true",
        "allow presence on signed $pubsub streams (public streams always allow it)",
        STREAMS,
    ),
    _option(
        "broadcast_adapter",
        "list",
        "http",
        "broadcast adapters, comma-separated: http (POST /_broadcast), redis (Redis pub/sub "
        "channel --redis_channel, every node delivers, no history), redisx (Redis Stream "
        "--redisx_stream, consumer group bx: one node takes each publication, through the "
        "broker); nats is refused",
        BROADCAST,
    ),
    _option(
        "broadcast_key",
        "secret",
        "derived from --secret",
        'bearer key for HTTP broadcasts; default hex HMAC-SHA256(secret, "broadcast-cable"); '
        "none = no authorization",
        BROADCAST,
    ),
    _option(
        "http_broadcast_port",
        "int",
        "0 (auto)",
        "HTTP broadcast port; 0 = the main port when a broadcast key is set, else 8090",
        BROADCAST,
    ),
    _option(
        "http_broadcast_path",
        "str",
        "/_broadcast",
        "HTTP broadcast endpoint path",
        BROADCAST,
    ),
    _option(
        "pubsub",
        "str",
        "none (redis with redisx)",
        "inter-node fan-out: redis (each publication goes through the Redis channel named "
        "like its stream, nodes subscribe to the streams they serve) or none (this node "
        "only); default redis when --broadcast_adapter includes redisx; nats is refused",
        BROADCAST,
    ),
    _option(
        "redis_url",
        "str",
        "redis://localhost:6379",
        "Redis for the redis/redisx adapters and --pubsub=redis: "
        "redis[s]://[user:password@]host[:port][/db]",
        BROADCAST,
        env=("ANYCABLE_REDIS_URL", "REDIS_URL"),
    ),
    _option(
        "redis_channel",
        "str",
        "__anycable__",
        "Redis pub/sub channel of --broadcast_adapter=redis",
        BROADCAST,
    ),
    _option(
        "redisx_stream",
        "str",
        "__anycable__",
        "Redis Stream of --broadcast_adapter=redisx (consumer group bx)",
        BROADCAST,
    ),
    _option(
        "redis_sentinels",
        "str",
        "unset",
        "Redis Sentinel addresses, comma-separated: [redis://][[user]:password@]host:port "
        "(port 26379 if left out; the credentials of the first are the sentinels'); the host "
        "of --redis_url is then the master's name (redis://mymaster/5), found again at "
        "every reconnect",
        BROADCAST,
    ),
    _option(
        "redis_sentinel_discovery_interval",
        "int",
        "30",
        "accepted for compatibility and unused, as in AnyCable-Go 1.6: Cableway asks the "
        "sentinels for the master at every (re)connect",
        BROADCAST,
    ),
    _option(
        "redis_tls_verify",
        "bool",
        "true",
        "rediss:// only: check the Redis server's certificate and host name (AnyCable-Go's "
        "default is false); false = encrypt without checking who answers",
        BROADCAST,
    ),
    _option(
        "redis_tls_ca_cert_path",
        "str",
        "unset (system CAs)",
        "rediss:// only: PEM file of the CA(s) that signed the Redis server's certificate "
        "(replaces the system's CAs)",
        BROADCAST,
    ),
    _option(
        "redis_tls_client_cert_path",
        "str",
        "unset",
        "rediss:// only: PEM client certificate for mutual TLS (with --redis_tls_client_key_path)",
        BROADCAST,
    ),
    _option(
        "redis_tls_client_key_path",
        "str",
        "unset",
        "rediss:// only: PEM private key of --redis_tls_client_cert_path",
        BROADCAST,
    ),
    _option(
        "broker",
        "str",
        "memory",
        "memory: stream history, session restore and presence kept in this process; redis: "
        "kept in Redis (--redis_url), shared by every node; none: no history (AnyCable's "
        "default is none)",
        BROKER,
    ),
    _option(
        "presets",
        "list",
        "none",
        "broker (= --broker=memory unless --broker is given) or none; other presets are refused",
        BROKER,
    ),
    _option(
        "history_limit",
        "int",
        "100",
        "messages kept per stream (the oldest are evicted)",
        BROKER,
    ),
    _option(
        "history_ttl",
        "float",
        "300",
        "seconds a stream's messages are kept",
        BROKER,
    ),
    _option(
        "sessions_ttl",
        "float",
        "300",
        "seconds a disconnected actioncable-v1-ext-json session can be restored; 0 = never",
        BROKER,
    ),
    _option(
        "presence_ttl",
        "float",
        "15",
        "seconds a disconnected session's presence outlives it",
        BROKER,
    ),
    _option(
        "history_max_bytes",
        "int",
        "0 (no cap)",
        "Cableway option (not AnyCable's): bytes the memory broker's stream history may "
        "hold (messages and per-stream bookkeeping); past it the oldest messages of any "
        "stream are evicted first and history requests reaching back to them get "
        "reject_history; 0 = no cap (docs/reliable-streams.md)",
        BROKER,
    ),
    _option(
        "ping_interval",
        "float",
        "3",
        "seconds between server pings",
        WEBSOCKET,
    ),
    _option(
        "ping_timestamp_precision",
        "str",
        "s",
        "ping message timestamp unit: s, ms or ns",
        WEBSOCKET,
    ),
    _option(
        "pong_timeout",
        "float",
        "0 (off)",
        "seconds an actioncable-v1-ext-json client has to answer a ping before it is "
        "disconnected (no_pong); 0 = off",
        WEBSOCKET,
    ),
    _option(
        "max_message_size",
        "int",
        "65536",
        "largest accepted client message, in bytes",
        WEBSOCKET,
    ),
    _option(
        "ws_write_timeout",
        "float",
        "2",
        "seconds a client's socket may take nothing while output waits, before the "
        "connection is dropped",
        WEBSOCKET,
    ),
    _option(
        "ws_max_pending_size",
        "int",
        "1048576",
        "bytes of earlier output a client may leave unread when more is due, before it "
        "is disconnected as too_slow",
        WEBSOCKET,
        env=(),
    ),
    _option(
        "enable_native_pings",
        "bool",
        "false",
        "also send WebSocket-level PING frames (dead-peer detection for any client)",
        WEBSOCKET,
    ),
    _option(
        "sse",
        "bool",
        "true",
        "serve the Server-Sent Events transport at --sse_path (AnyCable's default is false)",
        SSE,
    ),
    _option(
        "sse_path",
        "str",
        "/events",
        "SSE endpoint path (must differ from the WebSocket and health paths)",
        SSE,
    ),
    _option(
        "max_subscriptions",
        "int",
        "128",
        "subscriptions one connection may hold; further subscribes are rejected",
        LIMITS,
    ),
    _option(
        "max_identifier_size",
        "int",
        "8192",
        "largest channel identifier (and signed stream name) accepted, in bytes",
        LIMITS,
    ),
    _option(
        "commands_rate",
        "float",
        "100",
        "commands per second one connection may send on average (token bucket refill); "
        "0 = unlimited",
        LIMITS,
    ),
    _option(
        "commands_burst",
        "int",
        "200",
        "commands one connection may send in a burst (token bucket size)",
        LIMITS,
    ),
    _option(
        "handshake_timeout",
        "float",
        "5",
        "seconds a client has to send its whole HTTP request head",
        LIMITS,
    ),
    _option(
        "max_header_size",
        "int",
        "16384",
        "largest HTTP request head (request line and headers), in bytes; larger gets 431",
        LIMITS,
    ),
    _option(
        "max_broadcast_body",
        "int",
        "1048576",
        "largest HTTP broadcast request body, in bytes; larger gets 413",
        LIMITS,
    ),
    _option(
        "max_bodies_in_flight",
        "int",
        "67108864",
        "what all HTTP request bodies being received may hold together, in bytes "
        "(both ports); past it 503 with Retry-After",
        LIMITS,
    ),
    _option("log_level", "str", "info", "debug, info, warn or error", LOGGING),
    _option("log_format", "str", "text", "text (AnyCable-like lines) or json", LOGGING),
    _option("debug", "bool", "false", "same as --log_level=debug", LOGGING),
    _option(
        "metrics_http",
        "str",
        "unset (off)",
        "path of the Prometheus metrics endpoint, e.g. /metrics",
        METRICS,
    ),
    _option(
        "metrics_host",
        "str",
        "--host",
        "address the metrics endpoint binds to",
        METRICS,
    ),
    _option(
        "metrics_port",
        "int",
        "0 (the main port)",
        "port of the metrics endpoint; 0 = served on the main port",
        METRICS,
    ),
    _option(
        "metrics_log",
        "bool",
        "false",
        "log the metrics every --metrics_rotate_interval seconds (counters as deltas)",
        METRICS,
    ),
    _option(
        "metrics_rotate_interval",
        "float",
        "15",
        "seconds between two --metrics_log lines",
        METRICS,
    ),
    _option(
        "metrics_tags",
        "list",
        "unset",
        "labels added to every Prometheus metric: key:value,key2:value2",
        METRICS,
    ),
    _option(
        "statsd_host",
        "str",
        "unset (off)",
        "send the metrics to this StatsD server, host:port (UDP), every "
        "--metrics_rotate_interval seconds (counters as deltas)",
        METRICS,
    ),
    _option(
        "statsd_prefix",
        "str",
        "anycable_go.",
        "prefix of every StatsD metric name",
        METRICS,
    ),
    _option(
        "statsd_max_packet_size",
        "int",
        "1400",
        "largest StatsD UDP datagram, in bytes (metrics are batched up to it)",
        METRICS,
    ),
    _option(
        "statsd_tags_format",
        "str",
        "datadog",
        "how --metrics_tags are written to StatsD: datadog (|#k:v), influxdb (,k=v) or "
        "graphite (;k=v)",
        METRICS,
    ),
    _option(
        "config-path",
        "str",
        "auto",
        "TOML configuration file to read; by default ./anycable.toml, else "
        "/etc/anycable/anycable.toml, if present (environment and flags win over it)",
        CONFIG_FILE,
    ),
    _option(
        "ignore-config-path",
        "bool",
        "false",
        "read no configuration file, not even the default ones",
        CONFIG_FILE,
        env=(),
    ),
    _option(
        "print-config",
        "bool",
        "false",
        "print the effective configuration as TOML in AnyCable-Go 1.6's layout (secrets "
        "redacted) and exit",
        CONFIG_FILE,
        env=(),
    ),
    _option(
        "jwt_id_key",
        "secret",
        "unset",
        "old name of --jwt_secret",
        DEPRECATED,
        replaced_by="jwt_secret",
    ),
    _option(
        "jwt_id_param",
        "str",
        "unset",
        "old name of --jwt_param (honoured when --jwt_param is not given)",
        DEPRECATED,
        replaced_by="jwt_param",
    ),
    _option(
        "jwt_id_enforce",
        "bool",
        "false",
        "old name of --enforce_jwt",
        DEPRECATED,
        replaced_by="enforce_jwt",
    ),
    _option(
        "turbo_rails_key",
        "secret",
        "unset",
        "old name of --turbo_streams_secret; also enables --turbo_streams",
        DEPRECATED,
        replaced_by="turbo_streams_secret",
    ),
    *RPC_OPTIONS,
)


def _never(_value: str) -> bool:
    return False


def _equals(expected: str) -> Callable[[str], bool]:
    def accepts(value: str) -> bool:
        return value.strip().lower() == expected

    return accepts


def _is_true(value: str) -> bool:
    return _parse_bool(value)


def _no_unbuilt_adapter(value: str) -> bool:
    return "nats" not in {item.lower() for item in _split_list(value)}


def _no_nats(value: str) -> bool:
    return value.strip().lower() != "nats"


def _no_unbuilt_broker(value: str) -> bool:
    return value.strip().lower() != "nats"


def _only_built_presets(value: str) -> bool:
    return set(_split_list(value.lower())) <= set(_PRESETS)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An AnyCable option (or some of its values) that Cableway cannot honour yet."""

    kind: Kind
    reason: str
    accepts: Callable[[str], bool]  # True for the values that are fine (raises ValueError if bad)
    accepted: str  # the values that are fine, for --help and the docs
    default: str = "unset"
    help: str = ""


NOT_YET = "not supported yet by Cableway"

# Options Cableway recognises but refuses (with a ConfigError naming them) instead of silently
# ignoring. When a feature lands, delete its row here and describe the option in OPTIONS.
REFUSED: dict[str, Refusal] = {
    "broadcast_adapter": Refusal(
        "list",
        f"the nats broadcast adapter is {NOT_YET}; use http, redis or redisx",
        _no_unbuilt_adapter,
        "`http`, `redis`, `redisx`",
        default="http",
    ),
    "broker": Refusal(
        "str",
        f"the nats broker is {NOT_YET}; use --broker=memory (history in this "
        "process), redis (history shared by nodes) or none",
        _no_unbuilt_broker,
        "`memory`, `redis`, `none`",
        default="memory",
    ),
    "pubsub": Refusal(
        "str",
        f"NATS pub/sub is {NOT_YET}; use --pubsub=redis or none",
        _no_nats,
        "`none`, `redis`",
        default="none",
    ),
    "presets": Refusal(
        "list",
        f"presets other than broker and none (fly, heroku) are {NOT_YET}",
        _only_built_presets,
        "`broker`, `none`",
        default="none",
    ),
    "ssl_cert": Refusal(
        "str",
        f"TLS is {NOT_YET}; terminate TLS in a proxy in front of Cableway",
        _never,
        "(none: any value is refused)",
    ),
    "ssl_key": Refusal(
        "str",
        f"TLS is {NOT_YET}; terminate TLS in a proxy in front of Cableway",
        _never,
        "(none: any value is refused)",
    ),
}

_OPTION_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def refused_options() -> tuple[Option, ...]:
    """Options that exist only in :data:`REFUSED`, described like accepted ones."""
    return tuple(
        _option(name, refusal.kind, refusal.default, refusal.reason, "Not supported yet")
        for name, refusal in REFUSED.items()
        if name not in _OPTION_BY_NAME
    )


def all_options() -> tuple[Option, ...]:
    """Every flag the parser knows: accepted options, then refused-only ones."""
    return OPTIONS + refused_options()


_ALL_OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in all_options()}


# ---------------------------------------------------------------------------------------------
# Value parsing (raise ValueError with a description of what was expected)
# ---------------------------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_ADAPTERS = ("http", "redis", "redisx", "nats")
_LOG_LEVELS = ("debug", "info", "warn", "error")
_PRECISIONS = ("s", "ms", "ns")
_BROKERS = ("memory", "redis", "none")
_PUBSUBS = ("none", "redis")
_PRESETS = ("broker", "none")
_LOG_FORMATS = ("text", "json")
_STATSD_TAGS_FORMATS = ("datadog", "influxdb", "graphite")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
    r"|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)")


def _parse_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError("expected an integer")
    return int(text)


def _parse_float(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ValueError("expected a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _check_redis_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a ``redis://`` or ``rediss://`` URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("expected a redis:// or rediss:// URL")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    try:
        parts.port  # noqa: B018 - raises for an invalid port
    except ValueError:
        raise ValueError("invalid port") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database (URL path) must be a number")


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """One Redis Sentinel of ``--redis_sentinels`` (``[[user]:password@]host:port``)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_sentinels(text: str) -> tuple[tuple[SentinelAddress, ...], bool]:
    """Read ``--redis_sentinels``: comma-separated ``[redis[s]://][[user]:password@]host:port``.

    Returns the sentinels and whether the first one was written ``rediss://`` (which, as in
    AnyCable-Go, asks for TLS to the master). A missing port is 26379, Sentinel's own.

    Raises:
        ValueError: an entry is not such an address.
    """
    sentinels: list[SentinelAddress] = []
    tls = False
    for index, raw in enumerate(item.strip() for item in text.split(",")):
        if not raw:
            continue
        entry = raw.rstrip("/")
        if "://" not in entry:
            entry = "redis://" + entry
        parts = urlsplit(entry)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"sentinel {raw!r}: expected host:port or a redis:// URL")
        if not parts.hostname or parts.path or parts.query:
            raise ValueError(f"sentinel {raw!r}: expected [[user]:password@]host:port")
        try:
            port = parts.port or 26379
        except ValueError:
            raise ValueError(f"sentinel {raw!r}: invalid port") from None
        if index == 0:
            tls = parts.scheme == "rediss"
        sentinels.append(
            SentinelAddress(
                host=parts.hostname,
                port=port,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password is not None else None,
            )
        )
    if not sentinels:
        raise ValueError("names no sentinel")
    return tuple(sentinels), tls


def _is_loopback(host: str) -> bool:
    host = host.strip().lower()
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def _host_problem(text: str) -> str | None:
    match = _HOST.fullmatch(text)
    if match is None:
        return "expected a host name with an optional :port"
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return "the port must be between 1 and 65535"
    return None


def _origin_problem(entry: str) -> str | None:
    """Why ``entry`` (lower-cased) is not an accepted ``--allowed_origins`` entry, or None."""
    if entry == "*":
        return None
    if "://" in entry:
        scheme, _, rest = entry.partition("://")
        if not _SCHEME.fullmatch(scheme):
            return "invalid scheme"
        if rest.startswith("*"):
            return "wildcards take no scheme: write *.example.com"
        if rest.endswith("/"):
            rest = rest[:-1]
        if "/" in rest or "?" in rest or "#" in rest:
            return "an origin has no path: write scheme://host[:port]"
        return _host_problem(rest)
    if "/" in entry:
        return "expected host[:port], *.host[:port] or scheme://host[:port]"
    if entry.startswith("*"):
        entry = entry[1:].removeprefix(".")
        if not entry:
            return "a wildcard needs a domain: *.example.com"
    return _host_problem(entry)


# ---------------------------------------------------------------------------------------------
# Collecting raw values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raw:
    value: str
    label: str  # "--port", "ANYCABLE_PORT" or "port in anycable.toml": how the user spelled it
    rank: int  # -1 = configuration file, 0 = environment, 1 = command line
    setting: str = ""  # "--port=8080" as the user wrote it, for refusals ("" = label=value)

    def spelled(self) -> str:
        return self.setting or f"{self.label}={self.value}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _build_parser() -> _Parser:
    parser = _Parser(prog="cableway", add_help=False, allow_abbrev=False)
    for option in all_options():
        if option.kind == "bool":
            parser.add_argument(option.flag, dest=option.name, nargs="?", const="true")
        else:
            parser.add_argument(option.flag, dest=option.name, metavar=option.metavar)
    return parser


def _from_command_line(argv: Sequence[str]) -> dict[str, _Raw]:
    bools = {option.flag for option in all_options() if option.kind == "bool"}
    # A bare boolean flag never takes the next argument as its value (as in Go): spell it out.
    args = [f"{arg}=true" if arg in bools else arg for arg in argv]
    namespace, extras = _build_parser().parse_known_args(args)
    for extra in extras:
        if extra.startswith("-"):
            raise ConfigError(
                f"unknown option {extra.split('=', 1)[0]} (see cableway --help for the options)"
            )
        raise ConfigError(f"unexpected argument {extra!r}")
    values: dict[str, _Raw] = {}
    for name, value in vars(namespace).items():
        if value is not None:
            values[name] = _Raw(str(value), f"--{name}", 1)
    return values


def _from_environment(env: Mapping[str, str]) -> dict[str, _Raw]:
    values: dict[str, _Raw] = {}
    for option in all_options():
        for variable in option.env:
            value = env.get(variable, "")
            if value != "":  # an empty variable counts as unset
                values[option.name] = _Raw(value, variable, 0)
                break
    return values


#: Options that only make sense on the command line or in the environment.
_NOT_IN_FILE = frozenset({"config-path", "ignore-config-path", "print-config"})


def _file_key(name: str) -> str:
    """Option ``name`` as a configuration-file key: ``health-path`` -> ``health_path``."""
    return name.replace("-", "_")


def _file_scalar(value: object) -> str:
    """A TOML scalar as the text a flag would carry (raises ValueError for other values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return format(decimal.Decimal(repr(value)), "f")
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, number or boolean, not a TOML {type(value).__name__}")


def _file_value(name: str, kind: Kind, value: object) -> str:
    if isinstance(value, dict):
        if name != "metrics_tags":
            raise ValueError(
                "expected a value, not a table (Cableway reads flat keys, e.g. port = 8080)"
            )
        return ",".join(f"{key}:{_file_scalar(item)}" for key, item in value.items())
    if isinstance(value, list):
        if kind != "list":
            raise ValueError("expected a single value, not a list")
        items = [_file_scalar(item) for item in value]
        if any("," in item for item in items):
            raise ValueError("list items must not contain commas")
        return ",".join(items)
    return _file_scalar(value)


def _from_file(values: Mapping[str, object], file_name: str) -> tuple[dict[str, _Raw], list[str]]:
    """The options a parsed configuration file sets, and warnings about it.

    The file may be in AnyCable-Go 1.6's layout (top-level keys and sections such as
    ``[server]``, :mod:`cableway.anycable_toml`; names ignore case, as there) and may also
    hold flat keys named like the options (``port = 8080``, Cableway's extension, also how
    Cableway's own options are written). AnyCable-Go keys that ask for nothing Cableway does
    are accepted; keys of AnyCable-Go features Cableway lacks are refused unless idle; keys
    nobody knows get a warning.
    """
    reader = _FileReader(file_name)
    for key, value in values.items():
        lowered = key.lower()
        if lowered in anycable_toml.SECTIONS and (
            isinstance(value, dict) or _file_key(lowered) not in reader.flat
        ):  # (broker = "memory" and sse = true are flat keys)
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{key} in {file_name}: expected a section ([{lowered}]), not a TOML "
                    f"{type(value).__name__}"
                )
            for path, spelled, item in anycable_toml.key_paths(lowered, value):
                reader.anycable_key(path, spelled, item)
        elif (lowered,) in anycable_toml.SETS or anycable_toml.ignored((lowered,)):
            reader.anycable_key((lowered,), key, value)
        else:
            reader.flat_key(key, value)
    return reader.raws, reader.warnings


class _FileReader:
    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.raws: dict[str, _Raw] = {}
        self.warnings: list[str] = []
        self.flat = {_file_key(option.name): option for option in all_options()}

    def _set(self, option: Option, spelled: str, value: object) -> None:
        label = f"{spelled} in {self.file_name}"
        try:
            text = _file_value(option.name, option.kind, value)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {label}: {exc}") from None
        earlier = self.raws.get(option.name)
        if earlier is not None:
            raise ConfigError(f"{earlier.label} and {label} both set {option.flag}: keep one")
        self.raws[option.name] = _Raw(text, label, -1, f"{spelled} = {text!r} in {self.file_name}")

    def anycable_key(self, path: tuple[str, ...], spelled: str, value: object) -> None:
        key = anycable_toml.SETS.get(path)
        if key is not None:
            converted = key.convert(value)
            if converted is not None:
                self._set(_ALL_OPTIONS_BY_NAME[key.option], spelled, converted)
                if key.deprecated:
                    self.warnings.append(
                        f"{spelled} in {self.file_name} is deprecated, use {key.deprecated}"
                    )
            return
        feature = anycable_toml.FEATURES.get(path)
        if feature is not None:
            if value not in feature.idle or type(value) is not type(feature.idle[-1]):
                raise ConfigError(
                    f"{spelled} = {_toml_value_or_repr(value)} in {self.file_name}: "
                    f"{feature.reason}"
                )
            return
        if not anycable_toml.ignored(path):
            known = [anycable_toml.label(known) for known in anycable_toml.SETS]
            close = difflib.get_close_matches(anycable_toml.label(path), known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.warnings.append(
                f"{spelled} in {self.file_name} is not a setting Cableway knows; ignored{hint}"
            )

    def flat_key(self, key: str, value: object) -> None:
        option = self.flat.get(_file_key(key)) or self.flat.get(_file_key(key).lower())
        if option is not None and option.name in _NOT_IN_FILE:
            raise ConfigError(
                f"{key} in {self.file_name}: {option.flag} is a command-line option, not a "
                "configuration file setting"
            )
        if option is None:
            known = sorted({*self.flat, *(anycable_toml.label(p) for p in anycable_toml.SETS)})
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.warnings.append(
                f"{key} in {self.file_name} is not a setting Cableway knows; ignored{hint}"
            )
            return
        self._set(option, key, value)


def _toml_value_or_repr(value: object) -> str:
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


def read_config_file(path: str) -> dict[str, object]:
    """Parse the TOML file at ``path`` (the only function here that does I/O).

    Raises :class:`ConfigError` naming the file when it is missing, unreadable or not TOML.
    """
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


#: Where the configuration file is looked for when no --config-path is given, in order.
DEFAULT_CONFIG_PATHS = ("./anycable.toml", "/etc/anycable/anycable.toml")


@dataclass(frozen=True, slots=True)
class FileOptions:
    """The flags about the configuration file (``--config-path``, ``--ignore-config-path``,
    ``--print-config``)."""

    config_path: str | None = None  # given explicitly (flag or ANYCABLE_CONFIG_PATH)
    ignore_config_path: bool = False
    print_config: bool = False

    def path(self, exists: Callable[[str], bool]) -> str | None:
        """The file to read: none when ignored, else the explicit one, else the first default
        path for which ``exists`` is true."""
        if self.ignore_config_path:
            return None
        if self.config_path is not None:
            return self.config_path
        return next((path for path in DEFAULT_CONFIG_PATHS if exists(path)), None)


def file_options(argv: Sequence[str], env: Mapping[str, str]) -> FileOptions:
    """Read the configuration-file flags from ``argv`` and ``env`` (pure; raises ConfigError)."""
    values = _from_environment(env)
    values.update(_from_command_line(argv))
    get = _Resolver(values)
    path_raw = get.pick("config-path")
    return FileOptions(
        config_path=None if path_raw is None else get.string("config-path", default=""),
        ignore_config_path=get.boolean("ignore-config-path"),
        print_config=get.boolean("print-config"),
    )


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


class _Resolver:
    def __init__(self, values: Mapping[str, _Raw]) -> None:
        self.values = values

    def pick(self, *names: str) -> _Raw | None:
        """The value from the highest-precedence source; on a tie, the earliest name wins."""
        best: tuple[int, int, _Raw] | None = None
        for index, name in enumerate(names):
            raw = self.values.get(name)
            if raw is not None and (best is None or (raw.rank, -index) > best[:2]):
                best = (raw.rank, -index, raw)
        return None if best is None else best[2]

    @staticmethod
    def fail(raw: _Raw, problem: str) -> NoReturn:
        raise ConfigError(f"invalid value {raw.value!r} for {raw.label}: {problem}")

    def convert(self, raw: _Raw, parse: Callable[[str], _T]) -> _T:
        try:
            return parse(raw.value)
        except ValueError as exc:
            self.fail(raw, str(exc))

    def string(self, *names: str, default: str) -> str:
        raw = self.pick(*names)
        if raw is None:
            return default
        if not raw.value.strip():
            self.fail(raw, "must not be empty")
        return raw.value

    def path(self, name: str, default: str) -> str:
        """An endpoint path: literal, or a routing pattern as AnyCable-Go's router takes it."""
        raw = self.pick(name)
        if raw is None:
            return default
        self.convert(raw, parse_path_pattern)
        return raw.value

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        raw = self.pick(name)
        if raw is None:
            return default
        value = raw.value.strip().lower()
        if value not in choices:
            self.fail(raw, "must be one of " + ", ".join(choices))
        return value

    def boolean(self, *names: str, default: bool = False) -> bool:
        raw = self.pick(*names)
        return default if raw is None else self.convert(raw, _parse_bool)

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        raw = self.pick(name)
        if raw is None:
            return default
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        try:
            value = _parse_int(raw.value)
        except ValueError:
            self.fail(raw, f"must be an integer {bound}")
        if value < low or (high is not None and value > high):
            self.fail(raw, f"must be an integer {bound}")
        return value

    def number(self, name: str, default: float, *, allow_zero: bool) -> float:
        raw = self.pick(name)
        if raw is None:
            return default
        value = self.convert(raw, _parse_float)
        if value < 0 or (value == 0 and not allow_zero):
            self.fail(raw, "must be zero or more" if allow_zero else "must be more than zero")
        return value

    def secret(self, *names: str) -> tuple[bool, str | None]:
        """(given, value): ``none`` and the empty string give ``(True, None)``."""
        raw = self.pick(*names)
        if raw is None:
            return False, None
        if raw.value in ("", "none"):
            return True, None
        if raw.value == REDACTED:
            self.fail(raw, "this is the placeholder --print-config shows; write the real secret")
        return True, raw.value

    def optional_string(self, name: str) -> str | None:
        """A string option whose empty value means unset."""
        raw = self.pick(name)
        if raw is None or not raw.value.strip():
            return None
        return raw.value.strip()


def _env_or_flag(raw: _Raw, name: str) -> str:
    """How to spell option `name` in the same source as `raw`."""
    if raw.rank == -1:
        return _file_key(name)
    if raw.rank == 0:
        option = _OPTION_BY_NAME[name]
        return option.env[0] if option.env else option.flag
    return f"--{name}"


def _check_refusals(values: Mapping[str, _Raw]) -> None:
    for name, refusal in REFUSED.items():
        raw = values.get(name)
        if raw is None or raw.value == "":
            continue
        try:
            fine = refusal.accepts(raw.value)
        except ValueError as exc:
            raise ConfigError(f"invalid value {raw.value!r} for {raw.label}: {exc}") from None
        if not fine:
            raise ConfigError(f"{raw.spelled()}: {refusal.reason}")


#: Variables with our prefixes that other programs read (the Rails side of AnyCable, the
#: ``cableway broadcast`` helper, AnyCable-Go's telemetry switch, Cableway's test suite).
_OTHER_PROGRAMS_VARIABLES = frozenset(
    {
        "ANYCABLE_WEBSOCKET_URL",
        "ANYCABLE_HTTP_BROADCAST_URL",
        "ANYCABLE_JWT_ID_TTL",
        "ANYCABLE_DISABLE_TELEMETRY",
        "ANYCABLE_TELEMETRY_URL",
        "CABLEWAY_REQUIRE_INTEROP",
        "CABLEWAY_REQUIRE_REDIS",
        "CABLEWAY_REQUIRE_RAILS",
        "CABLEWAY_PY27",
        "CABLEWAY_AUTOBAHN_VENV",
        "CABLEWAY_INTEROP_DEBUG",
        "CABLEWAY_INTEROP_SERVER",
        "CABLEWAY_CHROMIUM",
        "CABLEWAY_URL",
    }
)
_PREFIXES = ("ANYCABLE_", "CABLEWAY_")


def unread_variables(env: Mapping[str, str]) -> list[str]:
    """Warnings for ``ANYCABLE_*``/``CABLEWAY_*`` variables in ``env`` that no option reads
    (a typo there would otherwise silently run the server with the default)."""
    known = {variable for option in all_options() for variable in option.env}
    warnings = []
    for name in sorted(env):
        if not name.startswith(_PREFIXES) or name in known or name in _OTHER_PROGRAMS_VARIABLES:
            continue
        guess = name.replace("CABLEWAY_", "ANYCABLE_", 1)
        close = difflib.get_close_matches(guess, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"the environment variable {name} is not read by Cableway{hint}")
    return warnings


def load_config(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "the configuration file",
) -> Config:
    """Resolve the configuration from flags (``argv`` without the program name) and ``env``.

    ``file_values`` is a parsed configuration file (:func:`read_config_file`; flat keys named
    like the options), the lowest-precedence source; ``file_name`` names it in errors.
    Pure: reads nothing but its arguments. Raises :class:`ConfigError` for unknown options,
    invalid values and options Cableway refuses (see :data:`REFUSED`).
    """
    return load_config_with_warnings(argv, env, file_values=file_values, file_name=file_name)[0]


#: the HMAC secret options (with their old names): a value under 32 bytes warns (security J11)
_HMAC_SECRETS = (
    ("secret",),
    ("jwt_secret", "jwt_id_key"),
    ("streams_secret",),
    ("turbo_streams_secret", "turbo_rails_key"),
)


def load_config_with_warnings(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "the configuration file",
) -> tuple[Config, tuple[str, ...]]:
    """Like :func:`load_config`, plus warnings for the user (deprecated names, dead settings)."""
    values, file_warnings = ({}, []) if file_values is None else _from_file(file_values, file_name)
    values.update(_from_environment(env))
    values.update(_from_command_line(argv))
    _check_refusals(values)
    warnings = [*file_warnings, *unread_variables(env)]
    for option in OPTIONS:
        raw = values.get(option.name)
        if option.replaced_by is not None and raw is not None:
            warnings.append(
                f"{raw.label} is deprecated, use {_env_or_flag(raw, option.replaced_by)}"
            )

    get = _Resolver(values)
    public = get.boolean("public")
    noauth = get.boolean("noauth") or public
    public_streams = get.boolean("public_streams") or public

    _, secret = get.secret("secret")
    jwt_given, jwt_secret = get.secret("jwt_secret", "jwt_id_key")
    if not jwt_given:
        jwt_secret = secret
    streams_given, streams_secret = get.secret("streams_secret")
    if not streams_given:
        streams_secret = secret
    turbo_given, turbo_secret = get.secret("turbo_streams_secret", "turbo_rails_key")
    if not turbo_given:
        turbo_secret = streams_secret
    for names in _HMAC_SECRETS:
        raw = get.pick(*names)
        if raw is not None and raw.value not in ("", "none") and len(raw.value.encode()) < 32:
            # the label only (how the user spelled the option), never the value
            warnings.append(
                f"{raw.label} is shorter than 32 bytes: an HMAC secret this short can be "
                "guessed offline from one signed token; use at least 32 random bytes"
            )

    enforce_jwt = get.boolean("enforce_jwt", "jwt_id_enforce")
    if enforce_jwt and jwt_secret is None and not get.boolean("demo"):
        enforce_raw = get.pick("enforce_jwt", "jwt_id_enforce")
        assert enforce_raw is not None
        raise ConfigError(
            f"{enforce_raw.label} needs a JWT secret (--jwt_secret or --secret): without one "
            "every connection would be rejected"
        )

    cleartext = get.boolean("turbo_rails_cleartext")
    turbo_streams = get.boolean("turbo_streams") or "turbo_rails_key" in values or cleartext
    cleartext_raw = values.get("turbo_rails_cleartext")
    if cleartext and cleartext_raw is not None:
        if turbo_secret is not None:
            warnings.append(
                f"{cleartext_raw.label} has no effect: a Turbo Streams secret is configured"
            )
        else:
            warnings.append(
                f"{cleartext_raw.label} is deprecated: Turbo::StreamsChannel accepts unsigned "
                "stream names; prefer $pubsub with stream_name and --public_streams"
            )
    elif turbo_streams and turbo_secret is None:
        warnings.append(
            "Turbo Streams are enabled but no secret is configured (--turbo_streams_secret, "
            "--streams_secret or --secret): Turbo::StreamsChannel subscriptions will be rejected"
        )

    adapters_raw = get.pick("broadcast_adapter")
    adapters: tuple[str, ...] = ("http",)
    if adapters_raw is not None:
        adapter_names = [name.lower() for name in _split_list(adapters_raw.value)]
        for name in adapter_names:
            if name not in _ADAPTERS:
                get.fail(adapters_raw, f"unknown broadcast adapter {name!r}")
        if not adapter_names:
            get.fail(adapters_raw, "must name at least one adapter")
        adapters = tuple(dict.fromkeys(adapter_names))

    key_given, broadcast_key = get.secret("broadcast_key")
    if not key_given and secret is not None:
        broadcast_key = derive_broadcast_key(secret)
    if public:
        key_raw = values.get("broadcast_key")
        if key_raw is not None and broadcast_key is not None:
            warnings.append(f"{key_raw.label} is ignored: public mode broadcasts without a key")
        broadcast_key = None

    host = get.string("host", default="localhost")
    port = get.integer("port", 8080, 1, 65535)
    http_broadcast_port = get.integer("http_broadcast_port", 0, 0, 65535)
    if http_broadcast_port == 0:
        http_broadcast_port = port if broadcast_key is not None else 8090
    open_broadcasts = "http" in adapters and broadcast_key is None and not key_given
    if open_broadcasts and not public and not _is_loopback(host):
        warnings.append(
            f"HTTP broadcasts are accepted without authorization on {host}:"
            f"{http_broadcast_port}: set --secret or --broadcast_key (or firewall that "
            "port; --broadcast_key=none says no key is intended)"
        )

    paths_raw = get.pick("path")
    paths: tuple[str, ...] = ("/cable",)
    if paths_raw is not None:
        items = _split_list(paths_raw.value)
        if not items:
            get.fail(paths_raw, "must name at least one path")
        for item in items:
            try:
                parse_path_pattern(item)
            except ValueError as exc:
                get.fail(paths_raw, f"path {item!r}: {exc}")
        paths = tuple(dict.fromkeys(items))

    log_level = get.choice("log_level", "info", _LOG_LEVELS)
    if get.boolean("debug"):
        log_level = "debug"

    origins_raw = get.pick("allowed_origins")
    origins: tuple[str, ...] = ()
    if origins_raw is not None:
        entries = [entry.lower() for entry in _split_list(origins_raw.value)]
        for entry in entries:
            problem = _origin_problem(entry)
            if problem is not None:
                get.fail(origins_raw, f"origin {entry!r}: {problem}")
        origins = tuple(dict.fromkeys(entries))
        if "*" in origins:
            warnings.append(
                f"{origins_raw.label} allows every origin: any web page can open a connection"
            )

    tags_raw = get.pick("metrics_tags")
    tags: dict[str, str] = {}
    if tags_raw is not None:
        for item in _split_list(tags_raw.value):
            key, sep, value = item.partition(":")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                get.fail(tags_raw, f"tag {item!r} is not key:value")
            if not _LABEL.fullmatch(key) or key.startswith("__"):
                get.fail(tags_raw, f"tag name {key!r} must be a Prometheus label name")
            if key in tags:
                get.fail(tags_raw, f"tag {key!r} given twice")
            tags[key] = value

    metrics_http = get.optional_string("metrics_http")
    metrics_port = get.integer("metrics_port", 0, 0, 65535)

    # Presets only fill in defaults: an explicit --broker wins. The broker preset's memory
    # broker is already Cableway's default, so no accepted preset changes anything.
    presets_raw = get.pick("presets")
    if presets_raw is not None:
        for preset in _split_list(presets_raw.value.lower()):
            if preset not in _PRESETS:
                get.fail(presets_raw, "must be one of " + ", ".join(_PRESETS))
    broker = get.choice("broker", "memory", _BROKERS)
    history_limit = get.integer("history_limit", 100, 1)
    history_ttl = get.number("history_ttl", 300.0, allow_zero=False)
    sessions_ttl = get.number("sessions_ttl", 300.0, allow_zero=True)
    presence_ttl = get.number("presence_ttl", 15.0, allow_zero=False)
    history_max_bytes = get.integer("history_max_bytes", 0, 0)
    max_bytes_raw = values.get("history_max_bytes")
    if max_bytes_raw is not None and history_max_bytes and broker != "memory":
        warnings.append(f"{max_bytes_raw.label} has no effect: it caps the memory broker only")
    if broker == "none":
        for name in ("history_limit", "history_ttl", "sessions_ttl", "presence_ttl"):
            raw = values.get(name)
            if raw is not None:
                warnings.append(f"{raw.label} has no effect: the broker is none")

    sse = get.boolean("sse", default=True)
    health_path = get.path("health-path", "/health")
    sse_path = get.path("sse_path", "/events")
    if sse and (sse_path in paths or sse_path == health_path):
        sse_path_raw = get.pick("sse_path")
        if sse_path_raw is not None:
            get.fail(sse_path_raw, "must differ from the WebSocket path(s) and the health path")
        # The default /events clashes with a path the user chose: name their option.
        clash = get.pick("path" if sse_path in paths else "health-path")
        if clash is not None:  # always set here: the defaults do not clash
            get.fail(clash, f"clashes with the SSE path {sse_path} (set --sse_path or --sse=false)")

    pubsub_raw = get.pick("pubsub")
    pubsub = get.choice("pubsub", "redis" if "redisx" in adapters else "none", _PUBSUBS)
    redis_url = get.string("redis_url", default="redis://localhost:6379").strip()
    try:
        _check_redis_url(redis_url)
    except ValueError as exc:
        url_raw = get.pick("redis_url")
        if url_raw is not None:
            get.fail(url_raw, str(exc))
    if pubsub_raw is not None and pubsub == "none" and "redisx" in adapters:
        warnings.append(
            f"{pubsub_raw.label}=none with the redisx adapter: each publication reaches only "
            "the subscribers of the node that consumed it"
        )
    if pubsub == "redis" and broker == "memory":
        warnings.append(
            "--pubsub=redis with the memory broker: stream history and session restore are "
            "kept per node (a client that reconnects to another node cannot catch up)"
        )

    sentinels = get.optional_string("redis_sentinels") or ""
    if sentinels:
        sentinels_raw = get.pick("redis_sentinels")
        assert sentinels_raw is not None
        get.convert(sentinels_raw, parse_sentinels)
    tls_paths = {
        name: get.optional_string(name) or ""
        for name in (
            "redis_tls_ca_cert_path",
            "redis_tls_client_cert_path",
            "redis_tls_client_key_path",
        )
    }
    cert_path = tls_paths["redis_tls_client_cert_path"]
    key_path = tls_paths["redis_tls_client_key_path"]
    if bool(cert_path) != bool(key_path):
        given = get.pick("redis_tls_client_cert_path" if cert_path else "redis_tls_client_key_path")
        assert given is not None
        get.fail(
            given,
            "mutual TLS needs both --redis_tls_client_cert_path and --redis_tls_client_key_path",
        )
    tls_wanted = redis_url.startswith("rediss://") or sentinels.startswith("rediss://")
    if not tls_wanted:
        # a path is a setting someone meant; tls_verify alone is inert (AnyCable-Go's
        # --print-config writes it into every file, with or without TLS)
        for name, value in tls_paths.items():
            raw = get.pick(name)
            if raw is not None and value:
                warnings.append(f"{raw.label} has no effect: --redis_url is not rediss://")
    prefix_raw = get.pick("statsd_prefix")
    statsd_prefix = "anycable_go." if prefix_raw is None else prefix_raw.value.strip()
    statsd_host = get.optional_string("statsd_host") or ""
    if statsd_host:
        statsd_raw = get.pick("statsd_host")
        assert statsd_raw is not None
        host_part, colon, port_part = statsd_host.rpartition(":")
        if not colon or not host_part or not port_part.isdigit():
            get.fail(statsd_raw, "expected host:port")
        if not 1 <= int(port_part) <= 65535:
            get.fail(statsd_raw, "the port must be between 1 and 65535")

    metrics_raw = get.pick("metrics_http")
    if metrics_http is not None and metrics_raw is not None:
        try:
            parse_path_pattern(metrics_http)
        except ValueError as exc:
            get.fail(metrics_raw, str(exc))
        taken = {*paths, health_path}
        if sse:
            taken.add(sse_path)
        if "http" in adapters and http_broadcast_port == port:
            taken.add(get.path("http_broadcast_path", "/_broadcast"))
        if metrics_port in (0, port) and metrics_http in taken:
            get.fail(metrics_raw, "clashes with another endpoint on the main port")

    config = Config(
        host=host,
        port=port,
        path=paths,
        health_path=health_path,
        secret=secret,
        jwt_secret=jwt_secret,
        jwt_param=get.string("jwt_param", "jwt_id_param", default="jid"),
        enforce_jwt=enforce_jwt,
        streams_secret=streams_secret,
        public_streams=public_streams,
        turbo_streams=turbo_streams,
        turbo_streams_secret=turbo_secret,
        turbo_rails_cleartext=cleartext and turbo_secret is None,
        noauth=noauth,
        public=public,
        broadcast_adapters=adapters,
        broadcast_key=broadcast_key,
        http_broadcast_port=http_broadcast_port,
        http_broadcast_path=get.path("http_broadcast_path", "/_broadcast"),
        pubsub=pubsub,
        redis_url=redis_url,
        redis_channel=get.string("redis_channel", default="__anycable__"),
        redisx_stream=get.string("redisx_stream", default="__anycable__"),
        redis_sentinels=sentinels,
        redis_sentinel_discovery_interval=get.integer("redis_sentinel_discovery_interval", 30, 0),
        redis_tls_verify=get.boolean("redis_tls_verify", default=True),
        redis_tls_ca_cert_path=tls_paths["redis_tls_ca_cert_path"],
        redis_tls_client_cert_path=cert_path,
        redis_tls_client_key_path=key_path,
        broker=broker,
        history_limit=history_limit,
        history_ttl=history_ttl,
        sessions_ttl=sessions_ttl,
        presence_ttl=presence_ttl,
        history_max_bytes=history_max_bytes,
        streams_whisper=get.boolean("streams_whisper"),
        streams_presence=get.boolean("streams_presence", default=True),
        ping_interval=get.number("ping_interval", 3.0, allow_zero=False),
        ping_timestamp_precision=get.choice("ping_timestamp_precision", "s", _PRECISIONS),
        pong_timeout=get.number("pong_timeout", 0.0, allow_zero=True),
        max_message_size=get.integer("max_message_size", 65536, 1),
        ws_write_timeout=get.number("ws_write_timeout", 2.0, allow_zero=False),
        ws_max_pending_size=get.integer("ws_max_pending_size", 1048576, 1),
        enable_native_pings=get.boolean("enable_native_pings"),
        sse=sse,
        sse_path=sse_path,
        allowed_origins=origins,
        max_conn=get.integer("max-conn", 0, 0),
        max_subscriptions=get.integer("max_subscriptions", 128, 1),
        max_identifier_size=get.integer("max_identifier_size", 8192, 1),
        commands_rate=get.number("commands_rate", 100.0, allow_zero=True),
        commands_burst=get.integer("commands_burst", 200, 1),
        handshake_timeout=get.number("handshake_timeout", 5.0, allow_zero=False),
        max_header_size=get.integer("max_header_size", 16384, 1),
        max_broadcast_body=get.integer("max_broadcast_body", 1048576, 1),
        max_bodies_in_flight=get.integer("max_bodies_in_flight", 67108864, 1),
        shutdown_timeout=get.number("shutdown_timeout", 30.0, allow_zero=True),
        shutdown_delay=get.number("shutdown_delay", 0.0, allow_zero=True),
        log_level=log_level,
        log_format=get.choice("log_format", "text", _LOG_FORMATS),
        metrics_http=metrics_http,
        metrics_host=get.optional_string("metrics_host"),
        metrics_port=metrics_port,
        metrics_log=get.boolean("metrics_log"),
        metrics_rotate_interval=get.number("metrics_rotate_interval", 15.0, allow_zero=False),
        metrics_tags=tuple(tags.items()),
        statsd_host=statsd_host,
        statsd_prefix=statsd_prefix,
        statsd_max_packet_size=get.integer("statsd_max_packet_size", 1400, 1, 65507),
        statsd_tags_format=get.choice("statsd_tags_format", "datadog", _STATSD_TAGS_FORMATS),
        demo=get.boolean("demo"),
        rpc=_resolve_rpc(get, secret),
    )
    return config, tuple(warnings)


# ---------------------------------------------------------------------------------------------
# --print-config
# ---------------------------------------------------------------------------------------------

#: Config fields whose (flat) configuration-file key differs from the field name.
_FIELD_KEYS = {"broadcast_adapters": "broadcast_adapter"}


def _toml_string(text: str) -> str:
    # JSON strings are TOML basic strings, once DEL (which TOML wants escaped) is escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # AnyCable-Go reads durations as TOML integers
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _printed_value(config: Config, name: str, value: object) -> str | None:
    """The TOML text of field ``name`` (from ``config.redacted()``), or None to comment it out."""
    if name in SECRET_FIELDS and value is None:
        return '"none"'  # explicitly unset (also stops the fallback to secret), as AnyCable
    if value is None:
        return None
    if name == "metrics_tags":
        pairs = ", ".join(f"{tag} = {_toml_string(text)}" for tag, text in config.metrics_tags)
        return f"{{ {pairs} }}" if pairs else "{}"
    if name == "allowed_origins":
        return _toml_string(",".join(config.allowed_origins))  # a comma string in AnyCable
    return _toml_value(value)


def _rpc_toml(rpc: RpcSettings | None) -> list[str]:
    """AnyCable-Go's ``[rpc]`` keys for the RPC settings (``--headers`` is not among them:
    AnyCable-Go never reads ``proxy_headers`` from the file)."""
    if rpc is None:
        return ['implementation = "none"  # no RPC (--norpc)']
    lines = [
        'implementation = "http"',
        f"host = {_toml_string(rpc.host)}",
        f"secret = {_toml_string(REDACTED) if rpc.key is not None else chr(34) + 'none' + chr(34)}",
        f"concurrency = {rpc.concurrency}",
        f"request_timeout = {round(rpc.request_timeout * 1000)}",
        f"# headers = {_toml_string(','.join(rpc.headers))}: only --headers or ANYCABLE_HEADERS",
    ]
    if rpc.proxy_cookies is not None:
        lines.append(f"proxy_cookies = {_toml_value(rpc.proxy_cookies)}")
    return lines


_BROKER_SETTINGS = frozenset({"history_limit", "history_ttl", "sessions_ttl", "presence_ttl"})


def config_toml(config: Config) -> str:
    """The effective configuration as a TOML file (``--print-config``), secrets redacted.

    The layout is AnyCable-Go 1.6's (top-level keys, then ``[server]``, ``[logging]``, ...
    with its key names, :mod:`cableway.anycable_toml`), so the file (with real secrets put
    back) loads in Cableway and in AnyCable-Go. Cableway's own options come as flat
    top-level keys, which AnyCable-Go ignores. Unset values are written as comments.
    """
    top: list[str] = []
    own: list[str] = []
    sections: dict[str, list[str]] = {section: [] for section in anycable_toml.SECTIONS}
    defaults = {field.name: field.default for field in fields(Config)}
    for name, value in config.redacted().items():
        if name == "rpc":
            continue  # written below, as AnyCable-Go's [rpc] section
        section, key = anycable_toml.PRINTED.get(name, ("", _FIELD_KEYS.get(name, name)))
        text = _printed_value(config, name, value)
        line = f"# {key} is unset" if text is None else f"{key} = {text}"
        if name in _BROKER_SETTINGS and config.broker == "none" and value == defaults[name]:
            line = f"# {line}  (no effect: the broker is none)"
        if name not in anycable_toml.PRINTED:
            own.append(line)
        elif section:
            sections[section].append(line)
        else:
            top.append(line)
    sections["rpc"] += _rpc_toml(config.rpc)
    if config.rpc is not None:
        sections["app"].append(f"disconnect_mode = {_toml_string(config.rpc.disconnect_mode)}")
        sections["disconnector"].append(f"rate = {config.rpc.disconnect_rate}")
    out = [
        "# Cableway effective configuration (cableway --print-config), in AnyCable-Go 1.6's",
        "# layout: Cableway and AnyCable-Go both load it.",
        f'# Secrets show as "{REDACTED}": write the real values before using this file.',
        "",
        *top,
        "",
        "# Cableway's own settings (AnyCable-Go ignores them)",
        *own,
    ]
    for section, lines in sections.items():
        if lines:
            out += ["", f"[{section}]", *lines]
    return "\n".join(out) + "\n"
