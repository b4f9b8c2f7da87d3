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

__all__ = [
    "EXT_PROTOCOL",
    "SUPPORTED_SUBPROTOCOLS",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "V1_PROTOCOL",
    "Accepted",
    "AuthPolicy",
    "Rejected",
    "authenticate",
    "find_token",
    "parse_query",
    "ping_settings",
    "request_sid",
    "select_subprotocol",
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


def parse_query(query: str) -> dict[str, str]:
    """Query parameters, last value winning; garbage yields what can be read."""
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
