"""Connection-time decisions: subprotocol, per-request settings, identification.

Pure functions of the request; the transport calls them between reading the HTTP
upgrade request and answering it (spec §3.1, §3.2, §5.1, §9).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..auth.errors import AuthError
from ..auth.jwt import decode_identifiers
from . import messages
from .broker import SessionSnapshot
from .connection import CableConnection

__all__ = [
    "EXT_PROTOCOL",
    "SUPPORTED_SUBPROTOCOLS",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "V1_PROTOCOL",
    "Accepted",
    "AuthPolicy",
    "Deflate",
    "Rejected",
    "Restored",
    "WebSocketOpen",
    "authenticate",
    "find_token",
    "identify",
    "negotiate_deflate",
    "parse_query",
    "ping_settings",
    "request_sid",
    "select_subprotocol",
    "websocket_open",
]

V1_PROTOCOL = "actioncable-v1-json"
EXT_PROTOCOL = "actioncable-v1-ext-json"
#: Server preference order; the first one the client also offers wins (gorilla rule).
SUPPORTED_SUBPROTOCOLS = (V1_PROTOCOL, EXT_PROTOCOL)
TOKEN_SUBPROTOCOL_PREFIX = "anycable-token."

_MAX_QUERY_FIELDS = 64
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")


def select_subprotocol(offered: Iterable[str]) -> str | None:
    """The subprotocol to answer with, or ``None`` for no ``Sec-WebSocket-Protocol``."""
    offered_set = set(offered)
    for proto in SUPPORTED_SUBPROTOCOLS:
        if proto in offered_set:
            return proto
    return None


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate as negotiated with one client (RFC 7692).

    The server always takes ``server_no_context_takeover`` and asks the client for
    ``client_no_context_takeover`` (as AnyCable-Go's gorilla/websocket does): every
    message is compressed and inflated on its own, so a broadcast is compressed once for
    every client with the same server window, and no connection keeps a zlib context.

    Attributes:
        server_max_window_bits: the window the server compresses with (9..15; the
            client's ``server_max_window_bits``, else 15).
        window_requested: the offer named ``server_max_window_bits``, so the response
            must too.
    """

    server_max_window_bits: int = 15
    window_requested: bool = False

    @property
    def response(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the 101 response."""
        value = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        if self.window_requested:
            value += f"; server_max_window_bits={self.server_max_window_bits}"
        return value

    @property
    def wire_kind(self) -> str:
        """The fan-out's kind of session: the same wire bytes for the same window."""
        bits = self.server_max_window_bits
        return "ws+deflate" if bits == 15 else f"ws+deflate{bits}"


_WINDOW_BITS = re.compile(r"[89]|1[0-5]")


def _deflate_offer(params: Sequence[str]) -> Deflate | None:
    """One permessage-deflate offer's parameters, accepted, or ``None`` to decline it
    (an unknown or repeated parameter, a bad value, or a window of 8: zlib cannot
    compress raw deflate with a 256-byte window)."""
    seen: set[str] = set()
    window: int | None = None
    for param in params:
        name, eq, value = param.partition("=")
        name, value = name.strip().lower(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name in seen:
            return None
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if eq:
                return None
        elif name == "client_max_window_bits":
            # a hint the client accepts a smaller window: the server does not ask for one
            if eq and not _WINDOW_BITS.fullmatch(value):
                return None
        elif name == "server_max_window_bits":
            if not _WINDOW_BITS.fullmatch(value):
                return None
            window = int(value)
        else:
            return None
    if window == 8:
        return None
    if window is None:
        return Deflate()
    return Deflate(server_max_window_bits=window, window_requested=True)


def negotiate_deflate(extensions: str) -> Deflate | None:
    """The first permessage-deflate offer of a ``Sec-WebSocket-Extensions`` request value
    (repeated headers joined with ``,``) that the server can honour, or ``None``: no
    compression, no ``Sec-WebSocket-Extensions`` in the response (RFC 7692 §5, §7.1).
    Other extensions are ignored."""
    for offer in extensions.split(","):
        name, *params = offer.split(";")
        if name.strip().lower() != "permessage-deflate":
            continue
        accepted = _deflate_offer(params)
        if accepted is not None:
            return accepted
    return None


def parse_query(query: str) -> dict[str, str]:
    """Query parameters, last value winning; garbage yields what can be read.

    The same as ``urllib.parse.parse_qsl(query, keep_blank_values=True,
    max_num_fields=64, errors="replace")``; a query with nothing to decode (no ``%``,
    no ``+``: a client's ``?pi=3``) is split directly, which is what ``parse_qsl``
    does with it, at a quarter of the cost."""
    if "%" not in query and "+" not in query:
        if query.count("&") >= _MAX_QUERY_FIELDS:
            return {}
        params: dict[str, str] = {}
        for field in query.split("&"):
            if field:
                name, _, value = field.partition("=")
                params[name] = value
        return params
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS, errors="replace"
        )
    except ValueError:
        return {}
    return dict(pairs)


def ping_settings(
    query: Mapping[str, str], *, interval: float, precision: str
) -> tuple[float, str]:
    """Apply ``?pi=<int seconds>`` and ``?ptp=s|ms|ns`` over the server defaults.

    Invalid values are ignored (the defaults stay), as AnyCable does.
    """
    pi = query.get("pi")
    if pi is not None and pi.isascii() and pi.isdigit() and len(pi) <= 6:
        interval = float(int(pi))
    ptp = query.get("ptp")
    if ptp in ("s", "ms", "ns"):
        precision = ptp
    return interval, precision


def request_sid(x_request_id: str | None, fresh: str) -> str:
    """The session id: a sane ``X-Request-ID`` header, else the ``fresh`` id."""
    if x_request_id is not None and _REQUEST_ID.fullmatch(x_request_id):
        return x_request_id
    return fresh


def find_token(
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    subprotocols: Sequence[str],
    param: str,
) -> str | None:
    """The identification token: ``X-<param>`` header, then an
    ``anycable-token.<jwt>`` subprotocol, then the ``?<param>=`` query value.

    Args:
        headers: request headers with lower-cased names.
    """
    header = headers.get("x-" + param.lower())
    if header:
        return header
    for proto in subprotocols:
        if proto.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return proto[len(TOKEN_SUBPROTOCOL_PREFIX) :] or None
    return query.get(param) or None


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """How connections are identified.

    Attributes:
        jwt_secret: HMAC key for identification tokens; ``None`` disables JWT.
        enforce_jwt: reject connections that bring no token.
    """

    jwt_secret: str | None = None
    enforce_jwt: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """Identification succeeded; ``identifiers`` is the JSON identifiers string."""

    identifiers: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Identification failed with an AnyCable disconnect ``reason``."""

    reason: str
    detail: str = ""


def authenticate(
    token: str | None, *, sid: str, policy: AuthPolicy, now: float
) -> Accepted | Rejected:
    """Decide who the connection is (spec §5.1, §9).

    * a token with JWT on: its ``ext`` identifiers, or ``token_expired`` /
      ``unauthorized``;
    * no token: ``unauthorized`` when enforced, otherwise an anonymous session
      identified as ``{"sid":"<sid>"}`` (AnyCable's public identifiers; Cableway has no
      RPC application to fall back to);
    * a token while JWT is off is ignored (the session is anonymous).

    Args:
        now: the current Unix time, for ``exp`` and ``nbf``.
    """
    if policy.jwt_secret and token is not None:
        try:
            return Accepted(decode_identifiers(token, policy.jwt_secret, now=now))
        except AuthError as exc:
            return Rejected(exc.reason, exc.detail)
    if policy.jwt_secret and policy.enforce_jwt:
        return Rejected("unauthorized", "no token")
    return Accepted(messages.dumps({"sid": sid}))


@dataclass(frozen=True, slots=True)
class Restored:
    """The session resumed the snapshot of ``previous_sid`` (no re-authentication)."""

    previous_sid: str


@dataclass(frozen=True, slots=True)
class WebSocketOpen:
    """What a WebSocket upgrade request asks for, decided before answering it.

    Attributes:
        subprotocol: the ``Sec-WebSocket-Protocol`` to answer with, or ``None``.
        sid: the session id (a sane ``X-Request-ID``, else a fresh one).
        ping_interval: seconds between pings (``?pi=`` over the server default).
        ping_precision: ``s``, ``ms`` or ``ns`` (``?ptp=`` over the server default).
        token: the identification token found in the request, if any.
        restore_sid: extended protocol only: the previous session id to restore
            (``X-AnyCable-Restore-Sid``, else ``?sid=``), or ``None``.
        deflate: permessage-deflate as negotiated (``None``: no compression).
    """

    subprotocol: str | None
    sid: str
    ping_interval: float
    ping_precision: str
    token: str | None
    restore_sid: str | None
    deflate: Deflate | None = None

    @property
    def extended(self) -> bool:
        """The extended protocol (``actioncable-v1-ext-json``) was chosen."""
        return self.subprotocol == EXT_PROTOCOL


def websocket_open(
    *,
    headers: Mapping[str, str],
    query: str,
    subprotocols: Sequence[str],
    fresh_sid: str,
    jwt_param: str,
    ping_interval: float,
    ping_precision: str,
    compression: bool = False,
) -> WebSocketOpen:
    """Read an accepted WebSocket upgrade request (spec §3.1, §3.2, §5.1).

    Args:
        headers: request headers with lower-cased names.
        query: the raw query string (without ``?``).
        subprotocols: the offered ``Sec-WebSocket-Protocol`` values, in order.
        fresh_sid: a new random session id, used unless ``X-Request-ID`` is sane.
        jwt_param: the token parameter name (header ``X-<param>``, ``?<param>=``).
        ping_interval: the server's default ping interval in seconds.
        ping_precision: the server's default ping timestamp precision.
        compression: permessage-deflate is enabled (``--enable_ws_compression``): the
            client's offer (``Sec-WebSocket-Extensions``) is negotiated.
    """
    params = parse_query(query)
    interval, precision = ping_settings(params, interval=ping_interval, precision=ping_precision)
    subprotocol = select_subprotocol(subprotocols)
    previous = headers.get("x-anycable-restore-sid") or params.get("sid")
    return WebSocketOpen(
        subprotocol=subprotocol,
        sid=request_sid(headers.get("x-request-id"), fresh_sid),
        ping_interval=interval,
        ping_precision=precision,
        token=find_token(headers=headers, query=params, subprotocols=subprotocols, param=jwt_param),
        restore_sid=previous if subprotocol == EXT_PROTOCOL and previous else None,
        deflate=negotiate_deflate(headers.get("sec-websocket-extensions", ""))
        if compression
        else None,
    )


def identify(
    core: CableConnection,
    request: WebSocketOpen,
    snapshot: SessionSnapshot | None,
    *,
    policy: AuthPolicy,
    now: float,
    unix_time: float,
) -> Restored | Accepted | Rejected:
    """Open a new WebSocket session: restore ``snapshot``, else authenticate.

    The driver looks the snapshot of ``request.restore_sid`` up (an I/O step) and passes
    it, or ``None``. Then ``core`` is restored (extended sessions come back without
    re-authentication), accepted or rejected; the outcome says which, for logs and
    metrics.

    Args:
        now: the driver's monotonic clock (for the restore).
        unix_time: the current Unix time (for the token's ``exp`` and ``nbf``).
    """
    if snapshot is not None and request.restore_sid is not None:
        core.restore(snapshot, now=now)
        return Restored(request.restore_sid)
    outcome = authenticate(request.token, sid=core.sid, policy=policy, now=unix_time)
    if isinstance(outcome, Accepted):
        core.accept(outcome.identifiers)
    else:
        core.reject(outcome.reason)
    return outcome
