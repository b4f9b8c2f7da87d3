"""The server's RPC settings and the pure rules they drive (rpc.md §3.3, §3.5, §3.6, §4.1, §4.9).

Kept apart from the option parser so that any configuration front end (command line,
environment, ``anycable.toml``) builds one :class:`RpcSettings` the same way: every
function here takes strings and returns values or raises :class:`ValueError` with a
message for users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_DISCONNECT_RATE",
    "DEFAULT_HEADERS",
    "DEFAULT_REQUEST_TIMEOUT_MS",
    "DISCONNECT_MODES",
    "RpcSettings",
    "env_headers",
    "filter_cookies",
    "parse_header_names",
    "parse_rpc_host",
    "request_timeout_seconds",
]

#: AnyCable-Go's ``--rpc_concurrency`` default (rpc.md §3.6).
DEFAULT_CONCURRENCY = 28
#: Per-request timeout for HTTP RPC when ``--rpc_request_timeout`` is 0 or unset (§3.5).
DEFAULT_REQUEST_TIMEOUT_MS = 3000
#: ``--disconnect_rate``: Disconnect calls per second at most (§4.9).
DEFAULT_DISCONNECT_RATE = 100
#: ``--headers``: request headers forwarded to the app (§4.1).
DEFAULT_HEADERS: tuple[str, ...] = ("cookie",)
DISCONNECT_MODES = ("auto", "always", "never")


def parse_rpc_host(text: str) -> str:
    """An HTTP RPC base URL. Anything that is not ``http://`` or ``https://`` with a host
    is gRPC to AnyCable-Go (``localhost:50051``, ``dns:///…``), which Cableway does not
    speak: refused with a message saying so."""
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(
            "Cableway speaks AnyCable's RPC over HTTP only; gRPC hosts (no http:// or "
            "https:// scheme, e.g. localhost:50051) are not supported: give the app's "
            "HTTP RPC URL, e.g. http://localhost:3000/_anycable"
        )
    if not parts.hostname:
        raise ValueError("the RPC URL has no host")
    if parts.fragment:
        raise ValueError("the RPC URL must not have a #fragment")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ValueError(f"the RPC URL has an invalid port: {exc}") from None
    return value


def parse_header_names(items: Iterable[str]) -> tuple[str, ...]:
    """``--headers``: lower-cased and trimmed (AnyCable-Go does not trim, so
    ``"cookie, x-api-token"`` never matches its second name there; rpc.md §4.1 [quirk])."""
    names: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if any(c <= " " or c in '()<>@,;:\\"/[]?={}' for c in name):
            raise ValueError(f"{item.strip()!r} is not a header name")
        if name not in names:
            names.append(name)
    return tuple(names)


def filter_cookies(cookie: str, allowed: Iterable[str]) -> str:
    """The ``cookie`` header keeping only the ``allowed`` names, as ``name=value;`` each
    (AnyCable-Go's output format). Names are trimmed and split on the first ``=`` only,
    so every cookie of ``a=1; b=2`` can match and base64 values keep their padding
    (rpc.md §4.1: Go matches only the first cookie and drops values with ``=``)."""
    wanted = set(allowed)
    kept: list[str] = []
    for part in cookie.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name in wanted:
            kept.append(f"{name}={value};")
    return "".join(kept)


def env_headers(
    request_headers: Iterable[tuple[str, str]],
    names: Iterable[str],
    remote_addr: str,
    proxy_cookies: Iterable[str] | None = None,
) -> dict[str, str]:
    """``env.headers`` of every call (rpc.md §4.1): each configured header found in the
    handshake (any case, first value, non-empty) under its configured lower-case name,
    the ``cookie`` header filtered by ``--proxy-cookies`` when given, and ``REMOTE_ADDR``.
    """
    wanted = set(names)
    out: dict[str, str] = {}
    for key, value in request_headers:
        name = key.lower()
        if name in wanted and name not in out and value:
            out[name] = value
    if proxy_cookies is not None and "cookie" in out:
        filtered = filter_cookies(out["cookie"], proxy_cookies)
        if filtered:
            out["cookie"] = filtered
        else:
            del out["cookie"]
    out["REMOTE_ADDR"] = remote_addr
    return out


@dataclass(frozen=True, slots=True)
class RpcSettings:
    """How the server calls the application (``None`` in the config = no RPC at all).

    Attributes:
        host: the HTTP RPC base URL (``--rpc_host``); calls go to ``<host>/connect`` etc.
        key: the bearer key (``--http_rpc_secret``, else derived from ``--secret``), or
            ``None`` for no ``Authorization`` header.
        concurrency: calls in flight at most, shared by the three calls.
        request_timeout: seconds one call may take (``--rpc_request_timeout`` in ms,
            0 = the 3 s default).
        headers: handshake headers forwarded in ``env.headers``.
        proxy_cookies: cookie names kept in the forwarded ``cookie`` header; ``None`` = all.
        disconnect_mode: ``auto``, ``always`` or ``never``.
        disconnect_rate: Disconnect calls per second at most.
    """

    host: str
    key: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_MS / 1000
    headers: tuple[str, ...] = DEFAULT_HEADERS
    proxy_cookies: tuple[str, ...] | None = None
    disconnect_mode: str = "auto"
    disconnect_rate: int = DEFAULT_DISCONNECT_RATE

    def env_headers(
        self, request_headers: Iterable[tuple[str, str]] | Mapping[str, str], remote_addr: str
    ) -> dict[str, str]:
        pairs = request_headers.items() if isinstance(request_headers, Mapping) else request_headers
        return env_headers(pairs, self.headers, remote_addr, self.proxy_cookies)

    def __repr__(self) -> str:
        key = None if self.key is None else "[REDACTED]"
        return (
            f"RpcSettings(host={self.host!r}, key={key!r}, concurrency={self.concurrency}, "
            f"request_timeout={self.request_timeout}, headers={self.headers!r}, "
            f"proxy_cookies={self.proxy_cookies!r}, disconnect_mode={self.disconnect_mode!r}, "
            f"disconnect_rate={self.disconnect_rate})"
        )


def request_timeout_seconds(milliseconds: int) -> float:
    """``--rpc_request_timeout`` (ms) as the per-call limit in seconds; 0 means 3000 ms.
    Unlike AnyCable-Go, a larger value is honoured: Go's hidden 3 s command timeout
    silently caps it (rpc.md §3.5 [doc≠code]), which its own docs do not say."""
    if milliseconds <= 0:
        milliseconds = DEFAULT_REQUEST_TIMEOUT_MS
    return milliseconds / 1000
