"""RPC over HTTP: endpoints, headers and the shared key (rpc.md §3).

Pure functions for both ends: the app checks a request's ``Authorization`` with
:func:`authorized`; the server builds its request headers with :func:`request_headers`
and its URLs with :func:`endpoint_url`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from ..auth.keys import check_bearer, derive_key

__all__ = [
    "CALLS",
    "META_PROTOV_HEADER",
    "META_SID_HEADER",
    "PROTOCOL_VERSION",
    "RPC_PURPOSE",
    "authorized",
    "derive_rpc_key",
    "endpoint_url",
    "header",
    "request_headers",
    "rpc_key",
]

#: The three calls, each ``POST <rpc_host>/<call>``.
CALLS = ("connect", "command", "disconnect")
#: Purpose string AnyCable uses to derive the RPC key from ``--secret``.
RPC_PURPOSE = "rpc-cable"
#: The session id of the client (its handshake's ``X-Request-ID``, else generated).
META_SID_HEADER = "x-anycable-meta-sid"
#: The RPC protocol version; always ``v1``.
META_PROTOV_HEADER = "x-anycable-meta-protov"
PROTOCOL_VERSION = "v1"


def derive_rpc_key(secret: str) -> str:
    """Lower-case hex HMAC-SHA256(key=``secret``, msg=``"rpc-cable"``), as AnyCable-Go
    and the Ruby SDK derive it from ``--secret``."""
    return derive_key(secret, RPC_PURPOSE)


def rpc_key(http_rpc_secret: str | None = None, secret: str | None = None) -> str | None:
    """The key in force: ``--http_rpc_secret`` if set, else derived from ``--secret`` if
    set, else ``None`` (no ``Authorization`` header is sent or checked)."""
    if http_rpc_secret:
        return http_rpc_secret
    if secret:
        return derive_rpc_key(secret)
    return None


def authorized(authorization: str | bytes | None, key: str | None) -> bool:
    """Whether a request's ``Authorization`` header value passes: with no key everything
    does; with a key it must be exactly ``Bearer <key>`` (compared in constant time)."""
    if not key:
        return True
    return check_bearer(authorization, key)


def request_headers(key: str | None, sid: str | None) -> list[tuple[str, str]]:
    """The headers the server sends with every call (rpc.md §3.2), minus the HTTP
    client's own (``Host``, ``Content-Length``, ``User-Agent``)."""
    headers = [("Content-Type", "application/json")]
    if key:
        headers.append(("Authorization", f"Bearer {key}"))
    if sid:
        headers.append(("X-Anycable-Meta-Sid", sid))
    headers.append(("X-Anycable-Meta-Protov", PROTOCOL_VERSION))
    return headers


def header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case) in a mapping or a list of pairs."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    for key, value in pairs:
        if key.lower() == wanted:
            return value
    return None


def _clean_path(path: str) -> str:
    """Go's ``path.Join``/``path.Clean`` on an absolute path."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def endpoint_url(rpc_host: str, call: str) -> str:
    """``rpc_host`` with ``/<call>`` appended as Go's ``url.URL.JoinPath`` does:
    ``http://app/_anycable`` and ``http://app/_anycable/`` both give
    ``http://app/_anycable/connect``; a query string is kept."""
    if call not in CALLS:
        raise ValueError(f"unknown RPC call {call!r}")
    parts = urlsplit(rpc_host)
    path = _clean_path(parts.path + "/" + call)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
