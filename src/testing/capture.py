"""Broadcast capture with Rails-like assertions (``assert_broadcasts``,
``assert_broadcast_on``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..toolkit.integration import (
    IntegrationSettings,
    current_settings,
    intercept_broadcasts,
    stream_name,
)
from .client import SimulatedClient
from .page import read_page

__all__ = ["BroadcastCapture", "CapturedBroadcast", "capture_broadcasts"]


@dataclass(frozen=True)
class CapturedBroadcast:
    """One broadcast: the unsigned ``stream`` and the JSON value ``data`` (a ``str`` for
    Turbo Stream HTML)."""

    stream: str
    data: object


def _stream(stream: object) -> str:
    """A ``str`` is the stream name itself; a tuple or list holds the parts, anything else
    (a model instance...) is the one part, named as ``turbo_stream_from`` names it."""
    if isinstance(stream, str):
        return stream
    if isinstance(stream, tuple | list):
        return stream_name(*stream)
    return stream_name(stream)


class BroadcastCapture:
    """Records every broadcast of the framework integrations while active (see
    :func:`capture_broadcasts`) and delivers it to the :class:`SimulatedClient` s it
    created, as the server would.

    Args:
        settings: the secrets simulated clients verify with; default: the settings of the
            framework integration in use (Django's ``settings.CABLEWAY``, the Flask
            extension's ``app.config``), else ``ANYCABLE_*``.
    """

    def __init__(self, settings: IntegrationSettings | None = None) -> None:
        self._settings = settings
        self.broadcasts: list[CapturedBroadcast] = []
        self._clients: list[SimulatedClient] = []

    @property
    def settings(self) -> IntegrationSettings:
        """The secrets simulated clients verify with (see the class docstring)."""
        return self._settings if self._settings is not None else current_settings()

    # -- BroadcastInterceptor --------------------------------------------------------------

    def record(self, stream: str, data: object) -> None:
        """Keep the broadcast and deliver it to every simulated client subscribed to it."""
        json.dumps(data)  # what the real broadcaster would refuse, this refuses too
        self.broadcasts.append(CapturedBroadcast(stream, data))
        for client in self._clients:
            client.deliver(stream, data)

    # -- reading ---------------------------------------------------------------------------

    def on(self, stream: object) -> list[object]:
        """The data broadcast to ``stream``: the unsigned name (``"room:1:messages"``), or
        what names it (``room``, ``(room, "messages")``) as ``turbo_stream_from`` does."""
        name = _stream(stream)
        return [item.data for item in self.broadcasts if item.stream == name]

    def clear(self) -> None:
        """Forget what was captured so far (Rails' ``clear_enqueued_jobs`` moment)."""
        self.broadcasts.clear()

    # -- assertions ------------------------------------------------------------------------

    def assert_broadcasts(self, stream: object, count: int) -> None:
        """Exactly ``count`` broadcasts went to ``stream`` (Rails' ``assert_broadcasts``)."""
        found = self.on(stream)
        if len(found) != count:
            raise AssertionError(
                f"{count} broadcast(s) expected on {_stream(stream)!r}, "
                f"{len(found)} sent: {found!r}"
            )

    def assert_no_broadcasts(self, stream: object = None) -> None:
        """Nothing went to ``stream`` (``None``: to any stream)."""
        if stream is None:
            if self.broadcasts:
                raise AssertionError(f"no broadcasts expected, got {self.broadcasts!r}")
            return
        self.assert_broadcasts(stream, 0)

    def assert_broadcast_on(
        self, stream: object, data: object | Callable[[object], bool]
    ) -> object:
        """A broadcast to ``stream`` equals ``data`` (e.g. the Turbo Stream HTML), or
        satisfies it when ``data`` is a callable (``lambda html: "Hi" in html``); returns
        the first match (Rails' ``assert_broadcast_on``)."""
        found = self.on(stream)
        for item in found:
            if (data(item) if callable(data) else item == data) is True:
                return item
        raise AssertionError(
            f"no broadcast on {_stream(stream)!r} matches {data!r}; sent: {found!r}"
        )

    # -- simulated pages -------------------------------------------------------------------

    def connect(self, token: str | None = None, *, enforce_jwt: bool = False) -> SimulatedClient:
        """A simulated client connected with identification ``token`` (verified with the
        JWT secret, as the server does) that receives what this capture records."""
        settings = self.settings
        client = SimulatedClient(
            jwt_secret=settings.token_secret,
            turbo_secret=settings.signing_secret,
            token=token,
            enforce_jwt=enforce_jwt,
        )
        self._clients.append(client)
        return client

    def open_page(self, html: str) -> SimulatedClient:
        """A simulated browser showing ``html``: connected with the token of its
        ``action-cable-url`` meta tag and subscribed with every
        ``<turbo-cable-stream-source>`` on it (an :class:`AssertionError` if the server would
        reject one)."""
        page = read_page(html)
        client = self.connect(page.token(self.settings.jwt_param))
        for channel, signed in page.cable_streams:
            if not client.subscribe(signed, channel=channel):
                raise AssertionError(f"the server would reject the page's {channel} {signed!r}")
        return client


@contextlib.contextmanager
def capture_broadcasts(settings: IntegrationSettings | None = None) -> Iterator[BroadcastCapture]:
    """Capture the broadcasts of the framework integrations in the block::

    with capture_broadcasts() as broadcasts:
        Message.objects.create(room=room, text="Hi")
    broadcasts.assert_broadcasts((room, "messages"), 1)
    """
    capture = BroadcastCapture(settings)
    with intercept_broadcasts(capture):
        yield capture
