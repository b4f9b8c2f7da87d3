"""The layout of AnyCable-Go 1.6's TOML configuration file, as Cableway reads and writes it.

AnyCable-Go 1.6 (``anycable-go --print-config``, ``config/config.go``) writes a few top-level
keys (``secret``, ``broadcast_adapters``, ...) and then sections (``[server]``, ``[ws]``,
``[jwt]``, ``[broker]``, ``[redis]``, ...) whose keys are often not the flag names
(``[jwt] force`` is ``--enforce_jwt``, ``[app] enable_native_ping`` is
``--enable_native_pings``). This module is that layout as data: for each key path, the
Cableway option it sets (:data:`SETS`), or that it asks for nothing Cableway does
(:data:`IGNORED`), or names an AnyCable feature Cableway does not have (:data:`FEATURES`: fine
at its idle value, refused otherwise). :data:`PRINTED` says where ``--print-config`` writes
each :class:`~cableway.config.Config` field. Pure data and helpers; the loading rules
(precedence, validation) are :mod:`cableway.config`'s.

Facts from the AnyCable-Go v1.6.16 source (see docs/configuration.md, "Configuration file").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "FEATURES",
    "IGNORED",
    "PRINTED",
    "SECTIONS",
    "SETS",
    "Feature",
    "Key",
    "ignored",
    "key_paths",
    "label",
]

#: The sections, in the order ``anycable-go --print-config`` writes them.
SECTIONS = (
    "server",
    "logging",
    "rpc",
    "broker",
    "jwt",
    "streams",
    "ws",
    "sse",
    "pusher",
    "ds",
    "api",
    "redis",
    "nats",
    "http_broadcast",
    "redis_stream_broadcast",
    "redis_pubsub_broadcast",
    "nats_broadcast",
    "redis_pubsub",
    "nats_pubsub",
    "metrics",
    "metrics.statsd",
    "app",
    "disconnector",
    "embedded_nats",
)

Path = tuple[str, ...]  # ("server", "port"); ("secret",) at the top level


def _keep(value: object) -> object | None:
    return value


@dataclass(frozen=True, slots=True)
class Key:
    """A key that sets a Cableway option.

    ``convert`` turns the file's value into the option's value, or ``None`` for "not set"
    (AnyCable-Go reads ``""`` as not set for every string key).
    """

    option: str
    convert: Callable[[object], object | None] = _keep
    deprecated: str = ""  # the key to write instead (a warning says so)


def _unset_if_empty(value: object) -> object | None:
    return None if value == "" else value


def _broker(value: object) -> object | None:
    return "none" if value == "" else value  # AnyCable: no adapter = no broker


def _rpc_implementation(value: object) -> object | None:
    # "none" is --norpc; "http" or "grpc" ask for RPC (a gRPC host is then refused with a
    # message); "" leaves it to [rpc] host
    if value == "":
        return None
    return "true" if value == "none" else "false"


def _rpc_host(value: object) -> object | None:
    # written by every --print-config, also for RPC-less servers: only another host asks
    # for RPC
    return None if value in ("", "localhost:50051") else value


_S = Key  # short, for the table below

#: Key paths that set a Cableway option (lower case; AnyCable-Go matches them ignoring case).
SETS: dict[Path, Key] = {
    ("secret",): _S("secret", _unset_if_empty),
    ("broadcast_key",): _S("broadcast_key", _unset_if_empty),
    ("noauth",): _S("noauth"),
    ("public",): _S("public"),
    ("broadcast_adapters",): _S("broadcast_adapter"),
    ("pubsub_adapter",): _S("pubsub", _unset_if_empty),
    ("presets",): _S("presets"),
    ("server", "host"): _S("host", _unset_if_empty),
    ("server", "port"): _S("port"),
    ("server", "allowed_origins"): _S("allowed_origins", _unset_if_empty),
    ("server", "max_conn"): _S("max-conn"),
    ("server", "health_path"): _S("health-path", _unset_if_empty),
    ("server", "ssl", "cert_path"): _S("ssl_cert", _unset_if_empty),
    ("server", "ssl", "key_path"): _S("ssl_key", _unset_if_empty),
    ("logging", "level"): _S("log_level", _unset_if_empty),
    ("logging", "format"): _S("log_format", _unset_if_empty),
    ("logging", "debug"): _S("debug"),
    ("rpc", "implementation"): _S("norpc", _rpc_implementation),
    ("rpc", "host"): _S("rpc_host", _rpc_host),
    ("rpc", "secret"): _S("http_rpc_secret", _unset_if_empty),
    ("rpc", "concurrency"): _S("rpc_concurrency"),
    ("rpc", "request_timeout"): _S("rpc_request_timeout"),
    ("rpc", "proxy_cookies"): _S("proxy-cookies"),
    ("app", "disconnect_mode"): _S("disconnect_mode", _unset_if_empty),
    ("disconnector", "rate"): _S("disconnect_rate"),
    ("broker", "adapter"): _S("broker", _broker),
    ("broker", "history_ttl"): _S("history_ttl"),
    ("broker", "history_limit"): _S("history_limit"),
    ("broker", "sessions_ttl"): _S("sessions_ttl"),
    ("broker", "presence_ttl"): _S("presence_ttl"),
    ("jwt", "secret"): _S("jwt_secret", _unset_if_empty),
    ("jwt", "param"): _S("jwt_param", _unset_if_empty),
    ("jwt", "force"): _S("enforce_jwt"),
    ("streams", "secret"): _S("streams_secret", _unset_if_empty),
    ("streams", "public"): _S("public_streams"),
    ("streams", "whisper"): _S("streams_whisper"),
    ("streams", "presence"): _S("streams_presence"),
    ("streams", "turbo"): _S("turbo_streams"),
    ("streams", "turbo_secret"): _S("turbo_streams_secret", _unset_if_empty),
    # AnyCable-Go ignores [ws] paths from the file (--path always overwrites it); Cableway
    # honours it, so that --print-config output loads back to the same configuration
    ("ws", "paths"): _S("path"),
    ("ws", "max_message_size"): _S("max_message_size"),
    ("ws", "write_timeout"): _S("ws_write_timeout"),
    ("ws", "max_pending_size"): _S("ws_max_pending_size"),
    ("sse", "enabled"): _S("sse"),
    ("sse", "path"): _S("sse_path", _unset_if_empty),
    ("redis", "url"): _S("redis_url", _unset_if_empty),
    ("redis", "sentinels"): _S("redis_sentinels"),
    ("redis", "sentinel_discovery_interval"): _S("redis_sentinel_discovery_interval"),
    ("redis", "tls_verify"): _S("redis_tls_verify"),
    ("redis", "tls_ca_cert_path"): _S("redis_tls_ca_cert_path"),
    ("redis", "tls_client_cert_path"): _S("redis_tls_client_cert_path"),
    ("redis", "tls_client_key_path"): _S("redis_tls_client_key_path"),
    ("metrics", "statsd", "host"): _S("statsd_host"),
    ("metrics", "statsd", "prefix"): _S("statsd_prefix"),
    ("metrics", "statsd", "max_packet_size"): _S("statsd_max_packet_size"),
    ("metrics", "statsd", "tags_format"): _S("statsd_tags_format"),
    ("http_broadcast", "port"): _S("http_broadcast_port"),
    ("http_broadcast", "path"): _S("http_broadcast_path", _unset_if_empty),
    ("http_broadcast", "secret"): _S(
        "broadcast_key", _unset_if_empty, deprecated="broadcast_key (top level)"
    ),
    ("redis_stream_broadcast", "stream"): _S("redisx_stream", _unset_if_empty),
    ("redis_pubsub_broadcast", "channel"): _S("redis_channel", _unset_if_empty),
    ("metrics", "http_path"): _S("metrics_http", _unset_if_empty),
    # AnyCable-Go's --print-config writes http_path as "http", which it then ignores;
    # Cableway reads both
    ("metrics", "http"): _S("metrics_http", _unset_if_empty),
    ("metrics", "host"): _S("metrics_host", _unset_if_empty),
    ("metrics", "port"): _S("metrics_port"),
    ("metrics", "log"): _S("metrics_log"),
    ("metrics", "rotate_interval"): _S("metrics_rotate_interval"),
    ("metrics", "tags"): _S("metrics_tags"),
    ("app", "ping_interval"): _S("ping_interval"),
    ("app", "ping_timestamp_precision"): _S("ping_timestamp_precision", _unset_if_empty),
    ("app", "pong_timeout"): _S("pong_timeout"),
    # --print-config writes this one inside a comment (a missing newline); Cableway reads it
    ("app", "enable_native_ping"): _S("enable_native_pings"),
    ("app", "shutdown_timeout"): _S("shutdown_timeout"),
    ("app", "shutdown_delay"): _S("shutdown_delay"),
}


@dataclass(frozen=True, slots=True)
class Feature:
    """A key for an AnyCable-Go feature Cableway does not have: accepted at an idle value
    (what ``--print-config`` writes when the feature is off), refused otherwise."""

    idle: tuple[object, ...]
    reason: str


_NO_NATS = "NATS is not supported by Cableway"

#: Keys of AnyCable-Go features Cableway does not have.
FEATURES: dict[Path, Feature] = {
    ("streams", "cable_ready"): Feature((False,), "CableReady channels are not served by Cableway"),
    ("streams", "pubsub_channel"): Feature(
        ("", "$pubsub"), "Cableway serves the pub/sub channel as $pubsub only"
    ),
    ("ws", "enable_compression"): Feature(
        (False,), "WebSocket compression is not supported by Cableway"
    ),
    ("pusher", "app_id"): Feature(("",), "the Pusher protocol is not supported by Cableway"),
    ("pusher", "app_key"): Feature(("",), "the Pusher protocol is not supported by Cableway"),
    ("ds", "enabled"): Feature((False,), "Durable Streams are not supported by Cableway"),
    ("api", "port"): Feature((0,), "the /api endpoint is not supported by Cableway"),
    ("redis_stream_broadcast", "group"): Feature(
        ("", "bx"), "Cableway reads the Redis Stream with the consumer group bx only"
    ),
    ("redis_pubsub", "channel"): Feature(
        ("", "__anycable_internal__"),
        "Cableway's inter-node Redis channel is __anycable_internal__",
    ),
    ("embedded_nats", "enabled"): Feature((False,), _NO_NATS),
}

#: Keys Cableway accepts and that change nothing in it (tuning of AnyCable-Go's RPC, NATS,
#: Redis client, goroutine pools, disconnect queue, features that are off). A section listed
#: as ``(section,)`` has every key ignored except those in SETS and FEATURES.
IGNORED: frozenset[Path] = frozenset(
    {
        ("node_id",),
        ("disconnectordisabled",),
        ("userprovidedid",),
        ("configfilepath",),
        ("rpc",),
        ("streams", "cable_ready_secret"),
        ("ws", "read_buffer_size"),
        ("ws", "write_buffer_size"),
        ("pusher",),
        ("ds",),
        ("api",),
        ("redis",),
        ("nats",),
        ("http_broadcast", "cors_headers"),
        ("http_broadcast", "cors_hosts"),
        ("http_broadcast", "secretbase"),
        ("redis_stream_broadcast", "stream_read_block_milliseconds"),
        ("nats_broadcast",),
        ("nats_pubsub",),
        ("metrics", "log_filter"),
        ("metrics", "loginterval"),
        ("metrics", "logformatter"),
        ("app", "stats_refresh_interval"),
        ("app", "broadcast_gopool_size"),
        ("app", "shutdown_disconnect_gopool_size"),
        ("disconnector",),
        ("embedded_nats",),
    }
)

#: Where ``--print-config`` writes each Config field: (section or "" for the top level, key).
#: Fields not listed here are Cableway's own and are written as top-level keys named like the
#: option (the flat-key extension).
PRINTED: dict[str, tuple[str, str]] = {
    "secret": ("", "secret"),
    "broadcast_key": ("", "broadcast_key"),
    "noauth": ("", "noauth"),
    "public": ("", "public"),
    "broadcast_adapters": ("", "broadcast_adapters"),
    "pubsub": ("", "pubsub_adapter"),
    "host": ("server", "host"),
    "port": ("server", "port"),
    "allowed_origins": ("server", "allowed_origins"),
    "max_conn": ("server", "max_conn"),
    "health_path": ("server", "health_path"),
    "log_level": ("logging", "level"),
    "log_format": ("logging", "format"),
    "broker": ("broker", "adapter"),
    "history_ttl": ("broker", "history_ttl"),
    "history_limit": ("broker", "history_limit"),
    "sessions_ttl": ("broker", "sessions_ttl"),
    "presence_ttl": ("broker", "presence_ttl"),
    "jwt_secret": ("jwt", "secret"),
    "jwt_param": ("jwt", "param"),
    "enforce_jwt": ("jwt", "force"),
    "streams_secret": ("streams", "secret"),
    "public_streams": ("streams", "public"),
    "streams_whisper": ("streams", "whisper"),
    "streams_presence": ("streams", "presence"),
    "turbo_streams": ("streams", "turbo"),
    "turbo_streams_secret": ("streams", "turbo_secret"),
    "path": ("ws", "paths"),
    "max_message_size": ("ws", "max_message_size"),
    "ws_write_timeout": ("ws", "write_timeout"),
    "ws_max_pending_size": ("ws", "max_pending_size"),
    "sse": ("sse", "enabled"),
    "sse_path": ("sse", "path"),
    "redis_url": ("redis", "url"),
    "redis_sentinels": ("redis", "sentinels"),
    "redis_sentinel_discovery_interval": ("redis", "sentinel_discovery_interval"),
    "redis_tls_verify": ("redis", "tls_verify"),
    "redis_tls_ca_cert_path": ("redis", "tls_ca_cert_path"),
    "redis_tls_client_cert_path": ("redis", "tls_client_cert_path"),
    "redis_tls_client_key_path": ("redis", "tls_client_key_path"),
    "statsd_host": ("metrics.statsd", "host"),
    "statsd_prefix": ("metrics.statsd", "prefix"),
    "statsd_max_packet_size": ("metrics.statsd", "max_packet_size"),
    "statsd_tags_format": ("metrics.statsd", "tags_format"),
    "http_broadcast_port": ("http_broadcast", "port"),
    "http_broadcast_path": ("http_broadcast", "path"),
    "redisx_stream": ("redis_stream_broadcast", "stream"),
    "redis_channel": ("redis_pubsub_broadcast", "channel"),
    "metrics_http": ("metrics", "http_path"),
    "metrics_host": ("metrics", "host"),
    "metrics_port": ("metrics", "port"),
    "metrics_log": ("metrics", "log"),
    "metrics_rotate_interval": ("metrics", "rotate_interval"),
    "metrics_tags": ("metrics", "tags"),
    "ping_interval": ("app", "ping_interval"),
    "ping_timestamp_precision": ("app", "ping_timestamp_precision"),
    "pong_timeout": ("app", "pong_timeout"),
    "enable_native_pings": ("app", "enable_native_ping"),
    "shutdown_timeout": ("app", "shutdown_timeout"),
    "shutdown_delay": ("app", "shutdown_delay"),
    "rpc": ("rpc", "implementation"),  # with the other [rpc] keys (config._rpc_toml)
}


def label(path: Path) -> str:
    """How a key path is named to the user: ``[server] port``, ``secret``,
    ``[server] ssl.cert_path``."""
    if len(path) == 1:
        return path[0]
    return f"[{path[0]}] {'.'.join(path[1:])}"


def key_paths(section: str, values: Mapping[str, object]) -> Iterator[tuple[Path, str, object]]:
    """(lower-case path, path as written, value) for every key of ``[section]``; sub-tables
    (``ssl``, ``statsd``, per-component ``redis``) are walked, except a table value that is
    itself a key (``[metrics] tags``)."""
    yield from _walk((section,), (section,), values)


def _walk(
    prefix: Path, written: Path, values: Mapping[str, object]
) -> Iterator[tuple[Path, str, object]]:
    for key, value in values.items():
        path, spelled = (*prefix, key.lower()), (*written, key)
        if isinstance(value, dict) and path not in SETS:
            yield from _walk(path, spelled, value)
        else:
            yield path, label(spelled), value


def ignored(path: Path) -> bool:
    """Whether AnyCable-Go key ``path`` is accepted by Cableway with no effect."""
    return any(path[:length] in IGNORED for length in range(1, len(path) + 1))
