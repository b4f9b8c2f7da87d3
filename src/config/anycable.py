"""The layout of AnyCable-Go 1.6's TOML configuration file, as Cableway reads and writes it.

AnyCable-Go 1.6 (``anycable-go --print-config``, ``config/config.go``) writes a few top-level
keys (``secret``, ``broadcast_adapters``, ...) and then sections (``[server]``, ``[ws]``,
``[jwt]``, ``[broker]``, ``[redis]``, ...) whose keys are often not the flag names
(``[jwt] force`` is ``--enforce_jwt``, ``[app] enable_native_ping`` is
``--enable_native_pings``). This module is that layout as data: for each key path, the
Cableway option it sets (:data:`SETS`), or that it asks for nothing Cableway does
(:data:`IGNORED`), or names an AnyCable feature Cableway does not have (:data:`FEATURES`: fine
at its idle value, refused otherwise). :data:`PRINTED` says where ``--print-config`` writes
each :class:`~cableway.config.Config` field. The keys that set options are declared with the
options (``Option.toml``, :mod:`cableway.config.options`); this module adds what AnyCable-Go
has and Cableway does not. Pure data and helpers; the loading rules (precedence, validation)
are :mod:`cableway.config.sources` and :mod:`cableway.config.resolve`.

Facts from the AnyCable-Go v1.6.16 source (see docs/configuration.md, "Configuration file").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from .options import OPTIONS
from .parse import keep, unset_if_empty

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


@dataclass(frozen=True, slots=True)
class Key:
    """A key that sets a Cableway option.

    ``convert`` turns the file's value into the option's value, or ``None`` for "not set"
    (AnyCable-Go reads ``""`` as not set for every string key).
    """

    option: str
    convert: Callable[[object], object | None] = keep
    deprecated: str = ""  # the key to write instead (a warning says so)


#: Keys that set an option but are not its own key (each option declares that one, as
#: ``Option.toml``): second spellings, and the keys of options Cableway refuses.
_MORE_KEYS: dict[Path, Key] = {
    ("http_broadcast", "secret"): Key(
        "broadcast_key", unset_if_empty, deprecated="broadcast_key (top level)"
    ),
    # AnyCable-Go's --print-config writes http_path as "http", which it then ignores;
    # Cableway reads both
    ("metrics", "http"): Key("metrics_http", unset_if_empty),
}

#: Key paths that set a Cableway option (lower case; AnyCable-Go matches them ignoring case).
#: Notes on some of them: AnyCable-Go ignores ``[ws] paths`` from the file (``--path``
#: always overwrites it), Cableway honours it so that ``--print-config`` output loads back to
#: the same configuration; AnyCable-Go's ``--print-config`` writes ``[app]
#: enable_native_ping`` inside a comment (a missing newline), Cableway reads it.
SETS: dict[Path, Key] = {
    **{
        option.toml: Key(option.name, option.toml_convert or keep)
        for option in OPTIONS
        if option.toml is not None
    },
    **_MORE_KEYS,
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
    ("pusher", "app_id"): Feature(("",), "the Pusher protocol is not supported by Cableway"),
    ("pusher", "app_key"): Feature(("",), "the Pusher protocol is not supported by Cableway"),
    ("ds", "enabled"): Feature((False,), "Durable Streams are not supported by Cableway"),
    ("api", "host"): Feature(
        ("",), "Cableway binds the REST API to --host; [api] host is not supported"
    ),
    ("api", "cors_headers"): Feature(
        (False,), "CORS headers on the REST API are not supported by Cableway"
    ),
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

#: Where ``--print-config`` writes each Config field: (section or "" for the top level, key);
#: a sub-table is a dotted section (``metrics.statsd``).
#: Fields not listed here are Cableway's own and are written as top-level keys named like the
#: option (the flat-key extension).
PRINTED: dict[str, tuple[str, str]] = {
    **{
        option.field: (".".join(option.toml[:-1]), option.toml[-1])
        for option in OPTIONS
        if option.field is not None and option.toml is not None
    },
    "rpc": ("rpc", "implementation"),  # with the other [rpc] keys (render._rpc_toml)
    # dotted keys inside [server], as AnyCable-Go's --print-config writes them
    "ssl_cert": ("server", "ssl.cert_path"),
    "ssl_key": ("server", "ssl.key_path"),
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
