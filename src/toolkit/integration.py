"""What the framework integrations share: settings, page elements, broadcasting, test capture.

``cableway.django``, ``cableway.jinja``, ``cableway.flask`` and ``cableway.fastapi`` are thin
layers over this module, which imports no web framework::

    >>> from cableway.integration import IntegrationSettings, turbo_stream_source
    >>> settings = IntegrationSettings.from_mapping({"secret": "s3Krit"}, env={})
    >>> settings.websocket_url
    'ws://localhost:8080/cable'
    >>> turbo_stream_source(settings, "chat/2023")  # doctest: +NORMALIZE_WHITESPACE
    '<turbo-cable-stream-source channel="Turbo::StreamsChannel"
    signed-stream-name="ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c"></turbo-cable-stream-source>'

Settings use the **server's option names** (``secret``, ``jwt_secret``, ``turbo_streams_secret``,
``broadcast_key``, ``sse_path``, ``jwt_param``...) plus the AnyCable client-side names
``websocket_url``, ``http_broadcast_url`` and ``jwt_ttl``; each falls back to the
``ANYCABLE_<NAME>`` environment variable, so one secret serves the application and the server.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..auth.keys import derive_broadcast_key
from .broadcaster import Broadcaster, BroadcastError
from .streams import signed_stream_name, stream_name_from
from .tokens import identification_token
from .turbo_stream import escape

__all__ = [
    "TURBO_STREAMS_CHANNEL",
    "TURBO_STREAM_MEDIA_TYPE",
    "BroadcastInterceptor",
    "IntegrationSettings",
    "Publisher",
    "accepts_turbo_stream",
    "active_interceptor",
    "cable_meta_tag",
    "cable_url",
    "current_settings",
    "intercept_broadcasts",
    "register_streamable",
    "set_settings_provider",
    "stream_name",
    "token_for",
    "turbo_stream_source",
]

logger = logging.getLogger("cableway.integration")

TURBO_STREAMS_CHANNEL = "Turbo::StreamsChannel"
#: The media type of Turbo Stream responses (Turbo sends it in ``Accept`` on form submits).
TURBO_STREAM_MEDIA_TYPE = "text/vnd.turbo-stream.html"
#: The names read from a settings mapping (and from ``ANYCABLE_<NAME>``).
SETTING_NAMES = (
    "secret",
    "jwt_secret",
    "streams_secret",
    "turbo_streams_secret",
    "broadcast_key",
    "websocket_url",
    "http_broadcast_url",
    "sse_path",
    "jwt_param",
    "jwt_ttl",
    "raise_broadcast_errors",
)
DEFAULT_WEBSOCKET_URL = "ws://localhost:8080/cable"
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]*")
_OWN_ATTRIBUTES = frozenset({"channel", "signed-stream-name", "src"})


def _unset(value: object) -> bool:
    """Empty and ``none`` count as unset, as for the server."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class IntegrationSettings:
    """Where the Cableway server is and the secrets the application shares with it.

    Attributes:
        secret: the server's ``--secret``; the fallback of every other secret.
        jwt_secret: signs identification tokens (server ``--jwt_secret``, else ``secret``).
        streams_secret: the server's ``--streams_secret`` (fallback of the Turbo secret).
        turbo_streams_secret: signs stream names for pages (server ``--turbo_streams_secret``,
            else ``streams_secret``, else ``secret``).
        broadcast_key: the server's ``--broadcast_key`` (else derived from ``secret``).
        websocket_url: the cable URL pages connect to (default ``ws://localhost:8080/cable``).
        http_broadcast_url: the broadcast endpoint (default: the host of ``websocket_url``,
            ``http``/``https``, path ``/_broadcast``).
        sse_path: the server's ``--sse_path``; the SSE URL is ``websocket_url`` with an
            ``http``/``https`` scheme and this path.
        jwt_param: the server's ``--jwt_param``: the query parameter carrying the token.
        jwt_ttl: seconds a token from :func:`cable_meta_tag` is valid; ``None`` or ``0``:
            no expiry.
        raise_broadcast_errors: a failing broadcast raises instead of being logged.
    """

    secret: str | None = None
    jwt_secret: str | None = None
    streams_secret: str | None = None
    turbo_streams_secret: str | None = None
    broadcast_key: str | None = None
    websocket_url: str = DEFAULT_WEBSOCKET_URL
    http_broadcast_url: str | None = None
    sse_path: str = "/events"
    jwt_param: str = "jid"
    jwt_ttl: float | None = 3600
    raise_broadcast_errors: bool = False

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None
    ) -> IntegrationSettings:
        """Settings from ``values`` (keys are the names above, any case), each missing one
        from ``env`` (default ``os.environ``) as ``ANYCABLE_<NAME>``.

        Raises :class:`ValueError` for an unknown key (a typo would silently disable a
        secret) or an invalid URL or number.
        """
        env = os.environ if env is None else env
        given = {str(key).lower(): value for key, value in (values or {}).items()}
        unknown = sorted(set(given) - set(SETTING_NAMES))
        if unknown:
            raise ValueError(
                f"unknown Cableway setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(SETTING_NAMES)}"
            )

        def get(name: str) -> object:
            value = given.get(name)
            if _unset(value):
                value = env.get("ANYCABLE_" + name.upper())
            return None if _unset(value) else value

        def text(name: str) -> str | None:
            value = get(name)
            return None if value is None else str(value)

        ttl_value = get("jwt_ttl")
        ttl: float | None = 3600.0
        if ttl_value is not None:
            try:
                ttl = float(str(ttl_value))
            except ValueError:
                raise ValueError(
                    f"jwt_ttl must be a number of seconds, not {ttl_value!r}"
                ) from None
            if ttl < 0:
                raise ValueError("jwt_ttl must not be negative")
        settings = cls(
            secret=text("secret"),
            jwt_secret=text("jwt_secret"),
            streams_secret=text("streams_secret"),
            turbo_streams_secret=text("turbo_streams_secret"),
            broadcast_key=text("broadcast_key"),
            websocket_url=text("websocket_url") or DEFAULT_WEBSOCKET_URL,
            http_broadcast_url=text("http_broadcast_url"),
            sse_path=text("sse_path") or "/events",
            jwt_param=text("jwt_param") or "jid",
            jwt_ttl=ttl or None,
            raise_broadcast_errors=_truthy(get("raise_broadcast_errors")),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ValueError` for URLs that cannot work."""
        parts = urlsplit(self.websocket_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"websocket_url must be a ws:// or wss:// URL: {self.websocket_url!r}")
        if not self.sse_path.startswith("/"):
            raise ValueError(f"sse_path must start with '/': {self.sse_path!r}")
        Broadcaster(self.broadcast_url)  # raises ValueError for a bad URL

    # -- resolved values (the server's fallbacks) ----------------------------------------

    @property
    def token_secret(self) -> str | None:
        """The JWT secret: ``jwt_secret``, else ``secret``."""
        return self.jwt_secret or self.secret

    @property
    def signing_secret(self) -> str | None:
        """The Turbo stream secret: ``turbo_streams_secret``, ``streams_secret``, ``secret``."""
        return self.turbo_streams_secret or self.streams_secret or self.secret

    @property
    def key(self) -> str | None:
        """The broadcast key: ``broadcast_key``, else derived from ``secret``, else none."""
        if self.broadcast_key:
            return self.broadcast_key
        return derive_broadcast_key(self.secret) if self.secret else None

    @property
    def broadcast_url(self) -> str:
        """``http_broadcast_url``, else ``/_broadcast`` on the cable URL's host."""
        if self.http_broadcast_url:
            return self.http_broadcast_url
        return self._http_url("/_broadcast")

    @property
    def sse_url(self) -> str:
        """The SSE endpoint: the cable URL's host with ``sse_path``."""
        return self._http_url(self.sse_path)

    def _http_url(self, path: str) -> str:
        parts = urlsplit(self.websocket_url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    @functools.cached_property
    def broadcaster(self) -> Broadcaster:
        """The (synchronous) :class:`~cableway.broadcaster.Broadcaster` for these settings."""
        return Broadcaster(self.broadcast_url, key=self.key)

    def require_signing_secret(self) -> str:
        """:attr:`signing_secret`, or :class:`ValueError` saying which setting is missing."""
        secret = self.signing_secret
        if not secret:
            raise ValueError(
                "no secret to sign stream names: set secret (or turbo_streams_secret) in the "
                "Cableway settings or ANYCABLE_SECRET in the environment"
            )
        return secret


# -- stream names -------------------------------------------------------------------------

_Namer = Callable[[object], str | None]
_namers: list[_Namer] = []


def register_streamable(namer: _Namer) -> None:
    """Teach :func:`stream_name` to name objects that have neither ``to_gid_param()`` nor
    ``to_param()``: ``namer(obj)`` returns the part, or ``None`` to pass. The Django
    integration registers one for model instances."""
    if namer not in _namers:
        _namers.append(namer)


class _Named:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def to_param(self) -> str:
        return self._value


def _convert(part: object) -> object:
    if isinstance(part, list | tuple):
        return [_convert(item) for item in part]
    if isinstance(part, str | int | float) or hasattr(part, "to_gid_param"):
        return part
    if hasattr(part, "to_param"):
        return part
    for namer in _namers:
        value = namer(part)
        if value is not None:
            return _Named(value)
    return part


def stream_name(*streamables: object) -> str:
    """:func:`cableway.streams.stream_name_from`, also naming objects a registered namer
    knows (Django model instances: ``gid://<app_label>/<Model>/<pk>``)."""
    return stream_name_from(*(_convert(part) for part in streamables))


# -- page elements ------------------------------------------------------------------------


def cable_url(settings: IntegrationSettings, token: str | None = None) -> str:
    """The cable URL with ``?<jwt_param>=<token>`` when there is a token."""
    if not token:
        return settings.websocket_url
    separator = "&" if "?" in settings.websocket_url else "?"
    return f"{settings.websocket_url}{separator}{urlencode({settings.jwt_param: token})}"


_DEFAULT = "default"


def token_for(
    settings: IntegrationSettings,
    identifiers: Mapping[str, object] | None,
    *,
    expires_in: float | str | None = _DEFAULT,
    now: float | None = None,
) -> str | None:
    """An identification token for ``identifiers`` (``None``: no token, anonymous), valid
    for ``expires_in`` seconds (default ``settings.jwt_ttl``; ``None``: no expiry).

    Raises :class:`ValueError` when identifiers are given but no JWT secret is set.
    """
    if identifiers is None:
        return None
    ttl = settings.jwt_ttl if expires_in == _DEFAULT else expires_in
    if isinstance(ttl, str):
        raise TypeError("expires_in must be a number of seconds or None")
    secret = settings.token_secret
    if not secret:
        raise ValueError(
            "no secret to sign identification tokens: set secret (or jwt_secret) in the "
            "Cableway settings or ANYCABLE_SECRET in the environment"
        )
    return identification_token(identifiers, secret, expires_in=ttl, now=now)


def cable_meta_tag(
    settings: IntegrationSettings,
    identifiers: Mapping[str, object] | None,
    *,
    expires_in: float | str | None = _DEFAULT,
    now: float | None = None,
) -> str:
    """``<meta name="action-cable-url" content="…">``, the tag ``@rails/actioncable`` reads.

    With ``identifiers`` the URL carries an identification token for them (see
    :func:`token_for`); without, the connection is anonymous. The value is HTML-escaped.
    """
    token = token_for(settings, identifiers, expires_in=expires_in, now=now)
    return f'<meta name="action-cable-url" content="{escape(cable_url(settings, token))}">'


def turbo_stream_source(
    settings: IntegrationSettings,
    *streamables: object,
    sse: bool = False,
    token: str | None = None,
    **attributes: str,
) -> str:
    """The element a page subscribes with, like turbo-rails' ``turbo_stream_from``.

    ``<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name="…">``
    (needs the Action Cable client, e.g. ``@hotwired/turbo-rails``), or with ``sse=True``
    ``<turbo-stream-source src="<sse_url>?turbo_signed_stream_name=…">`` (Turbo alone is
    enough); ``token`` then goes into the SSE URL. Extra ``attributes`` (``id``, ``class_``…)
    are written with ``_`` turned into ``-`` and a trailing ``_`` dropped (:class:`ValueError`
    for an invalid name or one the element sets itself). Every value is HTML-escaped.
    """
    signed = signed_stream_name(stream_name(*streamables), secret=settings.require_signing_secret())
    extra = ""
    for key, value in attributes.items():
        name = key.rstrip("_").replace("_", "-")
        if not _ATTRIBUTE_NAME.fullmatch(name) or name in _OWN_ATTRIBUTES:
            raise ValueError(f"invalid attribute {key!r} for a stream source")
        extra += f' {name}="{escape(str(value))}"'
    if sse:
        query: dict[str, str] = {"turbo_signed_stream_name": signed}
        if token:
            query[settings.jwt_param] = token
        src = f"{settings.sse_url}?{urlencode(query)}"
        return f'<turbo-stream-source src="{escape(src)}"{extra}></turbo-stream-source>'
    return (
        f'<turbo-cable-stream-source channel="{TURBO_STREAMS_CHANNEL}" '
        f'signed-stream-name="{escape(signed)}"{extra}></turbo-cable-stream-source>'
    )


def accepts_turbo_stream(accept: str | None) -> bool:
    """Whether an ``Accept`` header value lists :data:`TURBO_STREAM_MEDIA_TYPE`."""
    if not accept:
        return False
    return any(
        item.split(";", 1)[0].strip().lower() == TURBO_STREAM_MEDIA_TYPE
        for item in accept.split(",")
    )


# -- broadcasting -------------------------------------------------------------------------


class BroadcastInterceptor(Protocol):
    """Receives broadcasts instead of the server (see :func:`intercept_broadcasts`)."""

    def record(self, stream: str, data: object) -> None:
        """One broadcast of JSON value ``data`` to the unsigned ``stream``."""


_interceptors: list[BroadcastInterceptor] = []


@contextlib.contextmanager
def intercept_broadcasts(interceptor: BroadcastInterceptor) -> Iterator[BroadcastInterceptor]:
    """While the block runs, every integration broadcast goes to ``interceptor`` instead of
    the server (what :mod:`cableway.testing` uses). Nested captures: the innermost wins."""
    _interceptors.append(interceptor)
    try:
        yield interceptor
    finally:
        _interceptors.remove(interceptor)


def active_interceptor() -> BroadcastInterceptor | None:
    """The innermost active interceptor, if any."""
    return _interceptors[-1] if _interceptors else None


class Publisher:
    """Sends broadcasts for the integrations: to the active interceptor when a test captures
    them, else through the settings' broadcaster. A :class:`BroadcastError` is logged (logger
    ``cableway.integration``) and swallowed, unless ``settings.raise_broadcast_errors``."""

    def __init__(self, settings: IntegrationSettings) -> None:
        self.settings = settings

    def broadcast(self, stream: str, data: object) -> bool:
        """Send ``data`` to ``stream``; ``True`` when sent (or captured)."""
        interceptor = active_interceptor()
        if interceptor is not None:
            interceptor.record(stream, data)
            return True
        try:
            self.settings.broadcaster.broadcast(stream, data)
        except BroadcastError:
            if self.settings.raise_broadcast_errors:
                raise
            logger.exception("Cableway broadcast to %r failed", stream)
            return False
        return True


# -- the settings of the running application ----------------------------------------------

_provider: list[Callable[[], IntegrationSettings]] = []


def set_settings_provider(provider: Callable[[], IntegrationSettings]) -> None:
    """Make ``provider`` the source of :func:`current_settings` (Django's app registry and
    the Flask extension call this when they start)."""
    _provider[:] = [provider]


def current_settings() -> IntegrationSettings:
    """The settings of the framework integration in use, else from ``ANYCABLE_*``."""
    if _provider:
        return _provider[0]()
    return IntegrationSettings.from_mapping(None)
