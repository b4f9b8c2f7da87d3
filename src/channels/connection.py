"""The connection class an application subclasses to identify clients (or reject them)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

from ..protocol.messages import dumps
from ..rpc import Env

__all__ = ["Connection", "Rejected", "parse_cookies"]


class Rejected(Exception):
    """Raised by ``reject()``: the connection or subscription is refused.

    It is control flow, not an error: the SDK answers with a FAILURE (a
    ``{"type":"disconnect","reason":"unauthorized","reconnect":false}`` for a connection,
    a ``reject_subscription`` for a subscription) and logs nothing.
    """


def parse_cookies(header: str) -> dict[str, str]:
    """``Cookie: a=1; b="2"`` as a dict; tolerant of malformed parts (they are skipped)
    and of ``=`` inside values; the first of two cookies with the same name wins, as
    browsers send the most specific one first."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies


class Connection:
    """One client connection, as the server describes it on every call.

    Subclass it and override :meth:`connect` to identify the client from its cookies,
    headers or URL parameters, calling :meth:`reject` to refuse it; override
    :meth:`disconnect` for clean-up after the client left. Both may be ``async def``.

    A new instance is made for every call (the app keeps nothing between calls): the
    identifiers set in ``connect`` and the connection state :attr:`cstate` come back from
    the server with every later call, which is how they survive.

    Attributes:
        env: the request environment (:class:`cableway.rpc.Env`).
        url: the client's request URL (``http(s)://host/cable?…``).
        headers: the headers the server forwards (its ``--headers``, default only
            ``cookie``), lower-case names, plus ``REMOTE_ADDR``.
        sid: the session id from ``X-Anycable-Meta-Sid``, or ``None``.
        identifiers: who the client is: JSON values by name, set in ``connect`` (see
            :meth:`identified_by`) and restored on later calls.
        cstate: connection state, a ``str`` → ``str`` dict kept by the server between
            calls; setting a key to ``""`` deletes it.
    """

    def __init__(
        self,
        env: Env,
        *,
        sid: str | None = None,
        identifiers: Mapping[str, Any] | None = None,
    ) -> None:
        self.env = env
        self.url = env.url
        self.headers: dict[str, str] = dict(env.headers)
        self.sid = sid
        self.identifiers: dict[str, Any] = dict(identifiers or {})
        self.cstate: dict[str, str] = dict(env.cstate)
        self.transmissions: list[str] = []

    # -- what the client sent ---------------------------------------------------------------

    @functools.cached_property
    def cookies(self) -> dict[str, str]:
        """The ``cookie`` header parsed (empty unless the server forwards cookies)."""
        return parse_cookies(self.headers.get("cookie", ""))

    @functools.cached_property
    def params(self) -> dict[str, str]:
        """The query parameters of :attr:`url` (the last value of a repeated name)."""
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    @property
    def remote_addr(self) -> str | None:
        """The client's IP address as the server saw it (``REMOTE_ADDR``)."""
        return self.headers.get("REMOTE_ADDR")

    # -- callbacks ---------------------------------------------------------------------------

    def connect(self) -> Any:
        """Identify the client (:meth:`identified_by`) or :meth:`reject` it. The default
        accepts everyone with no identifiers."""

    def disconnect(self) -> Any:
        """Called once after the client is gone, after every channel's ``unsubscribed``."""

    # -- helpers -----------------------------------------------------------------------------

    def identified_by(self, **identifiers: Any) -> None:
        """Set identifiers (JSON values: ids, not model instances), in the order given."""
        self.identifiers.update(identifiers)

    def reject(self) -> NoReturn:
        """Refuse the connection: raises :class:`Rejected`, so nothing after it runs."""
        raise Rejected

    def transmit(self, message: object) -> None:
        """Send ``message`` (any JSON value) to this client as a top-level message."""
        self.transmissions.append(dumps(message))
