"""The declarations of the RPC options (rpc.md §3-§4; part of
:data:`cableway.config.options.OPTIONS`). None fills a Config field by itself: the resolver
(:func:`cableway.config.resolve.rpc`) builds one :class:`~cableway.rpc.settings.RpcSettings`
(``Config.rpc``) from them, or ``None`` without ``--rpc_host``."""

from __future__ import annotations

from ..rpc.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DISCONNECT_RATE,
    DEFAULT_HEADERS,
    DEFAULT_REQUEST_TIMEOUT_MS,
    DISCONNECT_MODES,
)
from .option import Option, declare
from .parse import rpc_host_key, rpc_implementation_key

RPC_SECTION = "RPC (the application's channels over AnyCable's HTTP RPC; docs/rpc.md)"

RPC: tuple[Option, ...] = (
    declare(
        "rpc_host",
        "str",
        "",
        "the application's AnyCable HTTP RPC URL (http:// or https://, e.g. "
        "http://localhost:3000/_anycable); Cableway then calls Connect, Command and Disconnect "
        "there for channels it does not serve itself. gRPC hosts are not supported",
        RPC_SECTION,
        toml=("rpc", "host"),
        toml_convert=rpc_host_key,
        field=None,
        note="no RPC",
    ),
    declare(
        "norpc",
        "bool",
        True,
        "no RPC at all (JWT, signed streams, Turbo Streams only); wins over --rpc_host",
        RPC_SECTION,
        toml=("rpc", "implementation"),
        toml_convert=rpc_implementation_key,
        field=None,
        note="unless --rpc_host is set",
    ),
    declare(
        "http_rpc_secret",
        "secret",
        None,
        "bearer key sent to the RPC app (Authorization: Bearer KEY); unset = "
        'hex(HMAC-SHA256(--secret, "rpc-cable")), or no header without --secret',
        RPC_SECTION,
        toml=("rpc", "secret"),
        field=None,
        note="derived from --secret",
    ),
    declare(
        "rpc_concurrency",
        "int",
        DEFAULT_CONCURRENCY,
        "RPC calls in flight at most (Connect, Command and Disconnect share it); more wait",
        RPC_SECTION,
        toml=("rpc", "concurrency"),
        field=None,
    ),
    declare(
        "rpc_request_timeout",
        "int",
        DEFAULT_REQUEST_TIMEOUT_MS,
        "milliseconds one RPC call may take (0 = 3000)",
        RPC_SECTION,
        toml=("rpc", "request_timeout"),
        field=None,
        low=0,
    ),
    declare(
        "headers",
        "list",
        DEFAULT_HEADERS,
        "handshake headers forwarded to the RPC app in env.headers, comma-separated "
        "(AnyCable-Go never reads [rpc] proxy_headers from a file: nor does Cableway)",
        RPC_SECTION,
        field=None,
        in_file=False,
    ),
    declare(
        "proxy-cookies",
        "list",
        (),
        "cookie names kept in the forwarded cookie header, comma-separated",
        RPC_SECTION,
        toml=("rpc", "proxy_cookies"),
        field=None,
        note="all cookies",
    ),
    declare(
        "disconnect_mode",
        "str",
        "auto",
        "when to call Disconnect: auto (sessions that used RPC), always, never",
        RPC_SECTION,
        toml=("app", "disconnect_mode"),
        choices=DISCONNECT_MODES,
        field=None,
    ),
    declare(
        "disconnect_rate",
        "int",
        DEFAULT_DISCONNECT_RATE,
        "Disconnect calls per second at most (a mass disconnect is queued, not a burst)",
        RPC_SECTION,
        toml=("disconnector", "rate"),
        field=None,
    ),
)
