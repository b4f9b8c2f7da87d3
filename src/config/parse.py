"""Value parsers: the text of a flag, variable or file key -> a typed value.

Each raises :class:`ValueError` describing what was expected; the resolver adds which option
and source the value came from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = [
    "LABEL",
    "SentinelAddress",
    "broker_key",
    "check_redis_url",
    "is_loopback",
    "keep",
    "origin_problem",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_sentinels",
    "rpc_host_key",
    "rpc_implementation_key",
    "split_list",
    "unset_if_empty",
]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
    r"|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)")


def parse_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError("expected an integer")
    return int(text)


def parse_float(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ValueError("expected a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def check_redis_url(url: str) -> None:
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


def is_loopback(host: str) -> bool:
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


def origin_problem(entry: str) -> str | None:
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


# -- AnyCable-Go file keys: the file's value -> the option's value, or None for "not set" --


def keep(value: object) -> object | None:
    return value


def unset_if_empty(value: object) -> object | None:
    """AnyCable-Go reads ``""`` as not set for every string key."""
    return None if value == "" else value


def broker_key(value: object) -> object | None:
    return "none" if value == "" else value  # AnyCable: no adapter = no broker


def rpc_implementation_key(value: object) -> object | None:
    # "none" is --norpc; "http" or "grpc" ask for RPC (a gRPC host is then refused with a
    # message); "" leaves it to [rpc] host
    if value == "":
        return None
    return "true" if value == "none" else "false"


def rpc_host_key(value: object) -> object | None:
    # written by every --print-config, also for RPC-less servers: only another host asks
    # for RPC
    return None if value in ("", "localhost:50051") else value
