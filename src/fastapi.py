"""Cableway for FastAPI (and Starlette): a non-blocking broadcaster, Jinja2 template helpers
and the Turbo Stream response::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from fastapi.templating import Jinja2Templates
    from cableway.fastapi import Cableway, Publisher, TurboStreamResponse

    cable = Cableway()                       # settings from ANYCABLE_* (or pass them)
    app = FastAPI(lifespan=cable.lifespan)   # closes the pooled HTTP client at shutdown
    cable.init_app(app)                      # for the Publisher dependency
    templates = cable.templates(Jinja2Templates(directory="templates"))

    @app.post("/rooms/{room_id}/messages")
    async def create(room_id: int, live: Publisher, ...):
        await live.broadcast(("room", room_id, "messages"), turbo_stream.append(...))

:class:`AsyncBroadcaster` speaks to ``/_broadcast`` with an ``httpx2.AsyncClient``: async
on asyncio or trio (no thread per call) and keep-alive connections reused across requests.
Supported: FastAPI 0.115 and later (tested with 0.165), Starlette 0.40 and later, httpx2 2.16.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Annotated, Any

import httpx2
from fastapi import Depends
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from .jinja import configure
from .toolkit.broadcaster import (
    BroadcastError,
    BroadcastUnavailable,
    check_answer,
    disconnect_body,
    encode_data,
    publication,
    publications_body,
    request_headers,
)
from .toolkit.integration import (
    TURBO_STREAM_MEDIA_TYPE,
    IntegrationSettings,
    active_interceptor,
    set_settings_provider,
    stream_name,
)

__all__ = [
    "AsyncBroadcaster",
    "AsyncPublisher",
    "Cableway",
    "Publisher",
    "TurboStreamResponse",
    "accepts_turbo_stream",
    "get_publisher",
]

logger = logging.getLogger("cableway.integration")


class TurboStreamResponse(HTMLResponse):
    """A response of Turbo Stream HTML (``text/vnd.turbo-stream.html``)."""

    media_type = TURBO_STREAM_MEDIA_TYPE


def accepts_turbo_stream(request: Request) -> bool:
    """Whether the request's ``Accept`` lists ``text/vnd.turbo-stream.html``."""
    from .toolkit.integration import accepts_turbo_stream as accepts

    return accepts(request.headers.get("accept"))


