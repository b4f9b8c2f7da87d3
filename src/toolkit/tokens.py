"""Identification tokens (JWT) for the cable URL, as the server reads them (spec §9).

The page connects to ``ws://host/cable?jid=<token>`` (or sends an ``X-JID`` header); the
server verifies the token with its JWT secret (``--jwt_secret``, else ``--secret``) and the
connection's identifiers become the ``ext`` claim::

    >>> from cableway.tokens import identification_token
    >>> token = identification_token({"user_id": 42}, "my-secret", expires_in=300)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from ..auth.jwt import encode_token

__all__ = ["identification_token", "identifiers_json"]


def identifiers_json(identifiers: Mapping[str, object]) -> str:
    """The compact JSON text of ``identifiers`` exactly as it goes into a token's ``ext``.

    This string is the connection's identity on the server: a remote disconnect
    (:meth:`cableway.broadcaster.Broadcaster.disconnect`) matches it byte for byte.
    """
    if not isinstance(identifiers, Mapping):
        raise TypeError("identifiers must be a mapping of names to JSON values")
    for key in identifiers:
        if not isinstance(key, str):
            raise TypeError(f"identifier names must be strings, not {type(key).__name__}")
    return json.dumps(dict(identifiers), separators=(",", ":"))


def identification_token(
    identifiers: Mapping[str, object],
    secret: str,
    *,
    expires_in: float | None = 3600,
    now: float | None = None,
) -> str:
    """An HS256 JWT the server accepts as the connection's identification.

    Claims: ``ext`` = :func:`identifiers_json` of ``identifiers``; ``exp`` = ``now +
    expires_in`` in whole seconds (``now`` defaults to ``time.time()``), or no ``exp`` at all
    when ``expires_in`` is ``None`` (the token never expires). An expired token gets the
    client ``{"type":"disconnect","reason":"token_expired","reconnect":false}``.

    Raises :class:`ValueError` for an empty secret and :class:`TypeError` for identifiers
    that are not a JSON-serialisable mapping with string keys.
    """
    if not secret:
        raise ValueError("refusing to sign with an empty secret")
    ext = identifiers_json(identifiers)
    exp = None
    if expires_in is not None:
        exp = (time.time() if now is None else now) + expires_in
    return encode_token(ext, secret, exp=exp)
