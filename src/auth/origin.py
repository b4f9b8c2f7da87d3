"""Origin allow-list matching for WebSocket upgrades and CORS (spec §3.1, security D4).

Entries (lower-cased) take three forms:

* ``host`` or ``host:port`` -- compared with the Origin's host and port (AnyCable's rule:
  ``localhost:3000`` does not match ``http://localhost:3001``);
* ``scheme://host[:port]`` -- compared with the whole Origin;
* ``*.example.com`` (optionally with ``:port``) -- any sub-domain, with a dot boundary:
  ``evilexample.com`` and the apex ``example.com`` do not match. (AnyCable also matches a
  bare suffix such as ``*example.com``; Cableway reads it as ``*.example.com``.)

``*`` alone allows every origin. An empty list allows every origin too (AnyCable's
default); a missing or ``null`` Origin then passes, but fails against any non-empty list.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["origin_allowed"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _split(origin: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an Origin value, or None when it is not one."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    if port is not None and str(port) == _DEFAULT_PORTS.get(scheme):
        port = None  # browsers never send a default port; compare without it
    netloc = host if port is None else f"{host}:{port}"
    return scheme, netloc.lower()


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Whether a request with this ``Origin`` header may proceed."""
    if not allowed or "*" in allowed:
        return True
    if origin is None:
        return False
    split = _split(origin.strip())
    if split is None:
        return False
    _scheme, netloc = split
    for entry in allowed:
        entry = entry.strip().lower()
        if "://" in entry:
            normalized = _split(entry)
            if normalized is not None and normalized == split:
                return True
            continue
        if entry.startswith("*"):
            suffix = "." + entry.lstrip("*").lstrip(".")
            if len(suffix) > 1 and netloc.endswith(suffix):
                return True
            continue
        if entry == netloc:
            return True
    return False