class AsyncBroadcaster:
    """The async twin of :class:`cableway.broadcaster.Broadcaster` (same arguments, same
    errors), on one pooled ``httpx2.AsyncClient``. Close it with :meth:`aclose` (or
    ``async with``). Like the synchronous one it ignores proxy variables (``trust_env=False``);
    pass your own ``client`` to change that."""

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        from .toolkit.broadcaster import Broadcaster

        Broadcaster(url, timeout=timeout)  # the same URL and timeout validation
        self.url = url
        self._headers = request_headers(key or (_derive(secret) if secret else None))
        self._client = client or httpx2.AsyncClient(timeout=timeout, trust_env=False)
        self._own_client = client is None

    def __repr__(self) -> str:  # never shows the key
        auth = "with key" if "Authorization" in self._headers else "no key"
        return f"AsyncBroadcaster({self.url!r}, {auth})"

    async def __aenter__(self) -> AsyncBroadcaster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections (the client, when this object created it)."""
        if self._own_client:
            await self._client.aclose()

    async def broadcast(
        self,
        stream: str,
        data: object,
        *,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """Send ``data`` (any JSON value; a str arrives as exactly that string)."""
        await self.broadcast_raw(
            stream, encode_data(data), exclude_socket=exclude_socket, transient=transient
        )

    async def broadcast_raw(
        self,
        stream: str,
        data: str,
        *,
        exclude_socket: str | None = None,
        transient: bool = False,
    ) -> None:
        """Send ``data`` as the exact wire ``data`` field."""
        item = publication(stream, data, exclude_socket=exclude_socket, transient=transient)
        await self._send(publications_body([item], single=True))

    async def broadcast_many(
        self, messages: Iterable[tuple[str, object]], *, raw: bool = False
    ) -> None:
        """Several ``(stream, data)`` publications in one request, in order."""
        batch = [publication(s, d if raw else encode_data(d)) for s, d in messages]
        if batch:
            await self._send(publications_body(batch, single=False))

    async def disconnect(
        self, identifiers: Mapping[str, object] | str, *, reconnect: bool = False
    ) -> None:
        """Close every connection identified by ``identifiers`` (remote disconnect)."""
        await self._send(disconnect_body(identifiers, reconnect=reconnect))

    async def _send(self, body: bytes) -> None:
        try:
            response = await self._client.post(self.url, content=body, headers=self._headers)
        except httpx2.HTTPError as exc:
            detail = " ".join((str(exc) or type(exc).__name__).split())
            raise BroadcastUnavailable(
                f"cannot reach the broadcast endpoint {self.url}: {detail}"
            ) from exc
        check_answer(response.status_code, response.reason_phrase, response.text[:4096])


def _derive(secret: str) -> str:
    from .auth.keys import derive_broadcast_key

    return derive_broadcast_key(secret)


class AsyncPublisher:
    """What :meth:`Cableway.publisher` gives a request handler: broadcasts to streams named
    as pages name them, captured in tests (:mod:`cableway.testing`), failures logged
    (logger ``cableway.integration``) unless ``raise_broadcast_errors``."""

    def __init__(self, settings: IntegrationSettings, broadcaster: AsyncBroadcaster) -> None:
        self.settings = settings
        self.broadcaster = broadcaster

    async def broadcast(self, stream: object, data: object) -> bool:
        """Send ``data`` to ``stream``: an unsigned name, or what names it (a tuple of parts,
        an object) as ``turbo_stream_from`` does. ``True`` when sent (or captured)."""
        name = _stream(stream)
        interceptor = active_interceptor()
        if interceptor is not None:
            interceptor.record(name, data)
            return True
        try:
            await self.broadcaster.broadcast(name, data)
        except BroadcastError:
            if self.settings.raise_broadcast_errors:
                raise
            logger.exception("Cableway broadcast to %r failed", name)
            return False
        return True


def _stream(stream: object) -> str:
    if isinstance(stream, str):
        return stream
    if isinstance(stream, tuple | list):
        return stream_name(*stream)
    return stream_name(stream)


def get_publisher(request: Request) -> AsyncPublisher:
    """The dependency behind :data:`Publisher`: the publisher of ``request.app``'s
    :class:`Cableway` (set by :meth:`Cableway.init_app`)."""
    cable = getattr(request.app.state, "cableway", None)
    if not isinstance(cable, Cableway):
        raise RuntimeError("no Cableway for this application: call Cableway(...).init_app(app)")
    return cable.publisher()


class Cableway:
    """The application's Cableway: settings, one shared :class:`AsyncBroadcaster`, the
    ``publisher`` dependency, the ``lifespan`` closing it, and template set-up.

    Args:
        settings: default :meth:`IntegrationSettings.from_mapping` of ``ANYCABLE_*``.
        identifiers: the visitor's identifiers for ``cable_meta_tag()`` from the request
            (``None``: anonymous); templates get it through the ``request`` in their context.
    """

    def __init__(
        self,
        settings: IntegrationSettings | None = None,
        *,
        identifiers: Callable[[Request], Mapping[str, object] | None] | None = None,
    ) -> None:
        self.settings = settings or IntegrationSettings.from_mapping(None)
        self.identifiers = identifiers
        self._broadcaster: AsyncBroadcaster | None = None
        set_settings_provider(lambda: self.settings)  # what cableway.testing verifies with

    @property
    def broadcaster(self) -> AsyncBroadcaster:
        """The shared broadcaster (created on first use)."""
        if self._broadcaster is None:
            self._broadcaster = AsyncBroadcaster(self.settings.broadcast_url, key=self.settings.key)
        return self._broadcaster

    def publisher(self) -> AsyncPublisher:
        """A dependency: ``Depends(cable.publisher)`` (or :data:`Publisher` after
        :meth:`init_app`)."""
        return AsyncPublisher(self.settings, self.broadcaster)

    def init_app(self, app: Any) -> None:
        """Make this the ``Cableway`` of ``app`` (``app.state.cableway``), which the
        :data:`Publisher` dependency reads."""
        app.state.cableway = self

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """``FastAPI(lifespan=cable.lifespan)``: closes the broadcaster's connections at
        shutdown (and makes the next run create a fresh client)."""
        try:
            yield
        finally:
            if self._broadcaster is not None:
                broadcaster, self._broadcaster = self._broadcaster, None
                await broadcaster.aclose()

    def templates(self, templates: Jinja2Templates) -> Jinja2Templates:
        """Add ``turbo_stream_from`` and ``cable_meta_tag`` (:mod:`cableway.jinja`) to
        ``templates`` with these settings; returns ``templates``."""
        find = self.identifiers

        def identifiers(context: Any) -> Mapping[str, object] | None:
            request = context.get("request")
            return find(request) if find is not None and request is not None else None

        configure(templates.env, self.settings, identifiers=identifiers)
        return templates


#: ``live: Publisher`` in a path operation: the :class:`AsyncPublisher` of the app's
#: :class:`Cableway` (module-level, so it works with ``from __future__ import annotations``).
Publisher = Annotated[AsyncPublisher, Depends(get_publisher)]
